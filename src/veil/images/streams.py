"""Live video streams (RTSP, RTMP, HTTP, TCP, ...) read through PyAV, reopened with backoff when they drop.

Shared by the edge pipeline (`veil.edge.sources`) and live anonymization (`veil.privacy.live`), which sit side
by side above this layer. A live stream that "ends" has dropped too: it is reopened after `initial_seconds`,
doubling up to `max_seconds`, and the backoff starts again once frames flow. Iteration stops when `stop` is set
or after `max_reconnects` reopenings. RTSP sources are read over TCP (interleaved RTP), or over UDP when the
server refuses TCP.

Example::

    >>> import threading
    >>> stream = ReconnectingStream(StreamSettings("rtsp://camera.local/live"), threading.Event())
    >>> for frame in stream:            # Frame(rgb, index, media_seconds), forever
    ...     ...
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
import numpy as np

log = logging.getLogger(__name__)

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "rtmps", "udp", "tcp", "srt")
RTSP_TRANSPORTS = ("tcp", "udp")  # tried in this order when an RTSP source is opened
# A stream joined (or rejoined) between key frames decodes with missing references, as grey blocks: frames are
# skipped until the first key frame, or at most this many (streams with intra refresh have none).
MAX_SKIPPED_BEFORE_KEY = 100
UDP_BUFFER_BYTES = 4 << 20  # RTSP over UDP: socket receive buffer (the kernel may grant less)


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB pixels, its position in the stream and its media (or arrival) time in seconds."""

    rgb: np.ndarray
    index: int
    media_seconds: float


@dataclass(frozen=True)
class StreamSettings:
    url: str
    reconnect_initial_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    max_reconnects: int | None = None  # None = forever
    open_timeout_seconds: float = 10.0


def is_stream_url(text: str) -> bool:
    """True for a URL PyAV reads as a live stream (`rtsp://…`, `rtmp://…`, `http://…`, …)."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def frame_rate(stream: av.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return float(rate) if rate else 25.0


class ReconnectingStream:
    """Iterate a live stream's frames, reopening it with exponential backoff whenever it fails or ends.

    `fps` is the stream's nominal rate (known once opened), `reconnects` counts reopenings; `media_seconds`
    of each frame is the time since iteration started (a live stream's own timestamps restart on reconnect).
    """

    def __init__(self, settings: StreamSettings, stop: threading.Event) -> None:
        self.settings, self._stop = settings, stop
        self.fps = 25.0
        self.reconnects = 0
        self.transport: str | None = None  # RTSP: the lower transport of the open connection (tcp or udp)
        self.on_dropped: Callable[[int], None] | None = None

    def __iter__(self) -> Iterator[Frame]:
        spec = self.settings
        index, attempts, delay = 0, 0, spec.reconnect_initial_seconds
        started = time.monotonic()
        # RTSP: RTP interleaved in the TCP connection first (no loss, passes NAT), then RTP over UDP, which some
        # servers and cameras only offer (they answer a TCP SETUP with 400 or 461). The transport that last
        # delivered frames is tried first on every reconnect.
        transports: list[str | None] = list(RTSP_TRANSPORTS) if spec.url.lower().startswith("rtsp") else [None]
        while not self._stop.is_set():
            got_frames = False
            for transport in list(transports):
                try:
                    options = _rtsp_options(transport) if transport else {}
                    timeout = spec.open_timeout_seconds
                    with av.open(spec.url, options=options, timeout=(timeout, timeout)) as container:
                        stream = container.streams.video[0]
                        self.fps = frame_rate(stream)
                        self.transport = transport
                        skipped = 0
                        for decoded in container.decode(stream):
                            if self._stop.is_set():
                                return
                            if not got_frames and not decoded.key_frame and skipped < MAX_SKIPPED_BEFORE_KEY:
                                skipped += 1  # joined between key frames: concealment paints grey blocks
                                continue
                            if not got_frames and transport != transports[0]:
                                transports.remove(transport)
                                transports.insert(0, transport)
                            got_frames = True
                            yield Frame(decoded.to_ndarray(format="rgb24"), index, time.monotonic() - started)
                            index += 1
                    log.warning("stream %s ended; reconnecting", spec.url)
                except (av.error.FFmpegError, OSError, IndexError) as exc:
                    tail = f" over {transport}" if transport else ""
                    log.warning("stream %s failed%s (%s); reconnecting", spec.url, tail, exc)
                if got_frames or self._stop.is_set():
                    break  # it delivered: reconnect with the same transport first, after the backoff
            if got_frames:  # it worked for a while: start the backoff again from the beginning
                delay = spec.reconnect_initial_seconds
            attempts += 1
            if spec.max_reconnects is not None and attempts > spec.max_reconnects:
                log.error("stream %s: giving up after %d reconnects", spec.url, attempts - 1)
                return
            self.reconnects += 1
            self._stop.wait(delay)
            delay = min(delay * 2, spec.reconnect_max_seconds)


def _rtsp_options(transport: str) -> dict[str, str]:
    """libavformat options for an RTSP source: the lower transport and, over UDP, a receive buffer that holds
    a key frame's burst of RTP packets (the default 64 KB loses the end of a large one: grey rows)."""
    options = {"rtsp_transport": transport}
    if transport == "udp":
        options["buffer_size"] = str(UDP_BUFFER_BYTES)
    return options
