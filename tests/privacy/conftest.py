"""Helpers for the privacy tests: WIDER FACE ground truth, the real `veil` command, short real videos."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path

VEIL = Path(sys.executable).with_name("veil")


@dataclass(frozen=True)
class Face:
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def side(self) -> float:
        return float(np.sqrt((self.x2 - self.x1) * (self.y2 - self.y1)))

    def inner(self) -> tuple[slice, slice]:
        """The central half of the box (rows, cols): the part of a face any mask must cover."""
        dx, dy = (self.x2 - self.x1) // 4, (self.y2 - self.y1) // 4
        return slice(self.y1 + dy, self.y2 - dy), slice(self.x1 + dx, self.x2 - dx)


def wider_faces(name: str, min_side: float) -> tuple[Path, list[Face]]:
    """Image path and its valid ground-truth faces of at least `min_side` px (sqrt of box area)."""
    root = dataset_path("faces-det")
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().endswith(name))
    count = int(lines[index + 1])
    faces = []
    for line in lines[index + 2 : index + 2 + count]:
        x, y, w, h, *_attrs, invalid, _occlusion, _pose = map(int, line.split())
        face = Face(x, y, x + w, y + h)
        if not invalid and face.side >= min_side:
            faces.append(face)
    return root / "WIDER_val" / "images" / lines[index].strip(), faces


def read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# A pixel counts as changed only when some channel moved by more than this: re-encoding a WIDER photo as
# JPEG at quality 95 (what `veil anonymize` writes) moves 99.9 % of pixels by at most 5 levels (measured).
CODEC_NOISE = 6
# A face counts as hidden when at least this share of its whole ground-truth box changed.
HIDDEN = 0.7


def covered(original: np.ndarray, anonymized: np.ndarray, face: Face, tolerance: int = CODEC_NOISE) -> float:
    """Share of the face's whole ground-truth box whose pixels changed by more than `tolerance` levels."""
    rows, cols = slice(max(face.y1, 0), face.y2), slice(max(face.x1, 0), face.x2)
    before, after = original[rows, cols].astype(np.int16), anonymized[rows, cols].astype(np.int16)
    return float((np.abs(after - before).max(axis=2) > tolerance).mean())


def hidden(original: np.ndarray, anonymized: np.ndarray, face: Face) -> bool:
    return covered(original, anonymized, face) >= HIDDEN


def run_veil(*args: str | Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VEIL), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)


def write_video(
    path: Path, frames: list[np.ndarray], fps: int = 10, audio: bool = True, index_first: bool = False
) -> None:
    """Encode real frames as H.264 (+ a generated 440 Hz AAC tone) with PyAV; `index_first` puts the MP4
    index (moov) before the data, as streaming-ready files do."""
    height, width = frames[0].shape[:2]
    options = {"movflags": "faststart"} if index_first else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = container.add_stream("aac", rate=16000) if audio else None
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None:
            samples = int(16000 * len(frames) / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)
            for start in range(0, samples, 1024):
                piece = tone[None, start : start + 1024]
                chunk = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = 16000, start, Fraction(1, 16000)
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    audio_seconds: float
    comment: str


def probe(path: Path) -> VideoInfo:
    """Count decoded frames and audio duration by really decoding the file."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        width, height = video.codec_context.width, video.codec_context.height
        frames = sum(1 for _ in container.decode(video=0))
    audio_seconds = 0.0
    with av.open(str(path)) as container:
        comment = container.metadata.get("comment", "")
        if container.streams.audio:
            for frame in container.decode(audio=0):
                audio_seconds += frame.samples / frame.sample_rate
    return VideoInfo(frames, width, height, audio_seconds, comment)


@pytest.fixture(scope="session")
def street_frames() -> list[np.ndarray]:
    """The 6 real 640x480 frames of MOT17-05 (people-video)."""
    folder = dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1"
    return [read_rgb(p) for p in sorted(folder.glob("*.jpg"))]
