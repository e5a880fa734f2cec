"""Live anonymization: a camera's stream in (RTSP, RTMP, HTTP, TCP, ...), the same stream out with faces hidden.

    camera ─► ReconnectingStream (reader thread) ─► newest-frames queue ─► detect ─► track/smooth ─► obscure
           ─► encoder (H.264, zero-latency) ─► `out.mp4` | `rtmp://relay/app/key` | `rtsp://relay/path`

Latency is bounded: the reader keeps at most `QUEUE_FRAMES` decoded frames waiting; when detection falls behind,
the oldest waiting frame is dropped (and counted), never queued without end. Smoothing holds a lost face
`hold_frames` frames and back-fills it as many frames before it was first seen, which delays the output by
that many frames (8 by default, a third of a second at 25 frames/s). The input reconnects with exponential
backoff like the edge sources (`veil.images.streams`); the output stays open across reconnects, with timestamps
taken from the arrival time of each frame so that the relayed stream's clock keeps running.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import cv2
import numpy as np
import supervision as sv

from veil.images.streams import Frame, ReconnectingStream, StreamSettings
from veil.privacy.detectors import Detector, TargetDetector, detector_for
from veil.privacy.image import hide_detections
from veil.privacy.settings import AnonymizeSettings
from veil.privacy.tracking import TemporalSmoother
from veil.privacy.video import HALF_PASS_EVERY

log = logging.getLogger(__name__)

QUEUE_FRAMES = 2  # decoded frames waiting for detection at most; older ones are dropped
_TIME_BASE = Fraction(1, 1000)  # output timestamps in milliseconds of arrival time


class LiveError(ValueError):
    """The output cannot be opened or written; the message names it and the reason."""


@dataclass(frozen=True)
class LiveReport:
    frames: int  # frames written
    dropped: int  # frames dropped because detection was behind (bounded latency)
    reconnects: int
    detections: int  # per-frame detector hits (before smoothing)


def output_format(dst: str) -> str | None:
    """Container format for a destination: FLV for RTMP, RTSP for an RTSP relay, else from the file name."""
    scheme = dst.partition("://")[0].lower() if "://" in dst else ""
    if scheme in ("rtmp", "rtmps"):
        return "flv"
    if scheme in ("rtsp", "rtsps"):
        return "rtsp"
    return None


def anonymize_stream(
    stream: StreamSettings,
    dst: str,
    settings: AnonymizeSettings,
    stop: threading.Event,
    max_frames: int | None = None,
    on_frame: Callable[[int], None] | None = None,
    detector: Detector | None = None,
) -> LiveReport:
    """Relay `stream` to `dst` (file path or rtmp/rtsp URL) with the settings' targets hidden, until `stop` is
    set, `max_frames` frames were written, or the input gives up reconnecting (`stream.max_reconnects`)."""
    detector = detector or detector_for(settings)  # one frame at a time, on every core: lowest latency
    source = ReconnectingStream(stream, stop)
    frames: queue.Queue[Frame | None] = queue.Queue(maxsize=QUEUE_FRAMES)
    dropped = [0]
    reader = threading.Thread(target=_read, args=(source, frames, stop, dropped), name="veil-live-reader")
    reader.start()
    writer = _Writer(dst, settings, on_frame)
    smoother = TemporalSmoother(settings.hold_frames, settings.track_iou)
    detections = 0
    try:
        while max_frames is None or writer.written < max_frames:
            frame = frames.get()
            if frame is None:
                break
            if isinstance(detector, TargetDetector):
                found = detector.detect(frame.rgb, full_only=frame.index % HALF_PASS_EVERY != 0)
            else:
                found = detector.detect(frame.rgb)
            detections += len(found)
            writer.write(smoother.push(frame, found))
        if max_frames is None or writer.written < max_frames:
            writer.write(smoother.flush())
    finally:
        stop.set()
        _drain(frames)
        reader.join()
        writer.close()
    return LiveReport(writer.written, dropped[0], source.reconnects, detections)


def _read(
    source: ReconnectingStream, frames: queue.Queue[Frame | None], stop: threading.Event, dropped: list[int]
) -> None:
    """Reader thread: newest frames into the queue, the oldest waiting one dropped when it is full."""
    try:
        for frame in source:
            while True:
                try:
                    frames.put_nowait(frame)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        frames.get_nowait()
                        dropped[0] += 1
            if stop.is_set():
                return
    finally:
        _put_end(frames)


def _put_end(frames: queue.Queue[Frame | None]) -> None:
    while True:
        try:
            frames.put_nowait(None)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                frames.get_nowait()


def _drain(frames: queue.Queue[Frame | None]) -> None:
    while True:
        try:
            frames.get_nowait()
        except queue.Empty:
            return


class _Writer:
    """Opens the output on the first frame (its size is the stream's), then obscures and encodes each frame."""

    def __init__(self, dst: str, settings: AnonymizeSettings, on_frame: Callable[[int], None] | None) -> None:
        self.dst, self.settings, self.on_frame = dst, settings, on_frame
        self.rng = np.random.default_rng(settings.seed)
        self.container: av.container.OutputContainer | None = None
        self.stream: av.VideoStream | None = None
        self.size = (0, 0)
        self.last_pts = -1
        self.written = 0

    def _open(self, height: int, width: int) -> None:
        options = {"rtsp_transport": "tcp"} if output_format(self.dst) == "rtsp" else {}
        try:
            self.container = av.open(self.dst, "w", format=output_format(self.dst), options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise LiveError(f"{self.dst}: cannot open output ({exc})") from exc
        stream = self.container.add_stream("libx264", rate=25)
        self.size = (width - width % 2, height - height % 2)  # 4:2:0 needs even sides
        stream.width, stream.height = self.size
        stream.pix_fmt = "yuv420p"
        stream.time_base = _TIME_BASE
        stream.codec_context.time_base = _TIME_BASE
        # No lookahead or B-frames: each frame leaves the encoder as soon as it is in.
        stream.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "20", "g": "50"}
        self.stream = stream

    def write(self, ready: list[tuple[Frame, sv.Detections]]) -> None:
        for frame, hidden in ready:
            if self.container is None:
                self._open(*frame.rgb.shape[:2])
            assert self.container is not None and self.stream is not None
            clean = hide_detections(frame.rgb, hidden, self.settings, self.rng).image
            if clean.shape[1::-1] != self.size:  # a reconnect may bring another size: keep the output's
                clean = cv2.resize(clean, self.size, interpolation=cv2.INTER_AREA)
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(clean), format="rgb24")
            self.last_pts = max(round(frame.media_seconds / _TIME_BASE), self.last_pts + 1)
            out.pts, out.time_base = self.last_pts, _TIME_BASE
            try:
                self.container.mux(self.stream.encode(out))
            except (av.error.FFmpegError, OSError) as exc:
                raise LiveError(f"{self.dst}: cannot write ({exc})") from exc
            self.written += 1
            if self.on_frame is not None:
                self.on_frame(self.written)

    def close(self) -> None:
        if self.container is None:
            return
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode(None))
        except (av.error.FFmpegError, OSError) as exc:
            log.warning("%s: flushing the encoder failed (%s)", self.dst, exc)
        finally:
            self.container.close()
