"""Frame sources: a video file, a live RTSP/HTTP stream, a webcam, or a folder of frames.

Each is an iterator of `Frame` (RGB array in memory, index, media time); nothing is written anywhere.
Live streams reconnect with exponential backoff when they drop (`veil.images.streams`, shared with live
anonymization; a live stream that "ends" has dropped too);
files run as fast as possible or, with `realtime`, at their native rate. Iteration stops when `stop` is set
(SIGTERM).

Example::

    >>> import threading
    >>> from pathlib import Path
    >>> from veil.edge.config import FolderSource
    >>> try:
    ...     open_source(FolderSource(type="folder", path=Path("/nonexistent")), threading.Event())
    ... except SourceError as exc:
    ...     print(exc)
    folder source: /nonexistent is not a directory
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import av
import cv2

from veil.edge.config import FileSource, FolderSource, SourceSpec, StreamSource, WebcamSource
from veil.images.streams import Frame as Frame  # re-exported: the edge pipeline's frames
from veil.images.streams import ReconnectingStream, StreamSettings, frame_rate

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source that cannot be opened at all (as opposed to a live stream that drops and is retried)."""


class FrameSource:
    """Base: iterate frames until exhausted or `stop` is set; `fps` is the nominal rate (for the tracker)."""

    fps: float = 25.0
    reconnects: int = 0
    # Called with the number of frames the source dropped or could not decode (metrics).
    on_dropped: Callable[[int], None] | None = None

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError


class FileVideoSource(FrameSource):
    def __init__(self, spec: FileSource, stop: threading.Event) -> None:
        if not spec.path.is_file():
            raise SourceError(f"file source: {spec.path} does not exist")
        self._spec, self._stop = spec, stop
        try:
            with av.open(str(spec.path)) as container:
                if not container.streams.video:
                    raise SourceError(f"file source: {spec.path} has no video stream")
                self.fps = frame_rate(container.streams.video[0])
        except av.error.FFmpegError as exc:
            raise SourceError(f"file source: cannot read {spec.path}: {exc}") from None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while not self._stop.is_set():
            started = time.monotonic()
            offset = index / self.fps
            with av.open(str(self._spec.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for decoded in container.decode(stream):
                    if self._stop.is_set():
                        return
                    seconds = offset + (float(decoded.time) if decoded.time is not None else index / self.fps)
                    if self._spec.realtime:
                        delay = started + (seconds - offset) - time.monotonic()
                        if delay > 0:
                            self._stop.wait(delay)
                        elif -delay > 1.0 / self.fps:
                            # A live camera does not wait for a slow box: late frames are lost, and counted.
                            index += 1
                            if self.on_dropped is not None:
                                self.on_dropped(1)
                            continue
                    yield Frame(decoded.to_ndarray(format="rgb24"), index, seconds)
                    index += 1
            if not self._spec.loop:
                return


class LiveStreamSource(FrameSource):
    """RTSP/HTTP/... through PyAV, reopened with exponential backoff whenever it fails or ends
    (`veil.images.streams.ReconnectingStream`, shared with live anonymization)."""

    def __init__(self, spec: StreamSource, stop: threading.Event) -> None:
        settings = StreamSettings(
            spec.url,
            spec.reconnect_initial_seconds,
            spec.reconnect_max_seconds,
            spec.max_reconnects,
            spec.open_timeout_seconds,
        )
        self._stream = ReconnectingStream(settings, stop)

    @property
    def fps(self) -> float:  # type: ignore[override]
        return self._stream.fps

    @property
    def reconnects(self) -> int:  # type: ignore[override]
        return self._stream.reconnects

    def __iter__(self) -> Iterator[Frame]:
        return iter(self._stream)


class WebcamFrameSource(FrameSource):
    def __init__(self, spec: WebcamSource, stop: threading.Event) -> None:
        self._spec, self._stop = spec, stop
        self._capture = cv2.VideoCapture(spec.index)
        if not self._capture.isOpened():
            raise SourceError(f"webcam source: cannot open camera index {spec.index}")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 25.0)

    def __iter__(self) -> Iterator[Frame]:
        index, started = 0, time.monotonic()
        try:
            while not self._stop.is_set():
                ok, bgr = self._capture.read()
                if not ok:
                    log.warning("webcam %d returned no frame; retrying", self._spec.index)
                    self.reconnects += 1
                    self._stop.wait(0.5)
                    continue
                yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, time.monotonic() - started)
                index += 1
        finally:
            self._capture.release()


class FolderFrameSource(FrameSource):
    def __init__(self, spec: FolderSource, stop: threading.Event) -> None:
        if not spec.path.is_dir():
            raise SourceError(f"folder source: {spec.path} is not a directory")
        self._files = sorted(spec.path.glob(spec.pattern))
        if not self._files:
            raise SourceError(f"folder source: no files match {spec.pattern!r} in {spec.path}")
        self._stop = stop
        self.fps = spec.fps

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self._files):
            if self._stop.is_set():
                return
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("folder source: cannot decode %s; skipped", path)
                if self.on_dropped:
                    self.on_dropped(1)
                continue
            yield Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index, index / self.fps)


def open_source(spec: SourceSpec, stop: threading.Event) -> FrameSource:
    if isinstance(spec, FileSource):
        return FileVideoSource(spec, stop)
    if isinstance(spec, StreamSource):
        return LiveStreamSource(spec, stop)
    if isinstance(spec, WebcamSource):
        return WebcamFrameSource(spec, stop)
    return FolderFrameSource(spec, stop)
