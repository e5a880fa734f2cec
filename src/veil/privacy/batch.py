"""Which output each input becomes: files, folders (recursive, mirrored tree) and videos.

    >>> plan_jobs([Path("photos/")], Path("clean/"))   # photos/a/b.jpg → clean/a/b.jpg

and running them: images one per core (`veil.privacy.parallel`), videos one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import supervision as sv

from veil.privacy.detectors import detector_for
from veil.privacy.image import AnonymizeResult, anonymize_image_file, hide_detections
from veil.privacy.metadata import ImageFileError
from veil.privacy.parallel import ordered_map
from veil.privacy.settings import AnonymizeSettings
from veil.privacy.tracking import smooth as smooth_tracks
from veil.privacy.video import HALF_PASS_EVERY, VIDEO_EXTENSIONS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
MediaKind = Literal["image", "video"]


class PlanError(ValueError):
    """The inputs or the output path cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    kind: MediaKind


def media_kind(path: Path) -> MediaKind | None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


def plan_jobs(inputs: Sequence[Path], output: Path | None) -> list[Job]:
    """One job per media file; refuses missing inputs, unknown types and outputs overwriting inputs."""
    if not inputs:
        raise PlanError("no input given")
    several = len(inputs) > 1
    if several and output is not None and output.suffix and not output.is_dir():
        raise PlanError(f"several inputs need an output folder, but {output} looks like a file")
    jobs: list[Job] = []
    for src in inputs:
        if not src.exists():
            raise PlanError(f"input not found: {src}")
        jobs.extend(_folder_jobs(src, output, several) if src.is_dir() else [_file_job(src, output, several)])
    for job in jobs:
        if job.dst.resolve() == job.src.resolve():
            raise PlanError(f"output {job.dst} would overwrite its input; choose another -o")
    return jobs


def _folder_jobs(src: Path, output: Path | None, several: bool) -> list[Job]:
    if output is None:
        root = src.parent / f"{src.resolve().name}_anonymized"
    else:
        root = output / src.resolve().name if several else output
    if root.suffix and media_kind(root) is not None:
        raise PlanError(f"a folder input needs an output folder, not the file name {root}")
    jobs = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        kind = media_kind(path)
        if kind is not None and root.resolve() not in path.resolve().parents:
            jobs.append(Job(path, root / path.relative_to(src), kind))
    return jobs


def _file_job(src: Path, output: Path | None, several: bool) -> Job:
    kind = media_kind(src)
    if kind is None:
        known = ", ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
        raise PlanError(f"{src}: unsupported file type {src.suffix or '(none)'}; supported: {known}")
    if output is None:
        return Job(src, src.with_name(f"{src.stem}_anonymized{src.suffix}"), kind)
    if several or output.is_dir() or not output.suffix:
        return Job(src, output / src.name, kind)
    if media_kind(output) != kind:
        raise PlanError(f"output {output} must be a {kind} file like the input {src}")
    return Job(src, output, kind)


def anonymize_arrays(
    frames: Iterable[np.ndarray], settings: AnonymizeSettings, smooth: bool = False
) -> list[AnonymizeResult]:
    """Anonymize many RGB frames, one per core; with `smooth`, they are a video's frames in order and get
    temporal smoothing (tracks held and back-filled, see `veil.privacy.tracking`)."""
    detector = detector_for(settings, threads=1)
    if not smooth:
        return list(ordered_map(lambda rgb: hide_detections(rgb, detector.detect(rgb), settings), frames))
    found: Iterator[tuple[np.ndarray, sv.Detections]] = ordered_map(
        lambda item: (item[1], detector.detect(item[1], full_only=item[0] % HALF_PASS_EVERY != 0)),
        enumerate(frames),
    )  # as in `veil.privacy.video`: the faces' half-resolution pass on every 4th frame
    rng = np.random.default_rng(settings.seed)
    return [
        hide_detections(rgb, hidden, settings, rng)
        for rgb, hidden in smooth_tracks(found, settings.hold_frames, settings.track_iou)
    ]


def anonymize_image_files(
    jobs: Sequence[Job], settings: AnonymizeSettings
) -> Iterator[tuple[Job, AnonymizeResult | ImageFileError | OSError]]:
    """Run image jobs one per core; each yields its result, or the error that stopped it (others go on)."""
    detector = detector_for(settings, threads=1)

    def run(job: Job) -> tuple[Job, AnonymizeResult | ImageFileError | OSError]:
        try:
            return job, anonymize_image_file(job.src, job.dst, settings, detector)
        except (ImageFileError, OSError) as exc:
            return job, exc

    yield from ordered_map(run, [job for job in jobs if job.kind == "image"])
