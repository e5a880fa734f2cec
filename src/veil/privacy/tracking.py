"""Temporal smoothing for video: per-frame detectors miss a face for a frame or two, and it leaks.

`FaceTracks` links detections across frames by IoU and keeps hiding a track for `hold_frames` frames after it
was last seen (covering short gaps and flicker). `smooth` adds the backward half: frames pass through a delay
buffer of `hold_frames`, so when a face is first detected its box is also hidden in the frames just before
(faces entering the picture, or missed at the start of a gap).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import supervision as sv

Frame = TypeVar("Frame")


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.float32))
    missed: int = 0


class FaceTracks:
    """Greedy IoU tracker with hold: `update(detections)` returns what to hide in this frame.

    Example:
        >>> tracks = FaceTracks(hold_frames=8, min_iou=0.2)
        >>> hidden = tracks.update(detector.detect(frame))   # includes boxes of recently lost faces
        >>> tracks.born   # ids of tracks that started in this frame
    """

    def __init__(self, hold_frames: int = 8, min_iou: float = 0.2) -> None:
        self.hold_frames = hold_frames
        self.min_iou = min_iou
        self._tracks: list[_Track] = []
        self._next_id = 1
        self.born: list[np.ndarray] = []

    def update(self, detections: sv.Detections) -> sv.Detections:
        boxes = detections.xyxy.astype(np.float32)
        matched_tracks, matched_boxes = self._match(boxes)
        for track_index, box_index in zip(matched_tracks, matched_boxes, strict=True):
            track = self._tracks[track_index]
            track.velocity = (boxes[box_index] - track.box) / (track.missed + 1)
            track.box, track.missed = boxes[box_index], 0
        for track_index in set(range(len(self._tracks))) - set(matched_tracks):
            track = self._tracks[track_index]
            track.missed += 1
            track.box = track.box + track.velocity  # a lost face keeps moving the way it did
        self._tracks = [t for t in self._tracks if t.missed <= self.hold_frames]
        self.born = []
        for box_index in set(range(len(boxes))) - set(matched_boxes):
            self._tracks.append(_Track(self._next_id, boxes[box_index]))
            self._next_id += 1
            self.born.append(boxes[box_index])
        return self._as_detections()

    def _match(self, boxes: np.ndarray) -> tuple[list[int], list[int]]:
        if not self._tracks or len(boxes) == 0:
            return [], []
        iou = sv.box_iou_batch(np.stack([t.box for t in self._tracks]), boxes)
        tracks, dets = [], []
        for flat in np.argsort(-iou, axis=None):
            t, d = np.unravel_index(flat, iou.shape)
            if iou[t, d] < self.min_iou:
                break
            if t not in tracks and d not in dets:
                tracks.append(int(t))
                dets.append(int(d))
        return tracks, dets

    def _as_detections(self) -> sv.Detections:
        if not self._tracks:
            return sv.Detections.empty()
        return sv.Detections(
            xyxy=np.stack([t.box for t in self._tracks]).astype(np.float32),
            confidence=np.array([1.0 if t.missed == 0 else 0.0 for t in self._tracks], dtype=np.float32),
            tracker_id=np.array([t.track_id for t in self._tracks], dtype=int),
        )


class TemporalSmoother:
    """Push (frame, detections) pairs as they are decoded; get back (frame, detections to hide) pairs,
    `hold_frames` frames later, with held tracks and backward-filled births included.

    Example:
        >>> smoother = TemporalSmoother(hold_frames=8)
        >>> for frame in frames:
        ...     for ready, hidden in smoother.push(frame, detector.detect(frame)):
        ...         write(obscure(ready, hidden))
        >>> for ready, hidden in smoother.flush(): ...
    """

    def __init__(self, hold_frames: int = 8, min_iou: float = 0.2) -> None:
        self.hold_frames = hold_frames
        self._tracks = FaceTracks(hold_frames, min_iou)
        self._pending: deque[tuple[object, list[np.ndarray]]] = deque()

    def push(self, frame: Frame, detections: sv.Detections) -> list[tuple[Frame, sv.Detections]]:
        hidden = self._tracks.update(detections)
        for earlier in self._pending:  # a face first seen now was probably there, undetected, just before
            earlier[1].extend(self._tracks.born)
        self._pending.append((frame, list(hidden.xyxy)))
        ready = []
        while len(self._pending) > self.hold_frames:
            ready.append(_emit(self._pending.popleft()))
        return ready  # type: ignore[return-value]  # frames come back as they went in

    def flush(self) -> list[tuple[Frame, sv.Detections]]:
        ready = [_emit(item) for item in self._pending]
        self._pending.clear()
        return ready  # type: ignore[return-value]


def smooth(
    frames: Iterable[tuple[Frame, sv.Detections]], hold_frames: int = 8, min_iou: float = 0.2
) -> Iterator[tuple[Frame, sv.Detections]]:
    """Per-frame detections in, detections to hide out (same frames, same order)."""
    smoother = TemporalSmoother(hold_frames, min_iou)
    for frame, detections in frames:
        yield from smoother.push(frame, detections)
    yield from smoother.flush()


def _emit(item: tuple[object, list[np.ndarray]]) -> tuple[object, sv.Detections]:
    frame, boxes = item
    if not boxes:
        return frame, sv.Detections.empty()
    return frame, sv.Detections(xyxy=np.stack(boxes).astype(np.float32))
