"""Spatial Analysis operators: small classes with one verb, `update(scene) -> events`.

Each takes the tracked people of one frame (a `Scene` around `sv.Detections` with `data["tracking_id"]`) and
returns `PersonEvent`s with Spatial Analysis' semantics:

- `PersonCount`: people in a zone, on change (`trigger: event`) or every interval (`trigger: interval`);
- `PersonCrossingLine`: `CrossLeft` / `CrossRight`, as seen standing at the line's start facing its end;
- `PersonCrossingPolygon`: `Enter` / `Exit` with the 1-based side crossed ("" when the person appeared or
  vanished inside the zone); `zonedwelltime` sends `personZoneDwellTimeEvent` with the dwell in ms on exit;
- `PersonDistance`: `TooClose` / `TooFar` pairs on the ground plane given by a homography.

`threshold` (a ratio of the frame width) is a dead band: a person must be that far past a line or zone edge
before their side changes, so a box jittering on the line does not emit a storm of events.

Example::

    >>> import numpy as np, supervision as sv
    >>> from veil.edge.config import LineSpec
    >>> spec = LineSpec.model_validate({"name": "door",
    ...     "line": {"start": {"x": 0.5, "y": 0}, "end": {"x": 0.5, "y": 1}},
    ...     "events": [{"type": "linecrossing", "config": {"focus": "center"}}]})
    >>> line = PersonCrossingLine(spec)
    >>> def at(x, frame):
    ...     people = sv.Detections(xyxy=np.array([[x - 5, 40, x + 5, 60]], float), confidence=np.array([0.9]))
    ...     people.data["tracking_id"] = np.array(["a" * 32], dtype=object)
    ...     return Scene(people, FrameInfo("cam", frame, 100, 100, frame / 25))
    >>> line.update(at(30, 0)), [e.properties["status"] for e in line.update(at(70, 1))]
    ([], ['CrossLeft'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np
import supervision as sv

from veil.edge.config import (
    CameraSpec,
    CountEvent,
    DistanceEvent,
    Focus,
    Homography,
    LineCrossingEvent,
    LineSpec,
    OperationConfig,
    ZoneCrossingEvent,
    ZoneDwellEvent,
)
from veil.edge.events import FrameInfo, PersonEvent

# Fraction of the box height, from the bottom, taken as the feet: without a calibrated 3-D camera model the
# footprint is estimated as the centre of that band (Spatial Analysis infers it from its calibration).
_FOOT_BAND = 0.1


def focus_points(xyxy: np.ndarray, focus: Focus) -> np.ndarray:
    """Pixel (x, y) of each box's focus point."""
    cx = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    if focus == "center":
        y = (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    elif focus == "bottom_center":
        y = xyxy[:, 3]
    else:
        y = xyxy[:, 3] - (xyxy[:, 3] - xyxy[:, 1]) * (_FOOT_BAND / 2.0)
    return np.stack([cx, y], axis=1)


@dataclass
class Scene:
    """The tracked people of one frame, with focus points computed once and shared by all operators."""

    people: sv.Detections
    frame: FrameInfo
    _points: dict[str, np.ndarray] = field(default_factory=dict)
    _inside: dict[tuple[object, ...], np.ndarray] = field(default_factory=dict)

    @property
    def tracking_ids(self) -> list[str]:
        return [str(t) for t in self.people.data.get("tracking_id", [])]

    def points(self, focus: Focus) -> np.ndarray:
        if focus not in self._points:
            self._points[focus] = focus_points(self.people.xyxy.astype(float), focus)
        return self._points[focus]

    def zone_distances(self, zone: _Zone, focus: Focus) -> np.ndarray:
        """Signed pixel distance of each person's focus point to a zone's edge (positive inside), computed
        once per zone and focus even when several operators watch the same zone."""
        key = (tuple(zone.normalized), focus)
        if key not in self._inside:
            zone.resize(self.frame)
            self._inside[key] = zone.signed_distance(self.points(focus))
        return self._inside[key]


class Operator(Protocol):
    def update(self, scene: Scene) -> list[PersonEvent]: ...

    def forget(self, tracking_ids: Iterable[str], frame: FrameInfo) -> list[PersonEvent]: ...


class _EveryNth:
    """`output_frequency`: of the events an operator produces, send every Nth."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0

    def take(self) -> bool:
        self.seen += 1
        return (self.seen - 1) % self.n == 0


def _scaled(points: Iterable[tuple[float, float]], frame: FrameInfo) -> np.ndarray:
    return np.array([(x * frame.width, y * frame.height) for x, y in points], dtype=float)


def _segments_intersect(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> float | None:
    """Where segment p→q crosses segment a→b, as a fraction along p→q; None if they do not cross."""
    r, s = q - p, b - a
    denom = r[0] * s[1] - r[1] * s[0]
    if abs(denom) < 1e-12:
        return None
    ap = a - p
    t = (ap[0] * s[1] - ap[1] * s[0]) / denom
    u = (ap[0] * r[1] - ap[1] * r[0]) / denom
    if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
        return float(t)
    return None


# ---------------------------------------------------------------- personcrossingline
@dataclass
class _LineTrack:
    side: int  # -1 left, +1 right (standing at start, facing end)
    point: np.ndarray


class PersonCrossingLine:
    """Emits `personLineEvent` (`CrossLeft` / `CrossRight`) when a tracked person crosses the line segment."""

    def __init__(self, spec: LineSpec, event: LineCrossingEvent | None = None) -> None:
        self.name = spec.name
        self.config: OperationConfig = (event or spec.events[0]).config
        self._start = (spec.line.start.x, spec.line.start.y)
        self._end = (spec.line.end.x, spec.line.end.y)
        self._tracks: dict[str, _LineTrack] = {}
        self._every = _EveryNth(self.config.output_frequency)

    def update(self, scene: Scene) -> list[PersonEvent]:
        frame = scene.frame
        start, end = _scaled([self._start, self._end], frame)
        direction = end - start
        length = float(np.hypot(*direction))
        dead_band = self.config.threshold * frame.width
        points = scene.points(self.config.focus)
        # Image y points down, so a negative cross product is on the left of start→end.
        signed = (direction[0] * (points[:, 1] - start[1]) - direction[1] * (points[:, 0] - start[0])) / length
        # +1 / -1 once settled on a side; 0 inside the dead band (the last settled side is kept).
        sides = np.where(signed > dead_band, 1, np.where(signed < -dead_band, -1, 0)).tolist()
        events = []
        for i, tracking_id in enumerate(scene.tracking_ids):
            side = sides[i]
            if side == 0:
                continue
            track = self._tracks.get(tracking_id)
            if track is None:
                self._tracks[tracking_id] = _LineTrack(side, points[i])
                continue
            previous_point, previous_side = track.point, track.side
            track.point, track.side = points[i], side
            if previous_side == side:
                continue
            if _segments_intersect(previous_point, points[i], start, end) is None:
                continue  # changed side beyond the segment's ends: not a crossing of this line
            if self._every.take():
                status = "CrossRight" if side > 0 else "CrossLeft"
                events.append(
                    PersonEvent(
                        "personLineEvent",
                        self.name,
                        (tracking_id,),
                        {"trackingId": tracking_id, "status": status},
                    )
                )
        return events

    def forget(self, tracking_ids: Iterable[str], frame: FrameInfo) -> list[PersonEvent]:
        for tracking_id in tracking_ids:
            self._tracks.pop(tracking_id, None)
        return []


# ---------------------------------------------------------------- zones
class _Zone:
    """Polygon geometry in pixels for the current frame size, with a signed distance (positive inside)."""

    def __init__(self, polygon: list[tuple[float, float]]) -> None:
        self.normalized = polygon
        self._size: tuple[int, int] | None = None
        self.pixels = np.zeros((0, 2))
        self._contour = np.zeros((0, 1, 2), dtype=np.float32)

    def resize(self, frame: FrameInfo) -> None:
        if self._size != (frame.width, frame.height):
            self._size = (frame.width, frame.height)
            self.pixels = _scaled(self.normalized, frame)
            self._contour = self.pixels.astype(np.float32).reshape(-1, 1, 2)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        return np.array(
            [cv2.pointPolygonTest(self._contour, (float(x), float(y)), True) for x, y in points], dtype=float
        )

    def crossed_side(self, p: np.ndarray, q: np.ndarray, entering: bool) -> str:
        """1-based index of the edge crossed going p→q: first hit entering, last hit leaving."""
        hits = []
        n = len(self.pixels)
        for k in range(n):
            t = _segments_intersect(p, q, self.pixels[k], self.pixels[(k + 1) % n])
            if t is not None:
                hits.append((t, k + 1))
        if not hits:
            return ""
        return str((min(hits) if entering else max(hits))[1])


@dataclass
class _ZoneTrack:
    inside: bool
    point: np.ndarray
    since_seconds: float
    frames_inside: int = 0


class PersonCrossingPolygon:
    """`personZoneEnterExitEvent` (zonecrossing), or `personZoneDwellTimeEvent` on exit (zonedwelltime)."""

    def __init__(self, zone_name: str, polygon: list[tuple[float, float]], event: ZoneCrossingEvent | ZoneDwellEvent):
        self.name = zone_name
        self.config = event.config
        self.dwell = event.type == "zonedwelltime"
        self._zone = _Zone(polygon)
        self._tracks: dict[str, _ZoneTrack] = {}
        self._every = _EveryNth(self.config.output_frequency)

    def update(self, scene: Scene) -> list[PersonEvent]:
        frame = scene.frame
        self._zone.resize(frame)
        dead_band = self.config.threshold * frame.width
        points = scene.points(self.config.focus)
        distances = scene.zone_distances(self._zone, self.config.focus)
        events: list[PersonEvent] = []
        for i, tracking_id in enumerate(scene.tracking_ids):
            track = self._tracks.get(tracking_id)
            if abs(distances[i]) <= dead_band:  # on the edge: the last settled state holds
                if track is not None and track.inside:
                    track.frames_inside += 1
                continue
            inside = bool(distances[i] > 0)
            if track is None:
                self._tracks[tracking_id] = _ZoneTrack(inside, points[i], frame.media_seconds, int(inside))
                if inside:  # appeared inside without being seen crossing a side
                    events += self._emit(tracking_id, "Enter", "", None)
                continue
            if inside != track.inside:
                side = self._zone.crossed_side(track.point, points[i], entering=inside)
                if inside:
                    events += self._emit(tracking_id, "Enter", side, None)
                    track.since_seconds, track.frames_inside = frame.media_seconds, 0
                else:
                    events += self._emit(tracking_id, "Exit", side, (track, frame))
                track.inside = inside
            if inside:
                track.frames_inside += 1
            track.point = points[i]
        return events

    def forget(self, tracking_ids: Iterable[str], frame: FrameInfo) -> list[PersonEvent]:
        events: list[PersonEvent] = []
        for tracking_id in tracking_ids:
            track = self._tracks.pop(tracking_id, None)
            if track is not None and track.inside:  # vanished inside: an exit on no particular side
                events += self._emit(tracking_id, "Exit", "", (track, frame))
        return events

    def _emit(
        self, tracking_id: str, status: str, side: str, exit_of: tuple[_ZoneTrack, FrameInfo] | None
    ) -> list[PersonEvent]:
        properties: dict[str, object] = {"trackingId": tracking_id, "status": status, "side": side}
        if self.dwell:
            if exit_of is None:
                return []
            track, frame = exit_of
            properties["dwellTime"] = round((frame.media_seconds - track.since_seconds) * 1000.0, 1)
            properties["dwellFrames"] = track.frames_inside
            kind = "personZoneDwellTimeEvent"
        else:
            kind = "personZoneEnterExitEvent"
        if not self._every.take():
            return []
        return [PersonEvent(kind, self.name, (tracking_id,), properties)]


class PersonCount:
    """`personCountEvent`: at start and on each change (`event`), or every `interval_seconds` (`interval`)."""

    def __init__(self, zone_name: str, polygon: list[tuple[float, float]], event: CountEvent) -> None:
        self.name = zone_name
        self.config = event.config
        self._zone = _Zone(polygon)
        self._last_count: int | None = None
        self._last_sent_seconds: float | None = None
        self._every = _EveryNth(self.config.output_frequency)

    def update(self, scene: Scene) -> list[PersonEvent]:
        self._zone.resize(scene.frame)
        dead_band = self.config.threshold * scene.frame.width
        distances = scene.zone_distances(self._zone, self.config.focus)
        inside = [tid for tid, d in zip(scene.tracking_ids, distances, strict=True) if d > dead_band]
        now = scene.frame.media_seconds
        if self.config.trigger == "event":
            due = len(inside) != self._last_count
        else:
            due = self._last_sent_seconds is None or now - self._last_sent_seconds >= self.config.interval_seconds
        self._last_count = len(inside)
        if not due:
            return []
        self._last_sent_seconds = now
        if not self._every.take():
            return []
        return [
            PersonEvent(
                "personCountEvent",
                self.name,
                tuple(inside),
                {"personCount": len(inside)},
                self.config.trigger,
            )
        ]

    def forget(self, tracking_ids: Iterable[str], frame: FrameInfo) -> list[PersonEvent]:
        return []


class GroundPlane:
    """Maps image pixels to ground-plane coordinates (feet, or whatever unit `ground_points` use)."""

    def __init__(self, spec: Homography) -> None:
        self._spec = spec
        self._size: tuple[int, int] | None = None
        self._matrix: np.ndarray = np.eye(3)

    def to_ground(self, points: np.ndarray, frame: FrameInfo) -> np.ndarray:
        if self._size != (frame.width, frame.height):
            self._size = (frame.width, frame.height)
            image = _scaled(self._spec.image_points, frame).astype(np.float32)
            ground = np.array(self._spec.ground_points, dtype=np.float32)
            matrix, _ = cv2.findHomography(image, ground)
            if matrix is None:
                raise ValueError("homography: image_points are degenerate (three or more on one line?)")
            self._matrix = matrix
        if len(points) == 0:
            return np.zeros((0, 2))
        return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), self._matrix).reshape(-1, 2)


class PersonDistance:
    """`personDistanceEvent` (`TooClose` / `TooFar`) for people in a zone, measured on the ground plane."""

    def __init__(self, zone_name: str, polygon: list[tuple[float, float]], event: DistanceEvent, ground: GroundPlane):
        self.name = zone_name
        self.config = event.config
        self._zone = _Zone(polygon)
        self._ground = ground
        self._last: dict[str, int] = {"TooClose": 0, "TooFar": 0}
        self._last_sent_seconds: float | None = None
        self._every = _EveryNth(self.config.output_frequency)

    def update(self, scene: Scene) -> list[PersonEvent]:
        self._zone.resize(scene.frame)
        points = scene.points(self.config.focus)
        keep = scene.zone_distances(self._zone, self.config.focus) > self.config.threshold * scene.frame.width
        ids = [tid for tid, k in zip(scene.tracking_ids, keep, strict=True) if k]
        ground = self._ground.to_ground(points[keep], scene.frame)
        pairwise = np.linalg.norm(ground[:, None, :] - ground[None, :, :], axis=2)
        upper = pairwise[np.triu_indices(len(ids), k=1)]
        average = _aggregate(upper, self.config.aggregation_method)
        violations = {"TooClose": self._violators(pairwise, lambda d: d < self.config.minimum_distance_threshold)}
        maximum = self.config.maximum_distance_threshold
        if maximum is not None:
            violations["TooFar"] = self._violators(pairwise, lambda d: d > maximum)
        now = scene.frame.media_seconds
        interval_due = self.config.trigger == "interval" and (
            self._last_sent_seconds is None or now - self._last_sent_seconds >= self.config.interval_seconds
        )
        events = []
        for name, who in violations.items():
            changed = len(who) != self._last[name]
            self._last[name] = len(who)
            due = interval_due if self.config.trigger == "interval" else (changed and len(who) > 0)
            if not due or not self._every.take():
                continue
            events.append(
                PersonEvent(
                    "personDistanceEvent",
                    self.name,
                    tuple(ids[i] for i in who),
                    {
                        "personCount": len(ids),
                        "averageDistance": average,
                        "minimumDistanceThreshold": self.config.minimum_distance_threshold,
                        "maximumDistanceThreshold": "Infinity" if maximum is None else maximum,
                        "eventName": name,
                        "distanceViolationPersonCount": len(who),
                    },
                    self.config.trigger,
                )
            )
        if interval_due:
            self._last_sent_seconds = now
        return events

    @staticmethod
    def _violators(pairwise: np.ndarray, rule: object) -> list[int]:
        n = len(pairwise)
        off_diagonal = ~np.eye(n, dtype=bool)
        hits = rule(pairwise) & off_diagonal  # type: ignore[operator]
        return [int(i) for i in np.flatnonzero(hits.any(axis=1))]

    def forget(self, tracking_ids: Iterable[str], frame: FrameInfo) -> list[PersonEvent]:
        return []


def _aggregate(distances: np.ndarray, method: str) -> float:
    if len(distances) == 0:
        return 0.0
    if method == "mode":
        values, counts = np.unique(np.round(distances, 1), return_counts=True)
        return float(values[np.argmax(counts)])
    return float(distances.mean())


def build_operators(camera: CameraSpec) -> list[Operator]:
    """One operator per configured line event and zone event of a camera."""
    operators: list[Operator] = [PersonCrossingLine(line, event) for line in camera.lines for event in line.events]
    ground = GroundPlane(camera.homography) if camera.homography is not None else None
    for zone in camera.zones:
        for event in zone.events:
            if isinstance(event, CountEvent):
                operators.append(PersonCount(zone.name, zone.polygon, event))
            elif isinstance(event, DistanceEvent):
                assert ground is not None  # the config validator requires a homography for persondistance
                operators.append(PersonDistance(zone.name, zone.polygon, event, ground))
            else:
                operators.append(PersonCrossingPolygon(zone.name, zone.polygon, event))
    return operators
