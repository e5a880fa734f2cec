"""The recorder: clips around events, faces hidden before encryption, sealed under a DEK wrapped by the master
key, readable only with that key, deleted after the retention period; and off by default."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from tests.conftest import dataset_path

from veil.edge.config import RecorderSpec
from veil.edge.events import EventMessage, FrameInfo, PersonEvent
from veil.edge.recorder import ClipRecorder, open_clip
from veil.edge.sources import Frame
from veil.security.crypto import IntegrityError, MasterKey


def couple_photo() -> np.ndarray:
    path = dataset_path("faces-det") / "WIDER_val" / "images" / "19--Couple" / "19_Couple_Couple_19_106.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    return np.ascontiguousarray(rgb[: h - h % 2, : w - w % 2])


def line_event(index: int) -> EventMessage:
    event = PersonEvent("personLineEvent", "door", ("a" * 32,), {"trackingId": "a" * 32, "status": "CrossLeft"})
    return EventMessage(event, FrameInfo("cam", index, 10, 10, index / 5), ())


def labelled_faces() -> list[tuple[int, int, int, int]]:
    """The photo's faces as WIDER FACE's annotators drew them (x, y, w, h): ground truth, not a detector."""
    lines = (dataset_path("faces-det") / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().splitlines()
    at = lines.index("19--Couple/19_Couple_Couple_19_106.jpg")
    return [tuple(int(v) for v in line.split()[:4]) for line in lines[at + 2 : at + 2 + int(lines[at + 1])]]  # type: ignore[misc]


def inner(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The central 60 % of a face box (clear of the mask's soft edge and of codec ringing at its border)."""
    x, y, w, h = box
    return rgb[y + h // 5 : y + h - h // 5, x + w // 5 : x + w - w // 5].astype(float)


def test_clip_around_an_event_is_anonymized_encrypted_and_opens_only_with_the_master_key(
    tmp_path: Path,
) -> None:
    photo = couple_photo()
    faces = labelled_faces()
    assert len(faces) == 2 and all(inner(photo, f).std() > 20 for f in faces), "the photo must show two faces"
    master = MasterKey.generate()
    spec = RecorderSpec(enabled=True, directory=tmp_path / "clips", seconds_before=0.4, seconds_after=0.4)
    recorder = ClipRecorder(spec, fps=5.0, master=master)
    people = None
    for i in range(10):  # 2 frames before, the event frame, 2 after (5 fps × 0.4 s)
        recorder(Frame(photo, i, i / 5), people, [line_event(i)] if i == 5 else [])  # type: ignore[arg-type]
    (clip,) = recorder.written
    sealed = clip.read_bytes()
    assert b"ftyp" not in sealed[:64] and sealed.find(photo[:4].tobytes()) == -1  # no plaintext on disk
    assert {p.name for p in clip.parent.iterdir()} == {clip.name, "recorder.key"}

    mp4 = open_clip(clip, master)
    with av.open(io.BytesIO(mp4)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5
    # Every labelled face is a flat fill in the clip (hidden before encoding and sealing); the rest of the picture
    # is still the photo (the clip is not just blank).
    for face in faces:
        assert inner(frames[2], face).std() < 6 and np.abs(inner(frames[2], face) - inner(photo, face)).mean() > 30
    background = np.ones(photo.shape[:2], bool)
    for x, y, w, h in faces:
        background[max(0, y - h) : y + 2 * h, max(0, x - w) : x + 2 * w] = False
    assert np.abs(frames[2].astype(float) - photo.astype(float))[background].mean() < 6

    with pytest.raises((IntegrityError, ValueError)):
        open_clip(clip, MasterKey.generate())


def test_clips_older_than_the_retention_period_are_deleted(tmp_path: Path) -> None:
    spec = RecorderSpec(enabled=True, directory=tmp_path, seconds_before=0, seconds_after=0, retention_hours=1)
    frame = np.zeros((64, 64, 3), np.uint8)
    recorder = ClipRecorder(spec, fps=5.0, master=MasterKey.generate(), hide_faces=lambda rgb: rgb)
    recorder(Frame(frame, 0, 0.0), None, [line_event(0)])  # type: ignore[arg-type]
    recorder(Frame(frame, 1, 0.2), None, [line_event(1)])  # type: ignore[arg-type]
    old, new = recorder.written
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert recorder.purge() == [old]
    assert not old.exists() and new.exists()


def test_recorder_is_off_by_default() -> None:
    from veil.edge.config import parse_config

    config = parse_config({"cameras": [{"id": "c", "source": {"type": "folder", "path": "."}}]})
    assert config.recorder.enabled is False


def test_pipeline_with_the_recorder_writes_only_sealed_clips(
    people_video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")
    from veil.edge.config import parse_config
    from veil.edge.pipeline import EdgePipeline

    master = MasterKey.generate()
    monkeypatch.setenv("VEIL_MASTER_KEY", master.to_base64())
    clips = tmp_path / "clips"
    config = parse_config(
        {
            "cameras": [
                {
                    "id": "street",
                    "source": {"type": "file", "path": str(people_video)},
                    "lines": [
                        {
                            "name": "kerb",
                            "line": {"start": {"x": 0.25, "y": 0}, "end": {"x": 0.25, "y": 1}},
                            "events": [{"type": "linecrossing"}],
                        }
                    ],
                }
            ],
            "detector": {"kind": "hog", "detect_width": 480, "confidence": 0.3},
            "sinks": [],
            "recorder": {"enabled": True, "directory": str(clips), "seconds_before": 0.2, "seconds_after": 0.2},
        }
    )
    EdgePipeline(config).run()
    sealed = sorted(clips.glob("*.clip"))
    assert len(sealed) >= 1
    assert {p.name for p in clips.iterdir()} == {p.name for p in sealed} | {"recorder.key"}
    with av.open(io.BytesIO(open_clip(sealed[0], master))) as container:
        assert sum(1 for _ in container.decode(video=0)) >= 2  # the event frame and its neighbours
