"""YOLOX ONNX models run with onnxruntime and decoded here — no torch.

YOLOX (Megvii, Apache-2.0) exports keep the box decoding out of the graph: the output is one row per grid cell
of the strides 8, 16 and 32, `[dx, dy, log w, log h, objectness, class scores...]` with objectness and class
scores already sigmoided. This module does what YOLOX's `demo_postprocess` + `multiclass_nms` do:

    xy = (dxy + cell) * stride,  wh = exp(log wh) * stride,  score = objectness × class score,  then NMS

The same code serves every YOLOX size (Nano, Tiny, S, M, L, X: only the widths differ) and every input size that
is a multiple of 32: the graphs have no fixed reshape sizes, so the declared input/output shapes are rewritten
at load (`with_input_size`) and the weights are untouched. Input: BGR, 0–255, not normalised, the image resized
keeping its aspect ratio and placed at the top-left corner of a canvas padded with 114.

    >>> from veil.vision.yolox_runtime import YoloxModel
    >>> model = YoloxModel.load("yolox_nano.onnx", input_size=(384, 640))   # (height, width)  # doctest: +SKIP
    >>> model.detect(rgb, threshold=0.3, classes=[0])                       # sv.Detections  # doctest: +SKIP

Edge (`veil.edge.detect`), privacy and training's evaluation share this decoder.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import supervision as sv

STRIDES = (8, 16, 32)
PAD_VALUE = 114
COCO_CLASSES_FILE = Path(__file__).resolve().parents[1] / "edge" / "models" / "coco_classes.txt"


class YoloxError(ValueError):
    """A file that is not a usable YOLOX export (unreadable, wrong input or output layout, bad size)."""


@dataclass(frozen=True)
class InputSize:
    """The network input in pixels; both sides are multiples of 32 (the largest stride)."""

    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0 or self.height % 32 or self.width % 32:
            raise YoloxError(f"YOLOX input size must be positive multiples of 32, got {self.width}×{self.height}")

    @property
    def cells(self) -> int:
        """Output rows: one per grid cell of every stride."""
        return sum((self.height // s) * (self.width // s) for s in STRIDES)

    @classmethod
    def covering(cls, frame_width: int, frame_height: int, width: int) -> InputSize:
        """`width` (rounded down to 32) wide and tall enough for the frame's aspect ratio (rounded up to 32)."""
        width = max(32, width // 32 * 32)
        height = max(32, math.ceil(frame_height * width / frame_width / 32) * 32)
        return cls(height, width)


@dataclass(frozen=True)
class Placement:
    """Where the frame sits in the network input: input = frame × scale, at the top-left corner."""

    scale: float

    def to_frame(self, xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
        boxes = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4) / self.scale
        return np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)


def grids(size: InputSize) -> tuple[np.ndarray, np.ndarray]:
    """Per output row: its cell's (x, y) in grid units and its stride — YOLOX's row order (stride 8 first,
    then row-major within each stride)."""
    cells, strides = [], []
    for stride in STRIDES:
        rows, cols = size.height // stride, size.width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full(rows * cols, stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(raw: np.ndarray, size: InputSize) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw output [N, 5 + C] → (xyxy boxes in input pixels [N, 4], scores [N, C] = obj × class)."""
    cells, strides = grids(size)
    if raw.shape[0] != len(cells):
        raise YoloxError(f"YOLOX output has {raw.shape[0]} rows; {size.width}×{size.height} needs {len(cells)}")
    centre = (raw[:, 0:2] + cells) * strides[:, None]
    half = np.exp(np.clip(raw[:, 2:4], -20.0, 20.0)) * strides[:, None] / 2
    xyxy = np.concatenate([centre - half, centre + half], axis=1)
    return xyxy, raw[:, 4:5] * raw[:, 5:]


def with_input_size(model: onnx.ModelProto, size: InputSize) -> onnx.ModelProto:
    """A copy of a YOLOX graph declaring `size` as its input and the matching output rows; weights unchanged.
    The intermediate shapes recorded at export (value_info) are dropped: onnxruntime infers them again."""
    resized = onnx.ModelProto()
    resized.CopyFrom(model)
    del resized.graph.value_info[:]
    dims = resized.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_value = size.height
    dims[3].Clear()
    dims[3].dim_value = size.width
    rows = resized.graph.output[0].type.tensor_type.shape.dim[1]
    rows.Clear()
    rows.dim_value = size.cells
    return resized


def parse_class_names(metadata: dict[str, str], classes: int) -> list[str] | None:
    """Class names from a model's metadata — `veil.labels` / `classes` (JSON or comma-separated) or `names`
    (Ultralytics writes a Python dict literal) — when their count matches; COCO's for 80 classes; else None."""
    for key in ("veil.labels", "classes", "names"):
        if key not in metadata:
            continue
        try:
            parsed = ast.literal_eval(metadata[key])  # JSON lists and Python literals alike
        except (ValueError, SyntaxError):
            parsed = [name.strip() for name in metadata[key].split(",")]
        names = [parsed[k] for k in sorted(parsed)] if isinstance(parsed, dict) else list(parsed)
        if len(names) == classes:
            return [str(name) for name in names]
    if classes == 80:
        return COCO_CLASSES_FILE.read_text().split("\n")[:80]
    return None


def class_names_for(model: onnx.ModelProto, classes: int) -> list[str] | None:
    return parse_class_names({p.key: p.value for p in model.metadata_props}, classes)


def _static_dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def check_layout(model: onnx.ModelProto, source: str) -> tuple[InputSize, int]:
    """(declared input size, class count) of a YOLOX export, or `YoloxError` saying what is wrong."""
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise YoloxError(
            f"{source}: a YOLOX export has one input and one output, found {len(model.graph.input)} and "
            f"{len(model.graph.output)}"
        )
    shape_in, shape_out = _static_dims(model.graph.input[0]), _static_dims(model.graph.output[0])
    if len(shape_in) != 4 or shape_in[1] != 3 or not all(isinstance(d, int) for d in shape_in[2:]):
        raise YoloxError(f"{source}: expected a YOLOX image input [1, 3, H, W], got {shape_in}")
    size = InputSize(int(shape_in[2]), int(shape_in[3]))
    if len(shape_out) != 3 or shape_out[1] != size.cells or not isinstance(shape_out[2], int) or shape_out[2] < 6:
        raise YoloxError(
            f"{source}: expected a YOLOX output [1, {size.cells}, 5 + classes] for a {size.width}×{size.height} "
            f"input (strides 8/16/32, decoding not in the graph), got {shape_out}"
        )
    return size, int(shape_out[2]) - 5


def read_model(source: str | Path | bytes) -> onnx.ModelProto:
    try:
        return onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(str(source))
    except Exception as exc:  # protobuf raises DecodeError, OSError, ...: all mean "not an ONNX file"
        raise YoloxError(f"{source if not isinstance(source, bytes) else 'model'}: not an ONNX file ({exc})") from None


class YoloxModel:
    """A YOLOX export at one input size: `detect(rgb) -> sv.Detections` in the frame's pixels."""

    def __init__(
        self, model: onnx.ModelProto, source: str, input_size: InputSize | None = None, threads: int = 0
    ) -> None:
        native, self.num_classes = check_layout(model, source)
        self.native_size = native
        self.size = input_size or native
        self.class_names = class_names_for(model, self.num_classes)
        graph = model if self.size == native else with_input_size(model, self.size)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise YoloxError(f"{source}: onnxruntime cannot run it: {str(exc).splitlines()[0][:200]}") from None
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def load(
        cls, path: str | Path, input_size: tuple[int, int] | InputSize | None = None, threads: int = 0
    ) -> YoloxModel:
        size = InputSize(*input_size) if isinstance(input_size, tuple) else input_size
        return cls(read_model(path), str(path), size, threads)

    def tensor(self, rgb: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The frame as YOLOX input: BGR 0–255 float32 [1, 3, H, W], resized into the top-left corner."""
        height, width = rgb.shape[:2]
        scale = min(self.size.width / width, self.size.height / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.full((self.size.height, self.size.width, 3), PAD_VALUE, dtype=np.uint8)
        canvas[:new_h, :new_w] = cv2.resize(rgb, (new_w, new_h), interpolation=interpolation)[..., ::-1]
        return canvas.transpose(2, 0, 1)[None].astype(np.float32), Placement(scale)

    def raw(self, rgb: np.ndarray) -> tuple[np.ndarray, Placement]:
        """The graph's output for one frame ([N, 5 + C]) and where the frame sat in the input."""
        tensor, placement = self.tensor(rgb)
        return np.asarray(self._session.run(None, {self._input: tensor})[0][0]), placement

    def detect(
        self, rgb: np.ndarray, threshold: float = 0.3, nms_iou: float = 0.45, classes: Sequence[int] | None = None
    ) -> sv.Detections:
        """Boxes scoring ≥ threshold (objectness × class score), class-wise NMS, in the frame's pixels.
        `classes` keeps only those class indices (e.g. [0] for COCO's person)."""
        raw, placement = self.raw(rgb)
        xyxy, scores = decode(raw, self.size)
        if classes is not None:
            wanted = np.asarray(list(classes), dtype=int)
            scores = np.where(np.isin(np.arange(scores.shape[1]), wanted)[None, :], scores, 0.0)
        class_id = scores.argmax(axis=1)
        confidence = scores[np.arange(len(scores)), class_id]
        keep = confidence >= threshold
        height, width = rgb.shape[:2]
        detections = sv.Detections(
            xyxy=placement.to_frame(xyxy[keep], width, height),
            confidence=confidence[keep].astype(np.float32),
            class_id=class_id[keep].astype(int),
        )
        if len(detections):
            detections = detections.with_nms(threshold=nms_iou, class_agnostic=False)
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        ids = np.asarray(detections.class_id, dtype=int).reshape(-1)
        detections.data["class_name"] = np.array([names[i] for i in ids], dtype=np.str_)
        return detections
