"""Face anonymization benchmark: Veil against ORB-HD deface 1.5.0, same photos, same machine, same run.

Photos (../shared/datasets/faces-det, WIDER FACE val), split by event:
- tuning split: 0--Parade (115 photos). Veil's passes and thresholds were chosen on it.
- reporting split (default): 19--Couple + 20--Family_Group (94 photos), never used to choose anything.
  (`VEIL_BENCH_SPLIT=tune` reports on the tuning split instead.)

Both tools fill faces solid, each with its own masks (deface `--replacewith solid`: rectangles grown by 0.3
of the box on every side, 1.6x; Veil: its default ellipses of 1.5x the box). A ground-truth face (not flagged
invalid) is **hidden** when at least 70 % of its box is inside the tool's mask; **false change** is the share
of the pixels outside every ground-truth box (invalid ones included) that the tool blacked out. Speed is each
command line run on the same folder, end to end (`veil anonymize DIR -o OUT` vs `deface DIR --replacewith
solid`), alternated.

Video (../shared/datasets/people-video, MOT17): each sequence's frames become an H.264 clip at its native fps;
frames/s is `veil anonymize clip.mp4` vs `deface clip.mp4` end to end. The visible faces (frontal or profile)
are annotated in tests/data/mot17_faces.json (boxes only; how they were made is written there). A **leaked
frame** shows an annotated face less than 70 % inside the tool's mask — for Veil with temporal smoothing, Veil
frame by frame (`--hold-frames 0`, what deface does) and deface. The shared clips hold 4-8 frames, so start-up
weighs heavily: per-frame throughput is also measured on 32-frame clips made of the same real frames (played
forwards, backwards, forwards, ...), as the marginal cost over a 1-frame clip, in wall and CPU seconds.

Memory: peak resident memory of each tool on one 11 MP and one 50 MP photo (mosaics of reporting-split
photos, upscaled for 50 MP), deface under an address-space cap.

deface runs in its own venv, `bench/.venv-deface` (`pip install deface onnx onnxruntime`, its README's fast
backend), so its GUI OpenCV stays out of Veil's environment.

    python -m bench anonymize            # or: make bench BENCH=anonymize
    VEIL_BENCH_LIMIT=20 python -m bench anonymize   # a quick subset
    VEIL_BENCH_PARTS=video,memory python -m bench anonymize   # some parts only (photos, video, memory)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
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
VEIL = Path(sys.executable).with_name("veil")
SPLITS = {"tune": ("0--Parade",), "report": ("19--Couple", "20--Family_Group")}
# Face size = sqrt(box area) in pixels.
SIZES = (("< 20 px", 0, 20), ("20-40 px", 20, 40), ("40-80 px", 40, 80), ("> 80 px", 80, 1e9))
HIDDEN = 0.7  # share of a face's box that must be masked
FACE_ANNOTATIONS = REPO / "tests" / "data" / "mot17_faces.json"


@dataclass(frozen=True)
class GroundTruth:
    path: Path
    boxes: np.ndarray  # xyxy pixels
    invalid: np.ndarray  # bool: WIDER's "invalid" flag


def load_wider(events: tuple[str, ...], root: Path = FACES) -> list[GroundTruth]:
    """Parse `wider_face_val_bbx_gt.txt`: name, count, then `x1 y1 w h blur expr illum invalid occl pose`."""
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().split("\n")
    items, i = [], 0
    while i < len(lines) and lines[i].strip():
        name, count = lines[i].strip(), int(lines[i + 1])
        rows = [list(map(int, line.split())) for line in lines[i + 2 : i + 2 + count]]
        i += 2 + max(count, 1)  # an image with 0 faces still has one "0 0 0 0 ..." line
        values = np.array([r for r in rows if r[2] > 0 and r[3] > 0], dtype=np.float32).reshape(-1, 10)
        boxes = np.concatenate([values[:, :2], values[:, :2] + values[:, 2:4]], axis=1)
        if name.split("/")[0] in events:
            items.append(GroundTruth(root / "WIDER_val" / "images" / name, boxes, values[:, 7] == 1))
    return items


# --- masks: what each tool blacks out for a list of boxes ----------------------------------------------


def veil_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    from veil.privacy.image import hide_detections
    from veil.privacy.settings import AnonymizeSettings

    white = np.full((height, width, 3), 255, dtype=np.uint8)
    found = sv.Detections(xyxy=np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return hide_detections(white, found, AnonymizeSettings()).image[:, :, 0] == 0


def deface_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """deface 1.5.0's `anonymize_frame` with `replacewith="solid"`: `scale_bb` grows each side by 0.3 of the
    box, then `cv2.rectangle` fills it (clipped to shape - 1, as deface does)."""
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4).astype(int):
        w, h = x2 - x1, y2 - y1
        x1, y1, x2, y2 = np.round([x1 - w * 0.3, y1 - h * 0.3, x2 + w * 0.3, y2 + h * 0.3]).astype(int)
        y1, y2, x1, x2 = max(0, y1), min(height - 1, y2), max(0, x1), min(width - 1, x2)
        if x2 >= x1 and y2 >= y1:
            mask[y1 : y2 + 1, x1 : x2 + 1] = True  # cv2.rectangle with thickness -1 includes both corners
    return mask


def box_share(mask: np.ndarray, box: np.ndarray) -> float:
    height, width = mask.shape
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    return float(mask[y1:y2, x1:x2].mean()) if x2 > x1 and y2 > y1 else 1.0


@dataclass
class PhotoTally:
    hidden: dict[str, int] = field(default_factory=lambda: {name: 0 for name, *_ in SIZES})
    total: dict[str, int] = field(default_factory=lambda: {name: 0 for name, *_ in SIZES})
    false_changed: int = 0
    outside: int = 0

    def add(self, truth: GroundTruth, mask: np.ndarray) -> None:
        faces = np.zeros(mask.shape, dtype=bool)
        for box in truth.boxes.astype(int):
            faces[max(box[1], 0) : box[3], max(box[0], 0) : box[2]] = True
        self.false_changed += int((mask & ~faces).sum())
        self.outside += int((~faces).sum())
        sides = np.sqrt((truth.boxes[:, 2] - truth.boxes[:, 0]) * (truth.boxes[:, 3] - truth.boxes[:, 1]))
        for box, side, invalid in zip(truth.boxes, sides, truth.invalid, strict=True):
            if invalid:
                continue
            name = next(n for n, low, high in SIZES if low <= side < high)
            self.total[name] += 1
            self.hidden[name] += int(box_share(mask, box) >= HIDDEN)

    def recall(self, name: str) -> float:
        return self.hidden[name] / self.total[name] if self.total[name] else 0.0

    @property
    def false_change(self) -> float:
        return self.false_changed / max(self.outside, 1)


def veil_photo_boxes(paths: list[Path]) -> list[np.ndarray]:
    from veil.privacy.batch import anonymize_arrays
    from veil.privacy.settings import AnonymizeSettings

    results = anonymize_arrays((_read(p) for p in paths), AnonymizeSettings())
    return [r.detections.xyxy for r in results]


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


# --- deface (its own venv) ----------------------------------------------------------------------------

_DEFACE_DETECT = r"""
import json, sys
import imageio.v2 as iio
from deface.centerface import CenterFace
paths, out = json.loads(sys.argv[1]), sys.argv[2]
centerface = CenterFace(in_shape=None, backend="auto")  # deface's defaults: full resolution, onnxruntime
json.dump([centerface(iio.imread(p), threshold=0.2)[0][:, :4].tolist() for p in paths], open(out, "w"))
"""


def ensure_deface() -> Path:
    python = DEFACE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DEFACE_VENV)], check=True)
    check = subprocess.run([str(python), "-c", "import deface, onnxruntime"], capture_output=True)
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "deface==1.5.0", "onnx", "onnxruntime"], check=True)
    return python


def deface_boxes(paths: list[Path]) -> list[np.ndarray]:
    python = ensure_deface()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "boxes.json"
        command = [str(python), "-c", _DEFACE_DETECT, json.dumps([str(p) for p in paths]), str(out)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in json.loads(out.read_text())]


# --- command lines, timed -----------------------------------------------------------------------------


def time_veil(src: Path, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([str(VEIL), "anonymize", str(src), "-o", str(out)], check=True, capture_output=True)
    return time.perf_counter() - start


def time_deface(src: Path) -> float:
    """deface writes `<name>_anonymized.<ext>` beside each input: run it on a fresh copy."""
    deface = DEFACE_VENV / "bin" / "deface"
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [Path(shutil.copy(p, tmp)) for p in sorted(src.iterdir())]
        start = time.perf_counter()
        command = [str(deface), *map(str, inputs), "--replacewith", "solid"]
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start


def alternate(runs: dict[str, object], rounds: int = 2) -> dict[str, float]:
    """Seconds per tool, each run `rounds` times in ABBA order so both see the same machine load."""
    seconds = dict.fromkeys(runs, 0.0)
    names = list(runs)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            seconds[name] += runs[name]()  # type: ignore[operator]
    return {name: spent / rounds for name, spent in seconds.items()}


def mosaic_photos(truths: list[GroundTruth], folder: Path, count: int, grid: int = 4) -> None:
    """Large photos (4096 px wide, ~12 MP) made of grid x grid reporting-split photos, for 'any size'."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        tiles = [
            np.asarray(Image.open(t.path).convert("RGB").resize((1024, 683)))
            for t in truths[index * grid * grid : (index + 1) * grid * grid]
        ]
        rows = [np.concatenate(tiles[r * grid : (r + 1) * grid], axis=1) for r in range(len(tiles) // grid)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(folder / f"mosaic_{index}.jpg", quality=92)


# --- video --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sequence:
    name: str
    frames: list[Path]
    fps: int
    faces: dict[int, np.ndarray]  # frame number (1-based) -> annotated visible faces, xyxy


def load_sequences() -> list[Sequence]:
    """MOT17 clips with the visible faces annotated in tests/data/mot17_faces.json (boxes only)."""
    annotated = json.loads(FACE_ANNOTATIONS.read_text())["sequences"]
    sequences = []
    for folder in sorted(PEOPLE.iterdir()):
        info = dict(line.split("=", 1) for line in (folder / "seqinfo.ini").read_text().splitlines() if "=" in line)
        faces: dict[int, list[list[float]]] = {}
        for track in annotated.get(folder.name, {"faces": {}})["faces"].values():
            for frame, box in track.items():
                faces.setdefault(int(frame), []).append(box)
        frames = sorted((folder / "img1").glob("*.jpg"))
        boxes = {f: np.asarray(b, dtype=np.float32) for f, b in faces.items()}
        sequences.append(Sequence(folder.name, frames, int(info["frameRate"]), boxes))
    return sequences


def write_clip(sequence: Sequence, path: Path) -> None:
    frames = [_read(p) for p in sequence.frames]
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(sequence.fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def leaked_frames(sequence: Sequence, boxes: list[np.ndarray], mask_of: object) -> int:
    """Frames in which some annotated face is less than 70 % inside the tool's mask."""
    leaked = 0
    height, width = _read(sequence.frames[0]).shape[:2]
    for number, found in enumerate(boxes, start=1):
        faces = sequence.faces.get(number)
        if faces is None:
            continue
        mask = mask_of(found, height, width)  # type: ignore[operator]
        leaked += int(any(box_share(mask, face) < HIDDEN for face in faces))
    return leaked


def veil_video_boxes(sequence: Sequence, holds: tuple[int, ...]) -> dict[int, list[np.ndarray]]:
    """Veil's hidden boxes per frame for each `hold_frames` (0 = frame by frame), from one detection pass:
    the detector runs as `veil anonymize clip.mp4` runs it (coarse levels on every 4th frame), then the
    tracker smooths the same detections with each hold."""
    from veil.privacy.detectors import detector_for
    from veil.privacy.settings import AnonymizeSettings
    from veil.privacy.tracking import smooth
    from veil.privacy.video import HALF_PASS_EVERY

    settings = AnonymizeSettings()
    detector = detector_for(settings)
    found = [
        detector.detect(_read(path), full_only=index % HALF_PASS_EVERY != 0)
        for index, path in enumerate(sequence.frames)
    ]
    return {
        hold: [hidden.xyxy for _, hidden in smooth(iter(list(enumerate(found))), hold, settings.track_iou)]
        for hold in holds
    }


def time_video(clips: list[Path], out: Path) -> dict[str, float]:
    deface = DEFACE_VENV / "bin" / "deface"

    def veil(*extra: str) -> Callable[[], float]:
        def run() -> float:
            start = time.perf_counter()
            for clip in clips:
                command = [str(VEIL), "anonymize", str(clip), "-o", str(out / clip.name), *extra]
                subprocess.run(command, check=True, capture_output=True)
            return time.perf_counter() - start

        return run

    def deface_run() -> float:
        start = time.perf_counter()
        for clip in clips:
            target = out / f"deface_{clip.name}"
            command = [str(deface), str(clip), "-o", str(target), "--replacewith", "solid"]
            subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start

    return alternate({"deface": deface_run, "veil": veil(), "veil-frame": veil("--hold-frames", "0")})


def pingpong(frames: list[Path], count: int) -> list[Path]:
    """`count` frames walking a sequence forwards, then backwards, and so on (1, 2, ..., n, n-1, ..., 2, 1, 2,
    ...): a longer clip made only of the real frames, in which every step is a real frame-to-frame motion."""
    cycle = frames + frames[-2:0:-1]
    return [cycle[i % len(cycle)] for i in range(count)]


# The sequences timed for per-frame throughput: the one 640x480 clip and two 1920x1080 ones (a crowd, a shop).
THROUGHPUT_SEQUENCES = ("MOT17-05-FRCNN", "MOT17-04-FRCNN", "MOT17-11-FRCNN")
THROUGHPUT_FRAMES = 32


def _run_child(command: list[str]) -> tuple[float, float, int]:
    """Run a command; its wall seconds, CPU seconds (user + system, all its threads) and peak RSS in MB."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss // 1024


def video_throughput(sequences: list[Sequence], folder: Path, frames: int = THROUGHPUT_FRAMES) -> dict[str, dict]:
    """Per-frame cost without start-up: each sequence as a 1-frame clip and as a `frames`-frame ping-pong clip
    of its real frames (native fps), both tools on both, alternated (ABBA). The marginal cost of a frame is
    (time(N frames) - time(1 frame)) / (N - 1), summed over the sequences: start-up and model loading cancel."""
    deface = DEFACE_VENV / "bin" / "deface"
    clips = []
    for sequence in sequences:
        for count in (1, frames):
            clip = folder / f"{sequence.name}_{count}.mp4"
            write_clip(Sequence(sequence.name, pingpong(sequence.frames, count), sequence.fps, {}), clip)
            clips.append((clip, count))
    commands: dict[str, Callable[[Path], list[str]]] = {
        "veil": lambda clip: [str(VEIL), "anonymize", str(clip), "-o", str(folder / f"veil_{clip.name}")],
        "veil-frame": lambda clip: [str(VEIL), "anonymize", str(clip), "-o", str(folder / f"frame_{clip.name}"),
                                    "--hold-frames", "0"],
        "deface": lambda clip: [str(deface), str(clip), "-o", str(folder / f"deface_{clip.name}"),
                                "--replacewith", "solid"],
    }  # fmt: skip
    spent: dict[str, dict[int, list[float]]] = {tool: {1: [0.0, 0.0], frames: [0.0, 0.0]} for tool in commands}
    # ABBA: the tools see the same load on average (each runs twice).
    order = ["deface", "veil", "veil-frame", "veil-frame", "veil", "deface"]
    for tool in order:
        for clip, count in clips:
            wall, cpu, _ = _run_child(commands[tool](clip))
            spent[tool][count][0] += wall / 2
            spent[tool][count][1] += cpu / 2
    extra = len(sequences) * (frames - 1)
    return {
        tool: {
            "seconds_1": times[1][0],
            "seconds_n": times[frames][0],
            "marginal_fps": extra / max(times[frames][0] - times[1][0], 1e-9),
            "cpu_per_frame": (times[frames][1] - times[1][1]) / extra,
            "whole_fps": len(sequences) * frames / times[frames][0],
        }
        for tool, times in spent.items()
    }


# --- memory on a 50 MP photo --------------------------------------------------------------------------


def photo_50mp(truths: list[GroundTruth], path: Path, grid: int = 4) -> tuple[int, int]:
    """An 8192x6144 (50.3 MP) JPEG: grid x grid reporting-split photos, each upscaled to 2048x1536 (about 2x)."""
    tile_w, tile_h = 8192 // grid, 6144 // grid
    canvas = Image.new("RGB", (tile_w * grid, tile_h * grid))
    for index, truth in enumerate(truths[: grid * grid]):
        with Image.open(truth.path) as photo:
            tile = photo.convert("RGB").resize((tile_w, tile_h), Image.Resampling.LANCZOS)
        canvas.paste(tile, ((index % grid) * tile_w, (index // grid) * tile_h))
    canvas.save(path, quality=92)
    return canvas.size


# deface runs CenterFace on the whole photo at full resolution: its memory is capped (address space) so a
# photo it cannot handle fails instead of pushing the shared machine into swapping or the OOM killer.
DEFACE_MEMORY_CAP_GB = 20


def memory_50mp(truths: list[GroundTruth], folder: Path) -> dict[str, dict[str, tuple[str, float]]]:
    """Peak resident memory (MB) and wall seconds of each tool anonymizing one photo, run alone: an 11 MP
    mosaic (4096x2732) and a 50 MP one (8192x6144). Memory that grows only by the decoded photo's copies is
    bounded by the tiles; memory that grows with the network's activations over the whole photo is not."""
    photos = {"11 MP": folder / "large" / "mosaic_0.jpg", "50 MP": folder / "mosaic_50mp.jpg"}
    mosaic_photos(truths, photos["11 MP"].parent, count=1)
    photo_50mp(truths, photos["50 MP"])
    deface = DEFACE_VENV / "bin" / "deface"
    cap = DEFACE_MEMORY_CAP_GB * 1024**3
    results: dict[str, dict[str, tuple[str, float]]] = {}
    for size, photo in photos.items():
        wall, _, peak = _run_child([str(VEIL), "anonymize", str(photo), "-o", str(folder / f"veil_{photo.name}")])
        results.setdefault("veil", {})[size] = (f"{peak}", wall)
        command = ["prlimit", f"--as={cap}", str(deface), str(photo), "-o", str(folder / f"deface_{photo.name}"),
                   "--replacewith", "solid"]  # fmt: skip
        try:
            wall, _, peak = _run_child(command)
            results.setdefault("deface", {})[size] = (f"{peak}", wall)
        except subprocess.CalledProcessError:
            failed = f"failed under a {DEFACE_MEMORY_CAP_GB} GB address-space cap"
            results.setdefault("deface", {})[size] = (failed, float("nan"))
    return results


# --- report -------------------------------------------------------------------------------------------


def _ratio(veil: float, deface: float) -> str:
    return f"{veil / deface:.2f}×" if deface else "—"


def photos(console: Console, split: str, limit: int | None) -> None:
    truths = load_wider(SPLITS[split])[:limit]
    paths = [t.path for t in truths]
    tallies = {"deface": PhotoTally(), "veil": PhotoTally()}
    for name, boxes, mask_of in (
        ("deface", deface_boxes(paths), deface_mask),
        ("veil", veil_photo_boxes(paths), veil_mask),
    ):
        for truth, found in zip(truths, boxes, strict=True):
            height, width = _read(truth.path).shape[:2]
            tallies[name].add(truth, mask_of(found, height, width))
    with tempfile.TemporaryDirectory() as tmp:
        folder, large = Path(tmp) / "photos", Path(tmp) / "large"
        folder.mkdir()
        for path in paths:
            shutil.copy(path, folder / path.name)
        mosaic_photos(load_wider(SPLITS["report"]), large, count=3 if limit is None else 1)
        speed = alternate({"deface": lambda: time_deface(folder), "veil": lambda: time_veil(folder, Path(tmp) / "o")})
        large_speed = alternate(
            {"deface": lambda: time_deface(large), "veil": lambda: time_veil(large, Path(tmp) / "lo")}, rounds=1
        )
        large_count = len(list(large.iterdir()))
    events = " + ".join(SPLITS[split])
    table = Table(title=f"photos: {len(truths)} WIDER val photos of {events} ({split} split), both filling solid")
    for column in ("metric", "deface 1.5.0", "Veil", "Veil / deface"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    deface, veil = tallies["deface"], tallies["veil"]
    for name, *_ in SIZES:
        table.add_row(
            f"hidden {name} (n={veil.total[name]})",
            f"{deface.recall(name):.3f} ({deface.total[name] - deface.hidden[name]} missed)",
            f"{veil.recall(name):.3f} ({veil.total[name] - veil.hidden[name]} missed)",
            _ratio(veil.recall(name), deface.recall(name)),
        )
    table.add_row(
        "false change (non-face pixels blacked)",
        f"{100 * deface.false_change:.2f} %",
        f"{100 * veil.false_change:.2f} %",
        _ratio(veil.false_change, deface.false_change),
    )
    rates = {tool: len(paths) / seconds for tool, seconds in speed.items()}
    table.add_row(
        "images/s (CLI on the folder)",
        f"{rates['deface']:.2f}",
        f"{rates['veil']:.2f}",
        _ratio(rates["veil"], rates["deface"]),
    )
    large_rates = {tool: large_count / seconds for tool, seconds in large_speed.items()}
    table.add_row(
        f"images/s, {large_count} photos of 4096x2732 (11 MP)",
        f"{large_rates['deface']:.3f}",
        f"{large_rates['veil']:.3f}",
        _ratio(large_rates["veil"], large_rates["deface"]),
    )
    console.print(table)


def video(console: Console, limit: int | None) -> None:
    sequences = load_sequences()[:limit]
    frames = sum(len(s.frames) for s in sequences)
    leaks = {"deface": 0, "veil": 0, "veil-frame": 0}
    at_risk = sum(1 for s in sequences for n in range(1, len(s.frames) + 1) if n in s.faces)
    for sequence in sequences:
        if not sequence.faces:
            continue
        leaks["deface"] += leaked_frames(sequence, deface_boxes(sequence.frames), deface_mask)
        veil = veil_video_boxes(sequence, (8, 0))
        leaks["veil"] += leaked_frames(sequence, veil[8], veil_mask)
        leaks["veil-frame"] += leaked_frames(sequence, veil[0], veil_mask)
    timed = [s for s in sequences if s.name in THROUGHPUT_SEQUENCES] or sequences[:1]
    with tempfile.TemporaryDirectory() as tmp:
        clips = []
        for sequence in sequences:
            clips.append(Path(tmp) / f"{sequence.name}.mp4")
            write_clip(sequence, clips[-1])
        out = Path(tmp) / "out"
        out.mkdir()
        seconds = time_video(clips, out)
        throughput = video_throughput(timed, out)
    title = f"video: {len(sequences)} MOT17 clips at native fps, {frames} frames ({at_risk} with annotated faces)"
    table = Table(title=title)
    for column in ("metric", "deface 1.5.0", "Veil", "Veil frame by frame", "Veil / deface"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    table.add_row(
        "leaked frames (an annotated face < 70 % hidden)",
        str(leaks["deface"]),
        str(leaks["veil"]),
        str(leaks["veil-frame"]),
        f"{leaks['veil'] - leaks['deface']:+d}",
    )
    rates = {tool: frames / spent for tool, spent in seconds.items()}
    table.add_row(
        "frames/s (CLI, clip by clip, start-up included)",
        f"{rates['deface']:.2f}",
        f"{rates['veil']:.2f}",
        f"{rates['veil-frame']:.2f}",
        _ratio(rates["veil"], rates["deface"]),
    )
    names = ", ".join(s.name.removesuffix("-FRCNN") for s in timed)
    for key, label, digits in (
        ("marginal_fps", f"frames/s per extra frame ({names}: {THROUGHPUT_FRAMES} vs 1 frame)", 2),
        ("whole_fps", f"frames/s on the {THROUGHPUT_FRAMES}-frame clips, start-up included", 2),
        ("cpu_per_frame", "CPU seconds per extra frame (user + system, all threads)", 2),
    ):
        values = {tool: throughput[tool][key] for tool in throughput}
        table.add_row(
            label,
            f"{values['deface']:.{digits}f}",
            f"{values['veil']:.{digits}f}",
            f"{values['veil-frame']:.{digits}f}",
            _ratio(values["veil"], values["deface"]),
        )
    console.print(table)


def memory(console: Console) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        found = memory_50mp(load_wider(SPLITS["report"]), Path(tmp))
    title = (
        "one photo, run alone: 4096x2732 (11 MP: 16 reporting-split photos) and 8192x6144 (50 MP: the same, upscaled)"
    )
    table = Table(title=title)
    for column in ("metric", "deface 1.5.0", "Veil", "Veil / deface"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for size in ("11 MP", "50 MP"):
        deface, veil = found["deface"][size], found["veil"][size]
        ratio = _ratio(float(veil[0]), float(deface[0])) if deface[0].isdigit() else "—"
        table.add_row(f"peak resident memory, MB ({size})", deface[0], veil[0], ratio)
        speed = _ratio(deface[1], veil[1])  # photos/s ratio, as in the speed rows above
        table.add_row(
            f"seconds ({size}); last column: Veil's speed / deface's", f"{deface[1]:.1f}", f"{veil[1]:.1f}", speed
        )
    console.print(table)


def main() -> None:
    console = Console(width=150)
    if not FACES.is_dir():
        console.print(f"faces-det not found at {FACES}; nothing to measure")
        return
    limit = int(os.environ.get("VEIL_BENCH_LIMIT", "0")) or None
    split = os.environ.get("VEIL_BENCH_SPLIT", "report")
    parts = os.environ.get("VEIL_BENCH_PARTS", "photos,video,memory").split(",")
    ensure_deface()
    if "photos" in parts:
        photos(console, split, limit)
    if PEOPLE.is_dir() and "video" in parts:
        video(console, limit and max(limit // 10, 1))
    if "memory" in parts:
        memory(console)
    console.print("command: python -m bench anonymize   (make bench BENCH=anonymize)")


if __name__ == "__main__":
    main()
