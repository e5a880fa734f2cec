"""Face anonymization benchmark: Veil against ORB-HD deface, same images, same machine, same run.

- faces-det (WIDER FACE val subset): recall and precision at IoU 0.5 at each tool's default threshold,
  recall by face size, images/s (decode + detect + obscure, as each tool runs a folder).
- people-video (MOT17 frames): frames/s for both (Veil with its temporal smoothing on).

deface runs in its own venv, `bench/.venv-deface`, created here with `pip install deface onnx onnxruntime`
(deface's README asks for onnxruntime for its fast backend; its GUI OpenCV stays out of Veil's environment).

    python -m bench anonymize            # or: make bench BENCH=anonymize
    VEIL_BENCH_LIMIT=40 python -m bench anonymize   # a quick subset
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import supervision as sv
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
FACES = DATASETS / "faces-det"
PEOPLE = DATASETS / "people-video" / "train"
DEFACE_VENV = REPO / "bench" / ".venv-deface"
# Face size = sqrt(box area) in pixels.
SIZES = (("tiny <10px", 0, 10), ("small 10-32px", 10, 32), ("medium 32-96px", 32, 96), ("large ≥96px", 96, 1e9))


@dataclass(frozen=True)
class GroundTruth:
    path: Path
    boxes: np.ndarray  # xyxy pixels
    invalid: np.ndarray  # bool: WIDER's "invalid" flag (matched detections count neither way)


def load_wider(root: Path = FACES) -> list[GroundTruth]:
    """Parse `wider_face_val_bbx_gt.txt`: name, count, then `x1 y1 w h blur expr illum invalid occl pose`."""
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    items, i = [], 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(int, line.split())) for line in lines[i + 2 : i + 2 + count]]
        i += 2 + max(count, 1)  # an image with 0 faces still has one "0 0 0 0 ..." line
        values = np.array([r for r in rows if r[2] > 0 and r[3] > 0], dtype=np.float32).reshape(-1, 10)
        boxes = np.concatenate([values[:, :2], values[:, :2] + values[:, 2:4]], axis=1)
        items.append(GroundTruth(root / "WIDER_val" / "images" / name, boxes, values[:, 7] == 1))
    return items


@dataclass
class Tally:
    found: dict[str, int]
    total: dict[str, int]
    true_pos: int = 0
    false_pos: int = 0

    @classmethod
    def empty(cls) -> Tally:
        return cls({name: 0 for name, *_ in SIZES}, {name: 0 for name, *_ in SIZES})

    def add(self, truth: GroundTruth, boxes: np.ndarray, scores: np.ndarray) -> None:
        matched = match(truth.boxes, boxes, scores)
        sides = np.sqrt((truth.boxes[:, 2] - truth.boxes[:, 0]) * (truth.boxes[:, 3] - truth.boxes[:, 1]))
        for name, low, high in SIZES:
            in_bucket = (sides >= low) & (sides < high) & ~truth.invalid
            self.total[name] += int(in_bucket.sum())
            self.found[name] += int((in_bucket & (matched >= 0)).sum())
        used = set(matched[matched >= 0].tolist())
        neutral = set(matched[truth.invalid & (matched >= 0)].tolist())
        self.true_pos += len(used - neutral)
        self.false_pos += len(boxes) - len(used)

    def recall(self, name: str | None = None, min_side: float = 10) -> float:
        names = [n for n, low, _ in SIZES if low >= min_side] if name is None else [name]
        total = sum(self.total[n] for n in names)
        return sum(self.found[n] for n in names) / total if total else 0.0

    @property
    def precision(self) -> float:
        return self.true_pos / max(self.true_pos + self.false_pos, 1)


def match(truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """Greedy by score: index of the detection matched to each ground-truth box, or -1."""
    matched = np.full(len(truth), -1)
    if len(truth) == 0 or len(boxes) == 0:
        return matched
    overlaps = sv.box_iou_batch(truth, boxes)
    for det in np.argsort(-scores):
        candidates = np.where((matched < 0) & (overlaps[:, det] >= iou))[0]
        if len(candidates):
            matched[candidates[np.argmax(overlaps[candidates, det])]] = det
    return matched


Runner = Callable[[list[Path]], tuple[list[tuple[np.ndarray, np.ndarray]], float]]

# --- Veil ---------------------------------------------------------------------------------------------


def veil_runner(half_pass: bool) -> Runner:
    """Veil as `veil anonymize` runs a folder (decode + detect + obscure, one image per core)."""

    def run(paths: list[Path]) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        from veil.privacy.batch import anonymize_arrays
        from veil.privacy.settings import AnonymizeSettings

        settings = AnonymizeSettings(half_pass=half_pass)
        anonymize_arrays([np.zeros((64, 64, 3), np.uint8)], settings)  # load the model outside the timing
        start = time.perf_counter()
        results = anonymize_arrays((_read(p) for p in paths), settings)
        seconds = time.perf_counter() - start
        return [(r.detections.xyxy, _scores(r.detections)) for r in results], seconds

    return run


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _scores(found: sv.Detections) -> np.ndarray:
    return found.confidence if found.confidence is not None else np.ones(len(found), dtype=np.float32)


def run_veil_video(frames: list[Path], half_pass: bool) -> float:
    """Frames in order with temporal smoothing, as `veil anonymize clip.mp4` runs them (minus the codec)."""
    from veil.privacy.batch import anonymize_arrays
    from veil.privacy.settings import AnonymizeSettings

    start = time.perf_counter()
    list(anonymize_arrays((_read(p) for p in frames), AnonymizeSettings(half_pass=half_pass), smooth=True))
    return time.perf_counter() - start


# --- deface (its own venv) ----------------------------------------------------------------------------

_DEFACE_RUNNER = r"""
import json, sys, time
import imageio.v2 as iio
from deface.centerface import CenterFace
from deface.deface import anonymize_frame
paths, out = json.loads(sys.argv[1]), sys.argv[2]
centerface = CenterFace(in_shape=None, backend="auto")  # deface's defaults: full resolution, onnxruntime
centerface(iio.imread(paths[0]), threshold=0.2)  # warm-up outside the timing, as for Veil
results, start = [], time.perf_counter()
for path in paths:
    frame = iio.imread(path)
    dets, _ = centerface(frame, threshold=0.2)
    anonymize_frame(dets, frame, mask_scale=1.3, replacewith="blur", ellipse=True, draw_scores=False,
                    replaceimg=None, mosaicsize=20)
    results.append(dets.tolist())
json.dump({"seconds": time.perf_counter() - start, "dets": results}, open(out, "w"))
"""


def ensure_deface() -> Path:
    python = DEFACE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DEFACE_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import deface, onnxruntime"], capture_output=True)
    if check.returncode != 0:
        install = [str(python), "-m", "pip", "install", "-q", "deface", "onnx", "onnxruntime"]
        subprocess.run(install, check=True)
    return python


def run_deface(paths: list[Path]) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    python = ensure_deface()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        subprocess.run(
            [str(python), "-c", _DEFACE_RUNNER, json.dumps([str(p) for p in paths]), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        data = json.loads(out.read_text())
    dets = [np.asarray(d, dtype=np.float32).reshape(-1, 5) for d in data["dets"]]
    return [(d[:, :4], d[:, 4]) for d in dets], float(data["seconds"])


# --- report -------------------------------------------------------------------------------------------


CHUNK = 30  # the machine is shared: alternate the tools every CHUNK images so both see the same load


def evaluate(truths: list[GroundTruth], runners: dict[str, Runner]) -> dict[str, tuple[Tally, float]]:
    """Accuracy tallies and images/s per tool, measured in alternating chunks."""
    tallies = {name: Tally.empty() for name in runners}
    seconds = dict.fromkeys(runners, 0.0)
    for start in range(0, len(truths), CHUNK):
        chunk = truths[start : start + CHUNK]
        order = list(runners) if (start // CHUNK) % 2 == 0 else list(reversed(runners))
        for name in order:
            detections, spent = runners[name]([t.path for t in chunk])
            seconds[name] += spent
            for truth, (boxes, scores) in zip(chunk, detections, strict=True):
                tallies[name].add(truth, boxes, scores)
    return {name: (tallies[name], len(truths) / seconds[name]) for name in runners}


def people_frames(limit: int | None) -> list[Path]:
    frames = sorted(PEOPLE.glob("*/img1/*.jpg"))
    return frames[:limit] if limit else frames


TOOLS = {"deface": "deface 1.5.0 (t=0.2)", "veil": "Veil default", "veil-full": "Veil --no-half-pass"}


def main() -> None:
    from veil.privacy.settings import DEFAULT_THRESHOLD

    console = Console(width=150)
    if not FACES.is_dir():
        console.print(f"faces-det not found at {FACES}; nothing to measure")
        return
    limit = int(os.environ.get("VEIL_BENCH_LIMIT", "0")) or None
    truths = load_wider()[:limit]
    runners = {"deface": run_deface, "veil": veil_runner(True), "veil-full": veil_runner(False)}
    measured = evaluate(truths, runners)
    table = Table(
        title=f"faces-det: {len(truths)} WIDER FACE val images, IoU 0.5, default thresholds "
        f"(deface 0.2, Veil {DEFAULT_THRESHOLD})"
    )
    table.add_column("metric")
    for name in TOOLS.values():
        table.add_column(name, justify="right")
    table.add_column("Veil default / deface", justify="right")
    deface, veil = measured["deface"][0], measured["veil"][0]
    for name, *_ in SIZES:
        values = [measured[tool][0].recall(name) for tool in TOOLS]
        _row(table, f"recall {name} (n={veil.total[name]})", values, _ratio(values[1], values[0]))
    values = [measured[tool][0].recall() for tool in TOOLS]
    _row(table, "recall, faces ≥10px", values, _ratio(values[1], values[0]))
    values = [measured[tool][0].precision for tool in TOOLS]
    _row(table, "precision", values, _ratio(values[1], values[0]))
    table.add_row(
        "false positives",
        *(str(measured[tool][0].false_pos) for tool in TOOLS),
        f"{veil.false_pos - deface.false_pos:+d}",
    )
    values = [measured[tool][1] for tool in TOOLS]
    _row(table, "images/s", values, _ratio(values[1], values[0]))
    if PEOPLE.is_dir():
        frames = people_frames(limit)
        deface_seconds = run_deface(frames)[1]
        veil_seconds = run_veil_video(frames, True)
        full_seconds = run_veil_video(frames, False)
        deface_seconds = (deface_seconds + run_deface(frames)[1]) / 2  # before and after: same load for all
        values = [len(frames) / seconds for seconds in (deface_seconds, veil_seconds, full_seconds)]
        _row(table, f"people-video frames/s ({len(frames)} frames)", values, _ratio(values[1], values[0]))
    console.print(table)
    console.print("command: python -m bench anonymize   (make bench BENCH=anonymize)")


def _row(table: Table, label: str, values: list[float], ratio: str) -> None:
    table.add_row(label, *(f"{v:.3f}" if v < 10 else f"{v:.1f}" for v in values), ratio)


def _ratio(veil: float, deface: float) -> str:
    return f"{veil / deface:.2f}×" if deface else "—"


if __name__ == "__main__":
    main()
