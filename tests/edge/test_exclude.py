"""Privacy zones: a person standing inside an `exclude` polygon is never detected, tracked or counted, and the
pictures the preview and the recorder would see are blanked there."""

from __future__ import annotations

import numpy as np
import pytest
import supervision as sv
from tests.conftest import dataset_path

from veil.edge.config import parse_config
from veil.edge.events import EventMessage
from veil.edge.exclude import BLANK, ExclusionMask
from veil.edge.pipeline import EdgePipeline
from veil.edge.sources import Frame

pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")

LEFT = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]  # the left half of the street


def run(exclude: list[list[tuple[float, float]]]) -> tuple[list[sv.Detections], list[EventMessage], list[np.ndarray]]:
    frames = dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1"
    config = parse_config(
        {
            "cameras": [
                {
                    "id": "street",
                    "source": {"type": "folder", "path": str(frames), "fps": 14},
                    "zones": [
                        {"name": "left", "polygon": LEFT, "events": [{"type": "count"}, {"type": "zonecrossing"}]}
                    ],
                    "exclude": exclude,
                }
            ],
            "sinks": [],
        }
    )
    pipeline = EdgePipeline(config)
    pipeline.open()
    people, messages, pictures = [], [], []

    def observe(frame: Frame, tracked: sv.Detections, sent: list[EventMessage]) -> None:
        people.append(tracked)
        messages.extend(sent)
        pictures.append(frame.rgb)

    pipeline.runners[0].observers.append(observe)
    pipeline.run()
    return people, messages, pictures


def in_left_half(people: sv.Detections, width: int) -> int:
    centres = (people.xyxy[:, 0] + people.xyxy[:, 2]) / 2
    return int((centres < 0.45 * width).sum())


def test_nobody_inside_an_excluded_polygon_is_detected_or_counted() -> None:
    people, messages, _ = run(exclude=[])
    counts = [m.event.properties["personCount"] for m in messages if m.event.type == "personCountEvent"]
    assert sum(in_left_half(p, 640) for p in people) >= 6 and max(counts) >= 2  # the street's left half is busy

    people, messages, pictures = run(exclude=[LEFT])
    assert sum(in_left_half(p, 640) for p in people) == 0
    assert [m.event.properties["personCount"] for m in messages if m.event.type == "personCountEvent"] == [0]
    assert not [m for m in messages if m.event.type == "personZoneEnterExitEvent"]
    assert all((picture[:, :320] == BLANK).all() for picture in pictures)  # what a preview or recorder would see


def test_the_mask_blanks_exactly_the_polygon() -> None:
    mask = ExclusionMask([[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]])
    blanked = mask.apply(np.full((40, 80, 3), 7, np.uint8))
    inside = blanked[10:30, 20:60]
    assert (inside == BLANK).all() and np.count_nonzero(blanked != 7) == inside.size + 3 * (20 + 40 + 1)
