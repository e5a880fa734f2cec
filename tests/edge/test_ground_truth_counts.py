"""(a) Tracker + operators fed the TUD-Campus / TUD-Stadtmitte ground-truth boxes (inside `motmetrics`):
line crossings and zone enter/exit counts must equal those computed directly from the ground-truth tracks."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
import supervision as sv

pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")
motmetrics = pytest.importorskip("motmetrics", reason="motmetrics ships the TUD ground truth")

from veil.edge.config import CameraSpec  # noqa: E402
from veil.edge.events import FrameInfo  # noqa: E402
from veil.edge.operators import Scene, build_operators  # noqa: E402
from veil.edge.track import PeopleTracker  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 480, 25.0
LINES = {  # name: (start, end), normalized
    "vertical-middle": ((0.5, 0.05), (0.5, 0.95)),
    "vertical-left": ((0.3, 0.0), (0.3, 1.0)),
    "diagonal": ((0.65, 0.2), (0.8, 0.98)),
}
ZONES = {
    "left-half": [(0.05, 0.3), (0.45, 0.3), (0.45, 0.98), (0.05, 0.98)],
    "right-block": [(0.55, 0.5), (0.95, 0.5), (0.95, 0.98), (0.55, 0.98)],
    "triangle": [(0.2, 0.95), (0.5, 0.55), (0.8, 0.95)],
}


def load_ground_truth(sequence: str) -> dict[int, np.ndarray]:
    path = Path(motmetrics.__file__).parent / "data" / sequence / "gt.txt"
    rows = np.loadtxt(path, delimiter=",")
    return {int(f): rows[rows[:, 0] == f] for f in np.unique(rows[:, 0])}


def footprints(rows: np.ndarray) -> np.ndarray:
    """Focus `footprint` computed independently: centre of the bottom 10% of the box."""
    x, y, w, h = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
    return np.stack([x + w / 2, y + h - 0.05 * h], axis=1)


def side_of(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    d, v = end - start, point - start
    return float(d[0] * v[1] - d[1] * v[0])


def crosses(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    """Segments p-q and a-b intersect (orientation test)."""
    return side_of(p, a, b) * side_of(q, a, b) < 0 and side_of(a, p, q) * side_of(b, p, q) < 0


def inside_polygon(point: np.ndarray, polygon: np.ndarray) -> bool:
    """Ray casting, independent of OpenCV."""
    x, y, inside = point[0], point[1], False
    for k in range(len(polygon)):
        (x1, y1), (x2, y2) = polygon[k], polygon[(k + 1) % len(polygon)]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def expected_counts(frames: dict[int, np.ndarray]) -> Counter[str]:
    tracks: dict[int, list[np.ndarray]] = defaultdict(list)
    for f in sorted(frames):
        for row, point in zip(frames[f], footprints(frames[f]), strict=True):
            tracks[int(row[1])].append(point)
    counts: Counter[str] = Counter()
    scale = np.array([WIDTH, HEIGHT])
    for points in tracks.values():
        for p, q in itertools.pairwise(points):
            for name, (start, end) in LINES.items():
                a, b = np.array(start) * scale, np.array(end) * scale
                if crosses(p, q, a, b):
                    # y points down: a positive cross product is on the right of start→end
                    counts[f"{name}:{'CrossRight' if side_of(q, a, b) > 0 else 'CrossLeft'}"] += 1
            for name, polygon in ZONES.items():
                poly = np.array(polygon) * scale
                was, now = inside_polygon(p, poly), inside_polygon(q, poly)
                if was != now:
                    counts[f"{name}:{'Enter' if now else 'Exit'}"] += 1
    return counts


def pipeline_counts(frames: dict[int, np.ndarray]) -> Counter[str]:
    camera = CameraSpec.model_validate(
        {
            "id": "tud",
            "source": {"type": "folder", "path": "."},
            "lines": [
                {
                    "name": n,
                    "line": {
                        "start": dict(zip("xy", s, strict=True)),
                        "end": dict(zip("xy", e, strict=True)),
                    },
                    "events": [{"type": "linecrossing"}],
                }
                for n, (s, e) in LINES.items()
            ],
            "zones": [{"name": n, "polygon": p, "events": [{"type": "zonecrossing"}]} for n, p in ZONES.items()],
        }
    )
    operators = build_operators(camera)
    tracker = PeopleTracker(frame_rate=FPS)
    counts: Counter[str] = Counter()
    for f in range(1, max(frames) + 1):
        rows = frames.get(f, np.zeros((0, 6)))
        xyxy = np.stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]], axis=1)
        people = tracker.update(sv.Detections(xyxy=xyxy.reshape(-1, 4), confidence=np.ones(len(rows))))
        scene = Scene(people, FrameInfo("tud", f, WIDTH, HEIGHT, f / FPS))
        for operator in operators:
            for event in operator.update(scene):
                side = event.properties.get("side", "x")
                if side != "":  # appeared/vanished inside: not a crossing seen in the ground truth
                    counts[f"{event.zone}:{event.properties['status']}"] += 1
    return counts


@pytest.mark.parametrize("sequence", ["TUD-Campus", "TUD-Stadtmitte"])
def test_crossings_and_enter_exit_match_ground_truth(sequence: str) -> None:
    frames = load_ground_truth(sequence)
    expected = expected_counts(frames)
    assert sum(expected.values()) >= 10, f"geometry too easy: only {dict(expected)}"
    assert pipeline_counts(frames) == expected
