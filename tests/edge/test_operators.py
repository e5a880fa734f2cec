"""Operator semantics that the ground-truth test does not reach: dwell time, the threshold dead band, count
triggers, output_frequency, ground-plane distance; and a two-camera pipeline with its Prometheus endpoint."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
from tests.conftest import dataset_path

from veil.edge.config import LineSpec, ZoneSpec, parse_config
from veil.edge.events import FrameInfo
from veil.edge.operators import (
    GroundPlane,
    PersonCount,
    PersonCrossingLine,
    PersonCrossingPolygon,
    PersonDistance,
    Scene,
)

W = H = 100


def scene(frame: int, people: dict[str, tuple[float, float]], fps: float = 10.0) -> Scene:
    """People as (x, y) centres of 10×20 boxes; focus `center` makes the tested point exactly that centre."""
    ids = list(people)
    xyxy = np.array([[x - 5, y - 10, x + 5, y + 10] for x, y in people.values()], dtype=float).reshape(-1, 4)
    detections = sv.Detections(xyxy=xyxy, confidence=np.full(len(ids), 0.9))
    detections.data["tracking_id"] = np.array(ids, dtype=object)
    return Scene(detections, FrameInfo("cam", frame, W, H, frame / fps))


def zone(events: list[dict[str, object]]) -> ZoneSpec:
    return ZoneSpec.model_validate(
        {"name": "box", "polygon": [[0.4, 0.2], [0.8, 0.2], [0.8, 0.8], [0.4, 0.8]], "events": events}
    )


def test_dwell_time_is_reported_on_exit_in_milliseconds_of_media_time() -> None:
    spec = zone([{"type": "zonedwelltime", "config": {"focus": "center"}}])
    dwell = PersonCrossingPolygon(spec.name, spec.polygon, spec.events[0])  # type: ignore[arg-type]
    path = [20, 30, 50, 60, 70, 90]  # x per frame at 10 fps: enters between frames 1 and 2, leaves after 4
    events = [e for f, x in enumerate(path) for e in dwell.update(scene(f, {"p": (x, 50)}))]
    (event,) = events
    assert event.type == "personZoneDwellTimeEvent"
    assert event.properties["status"] == "Exit" and event.properties["side"] == "2"  # the right-hand edge
    assert event.properties["dwellTime"] == pytest.approx(300.0)  # inside at frames 2, 3, 4 → left at 5
    assert event.properties["dwellFrames"] == 3


def test_vanishing_inside_a_zone_is_an_exit_without_a_side() -> None:
    spec = zone([{"type": "zonecrossing", "config": {"focus": "center"}}])
    crossing = PersonCrossingPolygon(spec.name, spec.polygon, spec.events[0])  # type: ignore[arg-type]
    first = crossing.update(scene(0, {"p": (60, 50)}))
    assert [(e.properties["status"], e.properties["side"]) for e in first] == [("Enter", "")]
    gone = crossing.forget(["p"], FrameInfo("cam", 40, W, H, 4.0))
    assert [(e.properties["status"], e.properties["side"]) for e in gone] == [("Exit", "")]


def test_threshold_dead_band_ignores_jitter_on_the_line() -> None:
    spec = LineSpec.model_validate(
        {
            "name": "l",
            "line": {"start": {"x": 0.5, "y": 0}, "end": {"x": 0.5, "y": 1}},
            "events": [{"type": "linecrossing", "config": {"focus": "center", "threshold": 0.05}}],
        }
    )
    jittery, plain = (
        PersonCrossingLine(spec),
        PersonCrossingLine(
            spec.model_copy(
                update={
                    "events": [
                        spec.events[0].model_copy(
                            update={"config": spec.events[0].config.model_copy(update={"threshold": 0.0})}
                        )
                    ]
                }
            )
        ),
    )
    xs = [40, 48, 52, 48, 53, 47, 52, 60]  # wobbles within ±3 px of the line, then really crosses
    counts = []
    for line in (jittery, plain):
        counts.append(sum(len(line.update(scene(f, {"p": (x, 50)}))) for f, x in enumerate(xs)))
    assert counts == [1, 5]  # without the dead band every wobble across the line is a crossing


def test_count_on_change_and_on_interval_with_output_frequency() -> None:
    on_change = zone([{"type": "count", "config": {"focus": "center"}}])
    every = zone(
        [
            {
                "type": "count",
                "config": {"focus": "center", "trigger": "interval", "interval_seconds": 0.5, "output_frequency": 2},
            }
        ]
    )
    change = PersonCount(on_change.name, on_change.polygon, on_change.events[0])  # type: ignore[arg-type]
    interval = PersonCount(every.name, every.polygon, every.events[0])  # type: ignore[arg-type]
    crowd = [{"a": (50, 50)}, {"a": (50, 50)}, {"a": (50, 50), "b": (60, 50)}, {"b": (60, 50)}] + [{}] * 16
    sent_change, sent_interval = [], []
    for f, people in enumerate(crowd):
        sent_change += [e.properties["personCount"] for e in change.update(scene(f, people))]
        sent_interval += [e.properties["personCount"] for e in interval.update(scene(f, people))]
    assert sent_change == [1, 2, 1, 0]  # start, then every change
    # due every 0.5 s (frames 0, 5, 10, 15 at 10 fps); output_frequency 2 sends every other one
    assert sent_interval == [1, 0]


def test_distance_is_measured_on_the_ground_plane_from_the_homography() -> None:
    from veil.edge.config import CameraSpec

    camera = CameraSpec.model_validate(
        {
            "id": "c",
            "source": {"type": "folder", "path": "."},
            "zones": [
                {
                    "name": "floor",
                    "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]],
                    "events": [
                        {
                            "type": "persondistance",
                            "config": {
                                "focus": "center",
                                "minimum_distance_threshold": 6,
                                "maximum_distance_threshold": 35,
                            },
                        }
                    ],
                }
            ],
            # the image is a 100 ft × 50 ft floor seen from above, stretched to a square frame
            "homography": {
                "image_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                "ground_points": [[0, 0], [100, 0], [100, 50], [0, 50]],
            },
        }
    )
    spec = camera.zones[0]
    distance = PersonDistance(spec.name, spec.polygon, spec.events[0], GroundPlane(camera.homography))  # type: ignore[arg-type]
    # a and b are 5 px apart horizontally (5 ft), c is 40 px below a (40 % of 50 ft = 20 ft) and 50 px right
    events = distance.update(scene(0, {"a": (20, 30), "b": (25, 30), "c": (70, 70)}))
    by_name = {e.properties["eventName"]: e for e in events}
    assert set(by_name["TooClose"].detection_ids) == {"a", "b"}
    assert set(by_name["TooFar"].detection_ids) == {"a", "b", "c"}  # c is > 35 ft from both
    expected = np.mean([5.0, np.hypot(50, 20), np.hypot(45, 20)])
    assert by_name["TooClose"].properties["averageDistance"] == pytest.approx(expected, rel=1e-6)
    assert distance.update(scene(1, {"a": (20, 30), "b": (25, 30), "c": (70, 70)})) == []  # no change, no event


def test_two_cameras_run_together_and_metrics_are_served(tmp_path: Path) -> None:
    pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")
    from tests.edge.conftest import free_port

    from veil.edge.pipeline import EdgePipeline

    frames = sorted((dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1").glob("*.jpg"))
    for camera in ("a", "b"):
        (tmp_path / camera).mkdir()
        for path in frames[:3]:
            small = cv2.resize(cv2.imread(str(path)), (320, 240))
            cv2.imwrite(str(tmp_path / camera / path.name), small)
    port = free_port()
    config = parse_config(
        {
            "cameras": [
                {
                    "id": c,
                    "source": {"type": "folder", "path": str(tmp_path / c)},
                    "zones": [
                        {"name": "all", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]], "events": [{"type": "count"}]}
                    ],
                }
                for c in ("a", "b")
            ],
            "detector": {"kind": "hog", "confidence": 0.3},
            "sinks": [{"type": "file", "path": str(tmp_path / "events.jsonl")}],
            "metrics": {"port": port},
        }
    )
    pipeline = EdgePipeline(config)
    pipeline.run()
    scrape = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for camera in ("a", "b"):
        assert f'veil_edge_frames_total{{camera="{camera}"}} 3.0' in scrape
        assert f'veil_edge_events_total{{camera="{camera}",type="personCountEvent"}}' in scrape
    assert "veil_edge_frame_latency_seconds_bucket" in scrape
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert {json.loads(line)["sourceInfo"]["id"] for line in lines} == {"a", "b"}


def test_edge_imports_no_torch_fastapi_or_store() -> None:
    import subprocess
    import sys

    code = (
        "import sys, veil.edge.pipeline, veil.edge.recorder, veil.edge.preview, veil.edge.detect\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fastapi') or m.startswith('veil.store')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_frame_skip_processes_every_nth_frame_and_still_counts_crossings() -> None:
    pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")
    from veil.edge.metrics import EdgeMetrics
    from veil.edge.pipeline import CameraRunner
    from veil.edge.sources import Frame

    config = parse_config(
        {
            "cameras": [
                {
                    "id": "c",
                    "source": {"type": "folder", "path": "."},
                    "lines": [
                        {
                            "name": "l",
                            "line": {"start": {"x": 0.5, "y": 0}, "end": {"x": 0.5, "y": 1}},
                            "events": [{"type": "linecrossing", "config": {"focus": "center"}}],
                        }
                    ],
                }
            ],
            "detector": {"frame_skip": 2},
            "sinks": [],
        }
    )
    metrics = EdgeMetrics()
    runner = CameraRunner(config.cameras[0], config, None, [], metrics, fps=30.0)
    blank = np.zeros((H, W, 3), np.uint8)
    statuses = []
    for i in range(30):  # one person walking left to right, 1 px per frame (3 px between processed frames)
        box = np.array([[35 + i, 40, 45 + i, 60]], dtype=float)
        messages = runner.process(Frame(blank, i, i / 30), sv.Detections(xyxy=box, confidence=np.array([0.9])))
        statuses += [m.event.properties["status"] for m in messages]
    assert metrics.value("veil_edge_frames_total", camera="c") == 10  # frames 0, 3, 6, ...
    assert statuses == ["CrossLeft"]  # facing down the line, left to right in the image is right to left
