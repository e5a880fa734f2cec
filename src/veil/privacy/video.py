"""The video pipeline: decode (PyAV) → detect → track and smooth → obscure → encode, frame by frame.

Output goes to a temporary file beside the destination and is renamed only when the whole video was written:
a failed or truncated input leaves nothing behind. Audio is copied untouched with `keep_audio`; other streams,
and the container's metadata unless `keep_metadata`, are dropped.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
import supervision as sv

from veil.privacy.detectors import Detector, TargetDetector, detector_for
from veil.privacy.image import dp_record, hide_detections
from veil.privacy.metadata import RECORD_KEY
from veil.privacy.obfuscate import DPRecord
from veil.privacy.parallel import ordered_map
from veil.privacy.settings import AnonymizeSettings
from veil.privacy.tracking import TemporalSmoother

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})


class VideoError(ValueError):
    """A video cannot be read or written; the message names the file and the reason."""


@dataclass(frozen=True)
class VideoReport:
    frames: int
    width: int
    height: int
    fps: float
    detections: int  # per-frame detector hits (before smoothing)
    audio_kept: bool
    dp: DPRecord | None


@dataclass(frozen=True)
class _Decoded:
    rgb: np.ndarray
    pts: int | None
    time_base: Fraction | None
    index: int


# The faces' half-resolution pass runs on every 4th frame only: a face it finds is tracked and stays hidden
# `hold_frames` (8) frames either side, longer than the gap to the next half-resolution look.
HALF_PASS_EVERY = 4


def _detect(detector: Detector, frame: _Decoded) -> sv.Detections:
    if isinstance(detector, TargetDetector):
        return detector.detect(frame.rgb, full_only=frame.index % HALF_PASS_EVERY != 0)
    return detector.detect(frame.rgb)


def count_frames(src: Path) -> int | None:
    """Frame count from the container header (for progress bars), or None when it does not say."""
    try:
        with av.open(str(src)) as container:
            frames = container.streams.video[0].frames if container.streams.video else 0
            return frames or None
    except (av.error.FFmpegError, IndexError):
        return None


def anonymize_video(
    src: Path,
    dst: Path,
    settings: AnonymizeSettings,
    on_frame: Callable[[int], None] | None = None,
    detector: Detector | None = None,
) -> VideoReport:
    """Anonymize every frame of `src` into `dst`; `on_frame(n)` is called after each frame written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}", dir=dst.parent)
    os.close(handle)
    try:
        detector = detector or detector_for(settings, threads=1)  # frames run one per core
        report = _transcode(src, Path(temp), settings, on_frame, detector)
        os.replace(temp, dst)
        return report
    except av.error.FFmpegError as exc:
        raise VideoError(f"{src}: cannot process video ({exc.strerror or exc})") from exc
    finally:
        Path(temp).unlink(missing_ok=True)


def _transcode(
    src: Path,
    dst: Path,
    settings: AnonymizeSettings,
    on_frame: Callable[[int], None] | None,
    detector: Detector,
) -> VideoReport:
    with av.open(str(src)) as source:
        if not source.streams.video:
            raise VideoError(f"{src}: no video stream")
        video_in = source.streams.video[0]
        audio_in = source.streams.audio[0] if settings.keep_audio and source.streams.audio else None
        fps = video_in.average_rate or video_in.guessed_rate or Fraction(25)
        with av.open(str(dst), "w") as sink:
            video_out = _add_video_stream(sink, video_in, fps)
            audio_out = sink.add_stream_from_template(audio_in) if audio_in is not None else None
            if settings.keep_metadata:
                sink.metadata.update(source.metadata)
            record = dp_record(settings, channels=3, frames=video_in.frames or 1)
            if record is not None:  # written in the header, so recorded before the first frame
                sink.metadata["comment"] = f"{RECORD_KEY}: {record.describe()}"
            writer = _FrameWriter(sink, video_out, settings, on_frame)
            smoother = TemporalSmoother(settings.hold_frames, settings.track_iou)
            decoded = detected = 0
            frames = _decode(source, video_in, audio_in, sink, audio_out)
            for frame, found in ordered_map(lambda f: (f, _detect(detector, f)), frames):
                decoded, detected = decoded + 1, detected + len(found)
                writer.write(smoother.push(frame, found))
            writer.write(smoother.flush())
            sink.mux(video_out.encode(None))
            declared = video_in.frames
            if decoded == 0 or (declared and decoded < declared):
                raise VideoError(f"{src}: truncated or damaged video ({decoded} of {declared} frames decode)")
    return VideoReport(
        writer.written,
        video_out.width,
        video_out.height,
        float(fps),
        detected,
        audio_out is not None,
        dp_record(settings, channels=3, frames=writer.written),
    )


def _decode(
    source: av.container.InputContainer,
    video_in: av.VideoStream,
    audio_in: av.AudioStream | None,
    sink: av.container.OutputContainer,
    audio_out: av.AudioStream | None,
) -> Iterator[_Decoded]:
    """Yield the video frames in order; audio packets (when kept) are copied to the sink on the way."""
    streams = [video_in] + ([audio_in] if audio_in is not None else [])
    index = 0
    for packet in source.demux(*streams):
        if packet.stream is audio_in:
            if packet.dts is not None and audio_out is not None:  # skip the demuxer's empty flush packet
                packet.stream = audio_out
                sink.mux(packet)
            continue
        for frame in packet.decode():
            if isinstance(frame, av.VideoFrame):
                yield _Decoded(frame.to_ndarray(format="rgb24"), frame.pts, frame.time_base, index)
                index += 1


def _add_video_stream(sink: av.container.OutputContainer, video_in: av.VideoStream, fps: Fraction) -> av.VideoStream:
    video_out = sink.add_stream("libx264", rate=fps)
    video_out.width, video_out.height = video_in.codec_context.width, video_in.codec_context.height
    even = video_out.width % 2 == 0 and video_out.height % 2 == 0
    video_out.pix_fmt = "yuv420p" if even else "yuv444p"  # 4:2:0 needs even sides
    video_out.options = {"crf": "18", "preset": "veryfast"}
    video_out.time_base = video_in.time_base
    return video_out


class _FrameWriter:
    """Obscures the smoothed detections in each ready frame and encodes it, keeping the source timestamps."""

    def __init__(
        self,
        sink: av.container.OutputContainer,
        stream: av.VideoStream,
        settings: AnonymizeSettings,
        on_frame: Callable[[int], None] | None,
    ) -> None:
        self.sink, self.stream, self.settings, self.on_frame = sink, stream, settings, on_frame
        self.rng = np.random.default_rng(settings.seed)
        self.written = 0

    def write(self, ready: Sequence[tuple[_Decoded, sv.Detections]]) -> None:
        for frame, hidden in ready:
            clean = hide_detections(frame.rgb, hidden, self.settings, self.rng).image
            out = av.VideoFrame.from_ndarray(clean, format="rgb24")
            out.pts, out.time_base = frame.pts, frame.time_base
            self.sink.mux(self.stream.encode(out))
            self.written += 1
            if self.on_frame is not None:
                self.on_frame(self.written)
