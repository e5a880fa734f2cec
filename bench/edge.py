"""Edge benchmark: `python -m bench edge` (`make bench BENCH=edge`).

(b) End to end on the MOT17 clips of ../shared/datasets/people-video (frames + ground truth): JPEG decode →
    detector → ByteTrack → operators, every frame at its native size (the detector shrinks it to `detect_width`).
    Per-frame recall / precision at IoU 0.5 on visible pedestrians (visibility ≥ 0.5; a detection matching any
    labelled person is not an error), MOTA and IDF1 (py-motmetrics), HOTA (the TrackEval-compatible
    `trackers.eval`), frames/s. Sequences are split: the shipped YOLOX-Nano's settings (`detect_width`,
    `confidence`) are chosen on TUNE and reported on REPORT, then on all 7. Detectors: OpenCV HOG (fallback), the
    shipped YOLOX-Nano at the defaults, `artifacts/person.onnx` when present, and the public FRCNN boxes shipped
    with MOT17 (peer; no detector time).
(b') Frames/s end to end (JPEG decode included) at 640×480 (MOT17-05) and 1080p (MOT17-04), same run, with the
    levers a slow box has (`detect_width`, `frame_skip`).
(d) People-count error: each clip seen through a window panning right (people drift left, frames played forward
    then backward, as tests/edge/test_default_counts.py does on one clip): line crossings and people-in-zone per
    frame from `CameraRunner` vs the same counts computed from the ground-truth tracks of every person (MOT17
    classes pedestrian, person on vehicle, static person) at least a quarter visible (also: half visible). Errors
    are per clip and direction, |counted − truth| summed over the clips / truth summed (no cancelling out).
(c) Pipeline overhead per frame with 30 people (tracking + 7 operators + a file sink; detector excluded),
    against Roboflow's ByteTrackTracker alone as the peer.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import motmetrics as mm
import numpy as np
import supervision as sv
from rich.console import Console
from rich.table import Table
from trackers.eval import compute_hota_metrics

from veil.edge.config import DetectorSpec, EdgeConfig, parse_config
from veil.edge.detect import build_detector
from veil.edge.metrics import EdgeMetrics
from veil.edge.pipeline import CameraRunner
from veil.edge.sinks import build_sink
from veil.edge.sources import Frame

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "datasets" / "people-video" / "train"
PERSON_MODEL = REPO / "artifacts" / "person.onnx"
TUNE = ("MOT17-02-FRCNN", "MOT17-04-FRCNN", "MOT17-09-FRCNN")  # choose settings here ...
REPORT = ("MOT17-05-FRCNN", "MOT17-10-FRCNN", "MOT17-11-FRCNN", "MOT17-13-FRCNN")  # ... and report them here
VISIBLE = 0.5
console = Console()

Detect = Callable[[np.ndarray, str, int], sv.Detections]  # rgb (native size), sequence, frame number


@dataclass
class Sequence:
    name: str
    fps: float
    frames: list[Path]
    gt: np.ndarray  # every labelled box: frame, id, x, y, w, h, flag, class, visibility
    det: np.ndarray  # frame, -1, x, y, w, h, score

    @property
    def pedestrians(self) -> np.ndarray:
        return self.gt[(self.gt[:, 6] == 1) & (self.gt[:, 7] == 1)]


def load_sequences() -> list[Sequence]:
    sequences = []
    for folder in sorted(VIDEO.iterdir()):
        info = dict(line.split("=", 1) for line in (folder / "seqinfo.ini").read_text().splitlines() if "=" in line)
        gt = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",", ndmin=2)
        det = np.loadtxt(folder / "det" / "det.txt", delimiter=",", ndmin=2)
        frames = sorted((folder / "img1").glob("*.jpg"))
        sequences.append(Sequence(folder.name, float(info.get("frameRate", 30)), frames, gt, det))
    return sequences


def track_config(tracker: dict[str, float] | None = None) -> EdgeConfig:
    return parse_config(
        {
            "tracker": tracker or {},
            "cameras": [
                {
                    "id": "bench",
                    "source": {"type": "folder", "path": "."},
                    "lines": [
                        {
                            "name": "mid",
                            "line": {"start": {"x": 0.5, "y": 0}, "end": {"x": 0.5, "y": 1}},
                            "events": [{"type": "linecrossing"}],
                        }
                    ],
                    "zones": [
                        {
                            "name": "lower",
                            "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
                            "events": [{"type": "zonecrossing"}, {"type": "count"}],
                        }
                    ],
                }
            ],
            "sinks": [],
        }
    )


@dataclass
class Outcome:
    tracks: list[tuple[np.ndarray, np.ndarray]]  # per frame: tracking ids, xywh boxes
    detections: list[sv.Detections]
    seconds: float


def run_sequence(seq: Sequence, detect: Detect, tracker: dict[str, float] | None = None) -> Outcome:
    """JPEG decode + detection + tracking + operators per frame, timed together."""
    config = track_config(tracker)
    runner = CameraRunner(config.cameras[0], config, None, [], EdgeMetrics(), seq.fps)
    tracks, found, seconds = [], [], 0.0
    for number, path in enumerate(seq.frames, start=1):
        started = time.perf_counter()
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        detections = detect(rgb, seq.name, number)
        runner.process(Frame(rgb, number - 1, (number - 1) / seq.fps), detections)
        seconds += time.perf_counter() - started
        people = runner.last_people
        ids = np.array([hash(t) % (1 << 31) for t in people.data.get("tracking_id", [])], dtype=np.int64)
        xyxy = people.xyxy
        tracks.append((ids, np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])))
        found.append(detections)
    return Outcome(tracks, found, seconds)


def frame_scores(detections: sv.Detections, gt: np.ndarray) -> tuple[float, float]:
    """(recall on visible pedestrians, precision) at IoU 0.5, greedy one-to-one (as tests/edge/test_detect.py)."""
    boxes = np.column_stack([gt[:, 2:4], gt[:, 2:4] + gt[:, 4:6]])
    wanted = (gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] >= VISIBLE)
    iou = (
        sv.box_iou_batch(boxes, detections.xyxy)
        if len(detections) and len(gt)
        else np.zeros((len(gt), len(detections)))
    )
    used: set[int] = set()
    for row in np.flatnonzero(wanted):
        for column in np.argsort(-iou[row]):
            if iou[row, column] >= 0.5 and int(column) not in used:
                used.add(int(column))
                break
    wrong = sum(1 for c in range(len(detections)) if c not in used and not (iou[:, c] >= 0.5).any())
    recall = len(used) / wanted.sum() if wanted.any() else 1.0
    precision = (len(detections) - wrong) / len(detections) if len(detections) else 1.0
    return recall, precision


def evaluate(
    name: str, detect: Detect, sequences: list[Sequence], timed: bool = True, tracker: dict[str, float] | None = None
) -> dict[str, str]:
    accumulators, names = [], []
    gt_ids, tr_ids, sims = [], [], []
    recalls, precisions = [], []
    seconds = frames = 0.0
    for k, seq in enumerate(sequences):
        outcome = run_sequence(seq, detect, tracker)
        seconds, frames = seconds + outcome.seconds, frames + len(seq.frames)
        acc = mm.MOTAccumulator(auto_id=True)
        for number, ((ids, boxes), found) in enumerate(zip(outcome.tracks, outcome.detections, strict=True), start=1):
            recall, precision = frame_scores(found, seq.gt[seq.gt[:, 0] == number])
            recalls.append(recall)
            precisions.append(precision)
            truth = seq.pedestrians[seq.pedestrians[:, 0] == number]
            iou = _iou_xywh(truth[:, 2:6], boxes)
            # motmetrics' own iou_matrix uses np.asfarray (gone in NumPy 2): same distance, 1 − IoU, NaN < 0.5
            distances = np.where(iou >= 0.5, 1.0 - iou, np.nan)
            acc.update(truth[:, 1].astype(int), ids, distances)
            # HOTA over all sequences at once: ids offset per sequence so they never collide.
            gt_ids.append(truth[:, 1].astype(np.int64) + k * 10_000_000)
            tr_ids.append(ids + k * (1 << 32))
            sims.append(iou)
        accumulators.append(acc)
        names.append(seq.name)
    summary = mm.metrics.create().compute_many(
        accumulators, metrics=["mota", "idf1"], names=names, generate_overall=True
    )
    hota = compute_hota_metrics(_dense(gt_ids), _dense(tr_ids), sims)["HOTA"]
    overall = summary.loc["OVERALL"]
    return {
        "detector": name,
        "recall": f"{np.mean(recalls):.3f}",
        "precision": f"{np.mean(precisions):.3f}",
        "MOTA": f"{100 * overall['mota']:.1f}",
        "IDF1": f"{100 * overall['idf1']:.1f}",
        "HOTA": f"{100 * hota:.1f}",
        "frames/s": f"{frames / seconds:.1f}" if timed else "n/a (no detector)",
        "frames": str(int(frames)),
    }


def _dense(ids: list[np.ndarray]) -> list[np.ndarray]:
    """HOTA wants small non-negative ids: map every distinct id to 0..n-1."""
    unique = {v: i for i, v in enumerate(sorted({int(x) for a in ids for x in a}))}
    return [np.array([unique[int(x)] for x in a], dtype=np.int64) for a in ids]


def _iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax = np.column_stack([a[:, :2], a[:, :2] + a[:, 2:]])
    bx = np.column_stack([b[:, :2], b[:, :2] + b[:, 2:]])
    return sv.box_iou_batch(ax, bx)


def detector_fn(spec: DetectorSpec) -> Detect:
    detector = build_detector(spec)
    return lambda rgb, seq, number: detector.detect(rgb)


def public_detections(sequences: list[Sequence]) -> Detect:
    by_seq = {s.name: s for s in sequences}

    def detect(rgb: np.ndarray, seq: str, number: int) -> sv.Detections:
        s = by_seq[seq]
        rows = s.det[s.det[:, 0] == number]
        xyxy = np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])
        return sv.Detections(xyxy=xyxy.reshape(-1, 4), confidence=np.clip(rows[:, 6], 0, 1))

    return detect


def sweep(sequences: list[Sequence]) -> list[dict[str, str]]:
    """YOLOX-Nano settings on the TUNE split (the defaults were chosen from this table): input width × detection
    threshold at the default tracker, then ByteTrack's two confidence gates at the chosen width and threshold."""
    rows = []
    for width in (640, 960, 1280):
        for confidence in (0.25, 0.3, 0.4):
            spec = DetectorSpec(detect_width=width, confidence=confidence)
            rows.append(evaluate(f"width {width}, confidence {confidence}", detector_fn(spec), sequences))
    chosen = detector_fn(DetectorSpec())
    for activation, high in ((0.5, 0.6), (0.4, 0.5), (0.3, 0.45), (0.25, 0.4)):
        gates = {"track_activation_threshold": activation, "high_conf_det_threshold": high}
        rows.append(evaluate(f"defaults, tracker gates {activation} / {high}", chosen, sequences, tracker=gates))
    return rows


def throughput(sequences: list[Sequence], frames: int = 40) -> list[dict[str, str]]:
    """Frames/s end to end (JPEG decode, detector, tracker, operators) on one camera, cycling a clip's frames."""
    by_name = {s.name: s for s in sequences}
    cameras = [("640×480", by_name["MOT17-05-FRCNN"]), ("1920×1080", by_name["MOT17-04-FRCNN"])]
    setups = [
        ("HOG (fallback)", DetectorSpec(kind="hog")),
        ("yolox-nano defaults (width 960)", DetectorSpec()),
        ("yolox-nano width 640", DetectorSpec(detect_width=640)),
        ("yolox-nano defaults + frame_skip 1", DetectorSpec(frame_skip=1)),
    ]
    rows = []
    for camera, seq in cameras:
        for label, spec in setups:
            config = track_config().model_copy(update={"detector": spec})
            runner = CameraRunner(config.cameras[0], config, build_detector(spec), [], EdgeMetrics(), seq.fps)
            paths = [seq.frames[i % len(seq.frames)] for i in range(frames)]
            runner.process(Frame(cv2.imread(str(paths[0]))[..., ::-1].copy(), 0, 0.0))  # warm-up (session)
            started, cpu = time.perf_counter(), time.process_time()
            for index, path in enumerate(paths, start=1):
                rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
                runner.process(Frame(rgb, index, index / seq.fps))
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            rows.append(
                {
                    "camera": camera,
                    "setup": label,
                    "frames/s (wall)": f"{frames / wall:.1f}",
                    "CPU s/frame (both cores)": f"{cpu / frames:.3f}",
                }
            )
            console.print(rows[-1])
    return rows


def single_thread_cpu(repeats: int = 20) -> list[dict[str, str]]:
    """JPEG decode and detection CPU time on ONE thread (onnxruntime and OpenCV limited to 1): unlike wall time,
    barely changed by other processes on a shared machine; 1000 / ms is what one core sustains."""
    from veil.edge.detect import YoloxPeopleDetector, resolve

    cv2.setNumThreads(1)
    frames = {
        "640×480": VIDEO / "MOT17-05-FRCNN" / "img1" / "000001.jpg",
        "1920×1080": VIDEO / "MOT17-04-FRCNN" / "img1" / "000001.jpg",
    }
    rows = []
    for camera, path in frames.items():
        jpeg = np.frombuffer(path.read_bytes(), np.uint8)
        for label, spec in (
            ("HOG (fallback)", DetectorSpec(kind="hog")),
            ("yolox-nano width 640", DetectorSpec(detect_width=640)),
            ("yolox-nano defaults (width 960)", DetectorSpec()),
        ):
            detector = build_detector(spec) if spec.kind == "hog" else YoloxPeopleDetector(resolve(spec), threads=1)
            detector.detect(cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))  # warm-up
            decode = detect = 0.0
            for _ in range(repeats):
                started = time.thread_time()
                rgb = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
                decoded = time.thread_time()
                detector.detect(rgb)
                decode, detect = decode + decoded - started, detect + time.thread_time() - decoded
            total = (decode + detect) / repeats
            rows.append(
                {
                    "camera": camera,
                    "detector": label,
                    "decode ms": f"{1000 * decode / repeats:.1f}",
                    "detect ms": f"{1000 * detect / repeats:.1f}",
                    "frames/s one core (1000 / total)": f"{1 / total:.1f}",
                }
            )
    cv2.setNumThreads(-1)
    return rows


# ---------------------------------------------------------------- (d) people-count error on panned clips
FRAMES_PANNED = 40  # 20 px a frame is a brisk walk across a 1080p picture at 10 frames/s
PANS = {"MOT17-05-FRCNN": (480, 4)}  # window width, pixels per frame; 1080p clips: (960, 20)


def count_error(name: str, spec: DetectorSpec | None, sequences: list[Sequence]) -> dict[str, str]:
    """Crossings and zone occupancy counted by the pipeline vs from ground-truth tracks, over every clip."""
    from collections import Counter

    from tests.edge.conftest import panned_clip
    from tests.edge.test_default_counts import LINE, ZONE, truth_counts

    camera = {
        "id": "pan",
        "source": {"type": "folder", "path": "."},
        "lines": [
            {
                "name": "line",
                "line": {"start": dict(zip("xy", LINE[0], strict=True)), "end": dict(zip("xy", LINE[1], strict=True))},
                "events": [{"type": "linecrossing"}],
            }
        ],
        "zones": [{"name": "zone", "polygon": ZONE, "events": [{"type": "count"}, {"type": "zonecrossing"}]}],
    }
    enters_truth = enters_error = 0
    crossings_truth = crossings_veil = crossings_truth_half = crossings_veil_half = 0
    zone_truth, zone_error = [], []
    detector = build_detector(spec) if spec is not None else None
    counted = 0
    for seq in sequences:
        window, step = PANS.get(seq.name, (960, 20))
        clip = panned_clip(seq.name, window=window, step=step, count=FRAMES_PANNED)
        truth, in_zone = truth_counts(clip)
        half, _ = truth_counts(clip, visible=0.5)
        config = parse_config({"cameras": [camera], "sinks": [], "detector": spec.model_dump() if spec else {}})
        runner = CameraRunner(config.cameras[0], config, detector, [], EdgeMetrics(), clip.fps)
        seen: Counter[str] = Counter()
        count = 0
        for index, rgb in enumerate(clip.frames):
            detections = None if detector is not None else _shifted_public(seq, index, step)
            for message in runner.process(Frame(rgb, index, index / clip.fps), detections):
                if message.event.type == "personLineEvent":
                    seen[str(message.event.properties["status"])] += 1
                elif message.event.type == "personZoneEnterExitEvent" and message.event.properties["side"] != "":
                    seen[str(message.event.properties["status"])] += 1  # across an edge, as in the ground truth
                elif message.event.type == "personCountEvent":
                    count = int(message.event.properties["personCount"])  # type: ignore[call-overload]
            zone_error.append(abs(count - in_zone[index]))
        zone_truth += in_zone
        crossings_truth += truth["CrossRight"] + truth["CrossLeft"]
        enters_truth += truth["Enter"]
        enters_error += abs(seen["Enter"] - truth["Enter"])
        crossings_veil += abs(seen["CrossRight"] - truth["CrossRight"]) + abs(seen["CrossLeft"] - truth["CrossLeft"])
        crossings_truth_half += half["CrossRight"] + half["CrossLeft"]
        crossings_veil_half += abs(seen["CrossRight"] - half["CrossRight"]) + abs(seen["CrossLeft"] - half["CrossLeft"])
        counted += seen["CrossRight"] + seen["CrossLeft"]
    return {
        "detector": name,
        "crossings counted": str(counted),
        "truth (≥ 0.25 visible)": str(crossings_truth),
        "crossing error": f"{crossings_veil / crossings_truth:.0%}",
        "truth (≥ 0.5 visible)": str(crossings_truth_half),
        "crossing error (≥ 0.5)": f"{crossings_veil_half / crossings_truth_half:.0%}",
        "zone entries (truth)": str(enters_truth),
        "entry error": f"{enters_error / enters_truth:.0%}",
        "people in zone per frame (truth)": f"{np.mean(zone_truth):.2f}",
        "zone count error": f"{np.mean(zone_error) / np.mean(zone_truth):.0%}",
    }


def _shifted_public(seq: Sequence, index: int, step: int) -> sv.Detections:
    """MOT17's public FRCNN boxes for the panned frame `index` (same frame order and offset as the clip)."""
    frames = len(seq.frames)
    order = list(range(frames)) + list(range(frames))[::-1]
    rows = seq.det[seq.det[:, 0] == order[index % len(order)] + 1]
    xyxy = np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]) - [index * step, 0, index * step, 0]
    return sv.Detections(xyxy=xyxy.reshape(-1, 4).astype(np.float32), confidence=np.clip(rows[:, 6], 0, 1))


# ---------------------------------------------------------------- (c) overhead with 30 people
def crowd(frames: int, people: int = 30, seed: int = 0) -> list[sv.Detections]:
    """30 walkers bouncing around a 1920×1080 scene at up to 3 px/frame (pedestrian speeds at 30 fps)."""
    rng = np.random.default_rng(seed)
    size = rng.uniform([40, 100], [70, 180], (people, 2))
    position = rng.uniform([0, 0], [1920 - 70, 1080 - 180], (people, 2))
    velocity = rng.uniform(-3, 3, (people, 2))
    out = []
    for _ in range(frames):
        position += velocity
        bounce = (position < 0) | (position + size > [1920, 1080])
        velocity[bounce] *= -1
        xyxy = np.column_stack([position, position + size])
        out.append(sv.Detections(xyxy=xyxy.copy(), confidence=rng.uniform(0.6, 0.95, people)))
    return out


def _timed(step: Callable[[int, sv.Detections], None], frames: int) -> tuple[list[float], list[float]]:
    """Wall time and this thread's CPU time per frame. On a shared machine the CPU time is the stable figure:
    wall time also counts the moments the scheduler gave our core to someone else."""
    wall, cpu = [], []
    for i, detections in enumerate(crowd(frames)):
        started, started_cpu = time.perf_counter(), time.thread_time()
        step(i, detections)
        cpu.append(time.thread_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return wall[30:], cpu[30:]  # the first second warms caches


def overhead(frames: int = 300, repeats: int = 3) -> list[dict[str, str]]:
    """Three set-ups measured in turn, `repeats` times (the machine is shared: each keeps its best run)."""
    tmp = Path(tempfile.mkdtemp(prefix="veil-bench-edge-"))
    raw = {
        "cameras": [
            {
                "id": "crowd",
                "source": {"type": "folder", "path": "."},
                "lines": [
                    {
                        "name": n,
                        "line": {"start": {"x": x, "y": 0.0}, "end": {"x": x, "y": 1.0}},
                        "events": [{"type": "linecrossing"}],
                    }
                    for n, x in (("a", 0.33), ("b", 0.66))
                ],
                "zones": [
                    {
                        "name": "hall",
                        "polygon": [[0.1, 0.1], [0.6, 0.1], [0.6, 0.9], [0.1, 0.9]],
                        "events": [{"type": "zonecrossing"}, {"type": "zonedwelltime"}, {"type": "count"}],
                    },
                    {
                        "name": "queue",
                        "polygon": [[0.5, 0.4], [0.95, 0.4], [0.95, 0.95], [0.5, 0.95]],
                        "events": [{"type": "persondistance", "config": {"minimum_distance_threshold": 2.0}}],
                    },
                ],
                "homography": {
                    "image_points": [[0, 0], [1, 0], [1, 1], [0, 1]],
                    "ground_points": [[0, 0], [60, 0], [60, 34], [0, 34]],
                },
            }
        ],
        "sinks": [{"type": "file", "path": str(tmp / "events.jsonl")}],
    }
    blank = np.zeros((1080, 1920, 3), np.uint8)
    labels = [
        "peer: trackers.ByteTrackTracker alone",
        "Veil tracker (pseudonymous ids)",
        "Veil: tracker + 7 operators + file sink",
    ]
    best: dict[str, tuple[list[float], list[float]]] = {}
    events: dict[str, int] = {}
    for _ in range(repeats):
        for label in labels:
            if label.startswith("peer"):
                from trackers import ByteTrackTracker

                peer = ByteTrackTracker(minimum_consecutive_frames=1)
                timings = _timed(lambda i, d, t=peer: t.update(d), frames)
            else:
                config = parse_config(raw)
                metrics = EdgeMetrics()
                full = "operators" in label
                sinks = [build_sink(s, metrics) for s in config.sinks] if full else []
                runner = CameraRunner(config.cameras[0], config, None, sinks, metrics, 30.0)
                if not full:
                    runner.operators = []
                timings = _timed(lambda i, d, r=runner: r.process(Frame(blank, i, i / 30.0), d), frames)
                for sink in sinks:
                    sink.close(5)
                events[label] = int(
                    sum(s.value for m in metrics.events.collect() for s in m.samples if s.name.endswith("_total"))
                )
            wall, cpu = timings
            if label not in best or statistics.median(cpu) < statistics.median(best[label][1]):
                best[label] = (sorted(wall), sorted(cpu))
    peer_cpu = statistics.median(best[labels[0]][1])
    return [
        {
            "pipeline": label,
            "people/frame": "30",
            "CPU p50 ms/frame": f"{1000 * statistics.median(cpu):.2f}",
            "CPU p95 ms/frame": f"{1000 * cpu[int(0.95 * len(cpu))]:.2f}",
            "wall p50 ms/frame": f"{1000 * statistics.median(wall):.2f}",
            "× peer (CPU p50)": f"{statistics.median(cpu) / peer_cpu:.2f}",
            "events": str(events.get(label, "—")),
        }
        for label, (wall, cpu) in best.items()
    ]


def table(title: str, rows: list[dict[str, str]]) -> None:
    t = Table(title=title)
    for column in rows[0]:
        t.add_column(column)
    for row in rows:
        t.add_row(*row.values())
    console.print(t)
    print("\n| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(row.values()) + " |")


def main() -> None:
    console.print("command: python -m bench edge  (make bench BENCH=edge)")
    if VIDEO.is_dir():
        sequences = load_sequences()
        tune = [s for s in sequences if s.name in TUNE]
        report = [s for s in sequences if s.name in REPORT]
        table(f"(b) tune split {', '.join(TUNE)}: YOLOX-Nano settings", sweep(tune))
        for title, split in ((f"report split {', '.join(REPORT)}", report), ("all 7 clips", sequences)):
            rows = [
                evaluate("public FRCNN det.txt (peer, no detector)", public_detections(sequences), split, False),
                evaluate("HOG (OpenCV, fallback)", detector_fn(DetectorSpec(kind="hog")), split),
                evaluate("YOLOX-Nano shipped, defaults", detector_fn(DetectorSpec()), split),
            ]
            if PERSON_MODEL.is_file():
                spec = DetectorSpec(kind="veil", path=PERSON_MODEL)
                rows.append(evaluate("person.onnx (make person-model)", detector_fn(spec), split))
            table(f"(b) {title}, {sum(len(s.frames) for s in split)} frames at native size", rows)
        table("(b') frames/s end to end incl. JPEG decode, 40 frames per row", throughput(sequences))
        table("(b'') CPU per frame on one thread (decode + detect)", single_thread_cpu())
        counts = [
            count_error("public FRCNN det.txt (peer)", None, sequences),
            count_error("HOG (OpenCV, fallback)", DetectorSpec(kind="hog"), sequences),
            count_error("YOLOX-Nano shipped, defaults", DetectorSpec(), sequences),
        ]
        table(f"(d) people-count error on the 7 clips, panned ({FRAMES_PANNED} frames each)", counts)
    else:
        console.print(f"{VIDEO} absent: (b) skipped")
    table("(c) pipeline overhead, detector excluded", overhead())


if __name__ == "__main__":
    main()
