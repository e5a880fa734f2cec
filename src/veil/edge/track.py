"""ByteTrack tracking with per-run pseudonymous ids.

ByteTrack comes from Roboflow's `trackers` package (supervision moved its tracker there and removed
`sv.ByteTrack` in supervision 0.30). Its small integer ids are replaced by random 32-hex ids drawn fresh in
each run: nothing links an id to a person, and nothing survives a restart.

Example::

    >>> import numpy as np, supervision as sv
    >>> tracker = PeopleTracker()
    >>> box = sv.Detections(xyxy=np.array([[10, 10, 50, 120]], float), confidence=np.array([0.9]))
    >>> people = tracker.update(box)
    >>> len(people.data["tracking_id"][0])
    32
"""

from __future__ import annotations

import numpy as np
import supervision as sv

from veil.edge.config import TrackerSpec
from veil.edge.events import new_id

try:
    from trackers import ByteTrackTracker
except ImportError as exc:  # pragma: no cover - the Makefile installs it
    raise ImportError(
        "veil.edge needs Roboflow's `trackers` package (ByteTrack): pip install --no-deps trackers==2.6.1 pydeprecate"
    ) from exc


class _ByteTrack(ByteTrackTracker):
    """ByteTrack that confirms a track on its first frame when `minimum_consecutive_frames` is 1.

    The library's tracklet is already mature then (one successful update) but only gets its id on the next
    match, so a person crossing a line between their first two frames would go uncounted.
    """

    def _spawn_new_tracks(
        self,
        detection_boxes: np.ndarray,
        confidences: np.ndarray,
        unmatched_high_local: list[int],
        high_indices: np.ndarray,
        out_det_indices: list[int],
        out_tracker_ids: list[int],
    ) -> None:
        tracks_before, outputs_before = len(self.tracks), len(out_tracker_ids)
        super()._spawn_new_tracks(
            detection_boxes, confidences, unmatched_high_local, high_indices, out_det_indices, out_tracker_ids
        )
        if self.minimum_consecutive_frames > 1:
            return
        spawned = iter(self.tracks[tracks_before:])
        for k, local in enumerate(unmatched_high_local):
            if float(confidences[int(high_indices[local])]) >= self.track_activation_threshold:
                tracklet = next(spawned)
                tracklet.tracker_id = self._allocate_tracker_id()
                out_tracker_ids[outputs_before + k] = tracklet.tracker_id


class PeopleTracker:
    """`update(detections) -> people`: ByteTrack, then pseudonymous ids; `drop_stale()` lists who left."""

    def __init__(self, spec: TrackerSpec | None = None, frame_rate: float = 30.0, timeout_frames: int = 30) -> None:
        spec = spec or TrackerSpec()
        self._tracker = _ByteTrack(
            lost_track_buffer=spec.lost_track_buffer,
            frame_rate=frame_rate,
            track_activation_threshold=spec.track_activation_threshold,
            minimum_consecutive_frames=spec.minimum_consecutive_frames,
            minimum_iou_threshold=spec.minimum_iou_threshold,
            high_conf_det_threshold=spec.high_conf_det_threshold,
        )
        self._pseudonyms: dict[int, str] = {}
        self._last_seen: dict[int, int] = {}
        self._frame = 0
        self._timeout = timeout_frames

    def update(self, detections: sv.Detections) -> sv.Detections:
        self._frame += 1
        if detections.confidence is None:
            detections.confidence = np.ones(len(detections), dtype=float)
        tracked = self._tracker.update(detections)
        if len(tracked):
            tracked = tracked[np.asarray(tracked.tracker_id) != -1]  # type: ignore[assignment]
        ids = []
        for raw in (int(t) for t in (tracked.tracker_id if tracked.tracker_id is not None else [])):
            self._last_seen[raw] = self._frame
            if raw not in self._pseudonyms:
                self._pseudonyms[raw] = new_id()
            ids.append(self._pseudonyms[raw])
        tracked.data["tracking_id"] = np.array(ids, dtype=object)
        return tracked

    def drop_stale(self, force_all: bool = False) -> list[str]:
        """Tracking ids unseen for `timeout_frames` (all of them at end of stream), forgotten now."""
        stale = [raw for raw, seen in self._last_seen.items() if force_all or self._frame - seen > self._timeout]
        gone = []
        for raw in stale:
            del self._last_seen[raw]
            gone.append(self._pseudonyms.pop(raw))
        return gone

    @property
    def active_count(self) -> int:
        return len(self._last_seen)
