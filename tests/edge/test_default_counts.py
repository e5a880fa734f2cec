"""A new user's first run: `veil edge run` with a config that names no detector (so the shipped YOLOX-Nano), on
real street clips, counts the people who crossed a line, entered a zone and stand in it — compared with the counts
computed from MOT17's ground-truth tracks, not with what a detector said."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from tests.edge.conftest import PannedClip, panned_clip, write_video
from tests.edge.test_ground_truth_counts import crosses, inside_polygon, side_of

pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")

VEIL = [str(Path(sys.executable).parent / "veil")]
LINE = ((0.5, 0.0), (0.5, 1.0))  # normalized start, end: a vertical line across the street
# People drift left: they enter this zone across its right edge (edge 2) inside the picture and leave it across
# its left edge (edge 4), so entries are seen, not people appearing at the border of the picture.
ZONE = [(0.3, 0.3), (0.7, 0.3), (0.7, 1.0), (0.3, 1.0)]
# MOT17 visibility from which a person counts as seen by the camera: a quarter (a person half hidden behind
# another still crossed the line; a counter should count them). The benchmark also reports 0.5.
VISIBLE = 0.25
# The shipped detector's people-count errors measured by `make bench BENCH=edge` (d) over the 7 clips, and the
# allowance for the frames going through H.264 here (the benchmark reads the JPEG frames). The allowance is
# machine-dependent: on 2026-11-26 an AMD EPYC machine (AVX2, no VNNI; av 18.1.0, onnxruntime 1.32) gave 35 %
# crossing error on the JPEG frames (as the benchmark) and 41 % on the H.264 clips, one crossing of 78 more
# than the 5 points measured on the earlier machine, so 7 points (about 5 crossings of 78); HOG is at 67-74 %.
BENCHMARK_CROSSING_ERROR = 0.35
BENCHMARK_ENTER_ERROR = 0.53
BENCHMARK_ZONE_ERROR = 0.42
COMPRESSION = 0.07
# (sequence, window width, pixels per frame): the benchmark's panned clips
PANS = [(f"MOT17-{n}-FRCNN", 960, 20) for n in ("02", "04", "09", "10", "11", "13")] + [("MOT17-05-FRCNN", 480, 4)]


def footprint(row: np.ndarray) -> np.ndarray:
    """Centre of the bottom 10 % of a [id, x, y, w, h, visibility] box (Veil's documented footprint)."""
    return np.array([row[1] + row[3] / 2, row[2] + 0.95 * row[4]])


def truth_counts(clip: PannedClip, visible: float = VISIBLE) -> tuple[Counter[str], list[int]]:
    """Line crossings of visible people between consecutive frames (`CrossLeft`/`CrossRight`, and `Enter`/`Exit`
    across the zone's edges), and per frame how many visible people stand in the zone — from the ground-truth
    tracks alone."""
    height, width = clip.frames[0].shape[:2]
    scale = np.array([width, height])
    a, b = np.array(LINE[0]) * scale, np.array(LINE[1]) * scale
    zone = np.array(ZONE) * scale
    crossings: Counter[str] = Counter()
    for before, after in itertools.pairwise(clip.truth):
        seen = {int(r[0]): r for r in before if r[5] >= visible}
        for row in after:
            if row[5] >= visible and int(row[0]) in seen:
                p, q = footprint(seen[int(row[0])]), footprint(row)
                if crosses(p, q, a, b):
                    crossings["CrossRight" if side_of(q, a, b) > 0 else "CrossLeft"] += 1
                was, now = inside_polygon(p, zone), inside_polygon(q, zone)
                if was != now:
                    crossings["Enter" if now else "Exit"] += 1
    in_zone = [sum(inside_polygon(footprint(r), zone) for r in rows if r[5] >= visible) for rows in clip.truth]
    return crossings, in_zone


def run_default_config(clips: dict[str, PannedClip], work: Path) -> list[dict[str, object]]:
    """One `veil edge run` of a config naming no detector: a camera per clip (each an H.264 file), a line and a
    zone each, events to a file."""
    line = {"start": dict(zip("xy", LINE[0], strict=True)), "end": dict(zip("xy", LINE[1], strict=True))}
    cameras = [
        {
            "id": name,
            "source": {"type": "file", "path": str(write_video(clip.frames, work / f"{name}.mp4", fps=clip.fps))},
            "lines": [{"name": "street", "line": line, "events": [{"type": "linecrossing"}]}],
            "zones": [{"name": "band", "polygon": ZONE, "events": [{"type": "count"}, {"type": "zonecrossing"}]}],
        }
        for name, clip in clips.items()
    ]
    config = {"cameras": cameras, "sinks": [{"type": "file", "path": str(work / "events.jsonl")}]}
    (work / "edge.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [*VEIL, "edge", "run", str(work / "edge.yaml")], cwd=work, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in (work / "events.jsonl").read_text().splitlines()]


def veil_counts(messages: list[dict[str, object]], camera: str, frames: int) -> tuple[Counter[str], list[int]]:
    """Line crossings and zone entries/exits across an edge (side "" = appeared or vanished inside: not a
    crossing), and the zone's people count per frame (personCountEvent is sent on change: it holds until the next)."""
    crossings: Counter[str] = Counter()
    changes: dict[int, int] = {}
    for message in messages:
        event, source = message["events"][0], message["sourceInfo"]  # type: ignore[index]
        if source["id"] != camera:  # type: ignore[index]
            continue
        if event["type"] == "personLineEvent" or (  # type: ignore[index]
            event["type"] == "personZoneEnterExitEvent" and event["properties"]["side"] != ""  # type: ignore[index]
        ):
            crossings[event["properties"]["status"]] += 1  # type: ignore[index]
        elif event["type"] == "personCountEvent":  # type: ignore[index]
            changes[int(source["frameId"])] = event["properties"]["personCount"]  # type: ignore[index]
    counts, current = [], 0
    for frame in range(frames):
        current = changes.get(frame, current)
        counts.append(current)
    return crossings, counts


def test_default_config_counts_the_people_who_crossed_and_who_stand_in_the_zone(tmp_path: Path) -> None:
    # The 7 MOT17 clips, each through a window panning right 20 px a frame (4 px on the 640×480 one) for 40 frames
    # at 10 frames/s: people drift left across the line and through the zone — the benchmark's set-up, (d).
    clips = {
        sequence.split("-FRCNN")[0]: panned_clip(sequence, window=window, step=step, count=40)
        for sequence, window, step in PANS
    }
    messages = run_default_config(clips, tmp_path)
    error = Counter[str]()
    truth_total = Counter[str]()
    zone_error, zone_truth = [], []
    for camera, clip in clips.items():
        truth, in_zone = truth_counts(clip)
        seen, occupancy = veil_counts(messages, camera, len(clip.frames))
        for status in ("CrossRight", "CrossLeft", "Enter"):
            error[status] += abs(seen[status] - truth[status])
            truth_total[status] += truth[status]
        zone_error += [abs(a - b) for a, b in zip(occupancy, in_zone, strict=True)]
        zone_truth += in_zone
        print(camera, "veil", dict(seen), "truth", dict(truth))
    assert truth_total["CrossRight"] >= 50 and truth_total["Enter"] >= 30, truth_total  # people did cross
    crossing = (error["CrossRight"] + error["CrossLeft"]) / (truth_total["CrossRight"] + truth_total["CrossLeft"])
    entering = error["Enter"] / truth_total["Enter"]
    occupancy_error = float(np.mean(zone_error) / np.mean(zone_truth))
    print(f"errors: crossings {crossing:.0%}, entries {entering:.0%}, people in zone {occupancy_error:.0%}")
    # Within the benchmark's people-count errors (docs/BENCHMARKS.md, (d), measured on the JPEG frames) plus
    # COMPRESSION for the H.264 round trip; HOG's errors are 67-74 %.
    assert crossing <= BENCHMARK_CROSSING_ERROR + COMPRESSION
    assert entering <= BENCHMARK_ENTER_ERROR + COMPRESSION
    assert occupancy_error <= BENCHMARK_ZONE_ERROR + COMPRESSION
