"""The recorder (off by default): short clips around events, faces hidden, encrypted, deleted after retention.

Frames wait in a bounded in-memory ring (`seconds_before`). When an event of a configured type fires, the ring
plus the next `seconds_after` of frames become a clip: every frame goes through Veil's anonymizer
(faces solid-filled), is encoded to MP4 *in memory*, and sealed with AES-256-GCM under a recorder data key
(DEK). The DEK is wrapped by Veil's master key (`VEIL_MASTER_KEY` or `<data_dir>/master.key`) and stored
beside the clips, so no plaintext pixel ever reaches the disk. Clips older than `retention_hours` are deleted
at each new clip and at start.

    veil edge open-clip CLIP_FILE -o out.mp4    (an authorised reviewer; same master key; see `open_clip`)
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import av
import numpy as np
import supervision as sv

from veil.edge.config import RecorderSpec
from veil.edge.events import EventMessage, new_id
from veil.edge.sources import Frame
from veil.security.crypto import MasterKey, new_key, open_, seal

log = logging.getLogger(__name__)

_KEY_FILE = "recorder.key"  # {"key_id": ..., "wrapped": hex}: the recorder DEK wrapped by the master key
_SCOPE = "veil-edge-recorder"  # the "project id" the DEK and clips are bound to
CLIP_SUFFIX = ".clip"


def master_key(data_dir: Path | None = None) -> MasterKey:
    """Veil's master key: `VEIL_MASTER_KEY`, else `<data_dir>/master.key` (created 0600 on first use)."""
    from veil.config import get_settings
    from veil.security.crypto import FileKeySource, key_source

    settings = get_settings(data_dir=data_dir)
    secret = settings.master_key.get_secret_value() if settings.master_key is not None else None
    source = key_source(secret, settings.master_key_file)
    if isinstance(source, FileKeySource):
        source.path.parent.mkdir(parents=True, exist_ok=True)
        return source.ensure()
    return source.load()[0]


def recorder_key(directory: Path, master: MasterKey) -> bytes:
    """The recorder's DEK: unwrapped from `directory/recorder.key`, or created and stored wrapped."""
    path = directory / _KEY_FILE
    if path.exists():
        stored = json.loads(path.read_text())
        if stored["key_id"] != master.key_id:
            raise ValueError(f"{path} was wrapped by master key {stored['key_id']}, not {master.key_id}")
        return master.unwrap(_SCOPE, bytes.fromhex(stored["wrapped"]))
    dek = new_key()
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key_id": master.key_id, "wrapped": master.wrap(_SCOPE, dek).hex()}))
    path.chmod(0o600)
    return dek


def open_clip(path: Path, master: MasterKey) -> bytes:
    """The MP4 bytes of a sealed clip (for an authorised reviewer)."""
    dek = recorder_key(path.parent, master)
    return open_(dek, _SCOPE, path.stem, path.read_bytes())


@dataclass
class _Clip:
    clip_id: str
    frames: list[np.ndarray]
    remaining: int
    events: list[str] = field(default_factory=list)


class HideFaces(Protocol):
    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...


class ClipRecorder:
    """An observer of a camera runner: `__call__(frame, people, messages)` per processed frame."""

    def __init__(self, spec: RecorderSpec, fps: float, master: MasterKey, hide_faces: HideFaces | None = None) -> None:
        self._spec = spec
        self._fps = max(1.0, fps)
        self._dek = recorder_key(spec.directory, master)
        self._ring: deque[np.ndarray] = deque(maxlen=max(1, round(spec.seconds_before * self._fps)))
        self._open: _Clip | None = None
        self._hide_faces = hide_faces
        self.written: list[Path] = []
        self.purge()

    def __call__(self, frame: Frame, people: sv.Detections, messages: list[EventMessage]) -> None:
        triggers = [m.event.type for m in messages if m.event.type in self._spec.event_types]
        if self._open is not None:
            self._open.frames.append(frame.rgb)
            self._open.events += triggers
            self._open.remaining = max(self._open.remaining - 1, 0)
            if triggers:  # a later event extends the clip instead of starting an overlapping one
                self._open.remaining = round(self._spec.seconds_after * self._fps)
            if self._open.remaining == 0:
                self._finish()
        elif triggers:
            after = round(self._spec.seconds_after * self._fps)
            self._open = _Clip(new_id(), [*self._ring, frame.rgb], after, triggers)
            self._ring.clear()
            if after == 0:
                self._finish()
        if self._open is None:
            self._ring.append(frame.rgb)

    def _finish(self) -> None:
        clip, self._open = self._open, None
        assert clip is not None
        mp4 = self._encode([self._anonymize(f) for f in clip.frames])
        path = self._spec.directory / f"{clip.clip_id}{CLIP_SUFFIX}"
        path.write_bytes(seal(self._dek, _SCOPE, clip.clip_id, mp4))
        path.chmod(0o600)
        self.written.append(path)
        log.info("recorded %s (%d frames, %s)", path.name, len(clip.frames), ", ".join(sorted(set(clip.events))))
        self.purge()

    def _anonymize(self, rgb: np.ndarray) -> np.ndarray:
        if self._hide_faces is None:
            from veil.edge.faces import FaceHider

            self._hide_faces = FaceHider()
        return self._hide_faces(rgb)

    def _encode(self, frames: list[np.ndarray]) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(self._fps))
            h, w = frames[0].shape[:2]
            stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
            for rgb in frames:
                even = np.ascontiguousarray(rgb[: stream.height, : stream.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return buffer.getvalue()

    def purge(self, now: float | None = None) -> list[Path]:
        """Delete clips older than the retention period; returns what was deleted."""
        cutoff = (now if now is not None else time.time()) - self._spec.retention_hours * 3600
        deleted = []
        for path in self._spec.directory.glob(f"*{CLIP_SUFFIX}"):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                deleted.append(path)
        return deleted

    def close(self) -> None:
        """At shutdown an open clip is finished with the frames it has."""
        if self._open is not None and self._open.frames:
            self._finish()
