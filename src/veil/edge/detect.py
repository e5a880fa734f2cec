"""People detectors: `detect(rgb) -> sv.Detections` (person boxes only, pixel xyxy in the original frame).

- `YoloxPeopleDetector` (the default): a YOLOX ONNX export of any size — the shipped YOLOX-Nano unless the
  config names another — decoded by `veil.vision.yolox_runtime` at an input `detect_width` wide whose height
  follows the camera's aspect ratio (the graph's declared shapes are rewritten once per frame size).
- `HogPeopleDetector`: OpenCV 4.x's built-in HOG + linear SVM people detector. Needs nothing, works on a CPU,
  and is a *modest* fallback: it misses small, occluded and seated people. Use it to try Veil, not to
  count a shop.
- `YoloOnnxDetector`: ONNX exports of YOLO v5 (`[1, N, 5 + classes]`, with objectness) and v8/v11
  (`[1, 4 + classes, N]`), decoded here with onnxruntime; the person class index is configurable (COCO: 0).
- `VeilOnnxDetector`: a detector exported by Veil's own trainer, run by `veil.vision.runtime`; it must have a
  `person` label (configurable).

Frames wider than `detect_width` are shrunk before detection and boxes scaled back, so slow boxes can trade
accuracy for speed. `build_detector(spec)` picks one from the config (a registered model name is looked up in
`veil.edge.registry`); `identify_model(path)` says which kind a file is, for `veil models add`.

Example::

    >>> import numpy as np
    >>> detector = HogPeopleDetector(DetectorSpec(kind="hog"))
    >>> len(detector.detect(np.zeros((240, 320, 3), np.uint8)))
    0
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import supervision as sv

from veil.edge.config import DEFAULT_MODEL, DetectorKind, DetectorSpec
from veil.edge.registry import RegistryError, find_model, shipped_models
from veil.vision.yolox_runtime import (
    InputSize,
    YoloxError,
    YoloxModel,
    class_names_for,
    parse_class_names,
    read_model,
)


class DetectorError(ValueError):
    """A detector file that cannot be used (wrong shape, no person class, unreadable)."""


class NoPersonClassError(DetectorError):
    """A detector that loads but cannot tell people apart (no person class, or an unknown one)."""


class PeopleDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> sv.Detections: ...


def _shrink(rgb: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """The frame shrunk to at most `max_width` wide, and the factor mapping its pixels back."""
    height, width = rgb.shape[:2]
    if width <= max_width:
        return rgb, 1.0
    scale = max_width / width
    small = cv2.resize(rgb, (max_width, round(height * scale)), interpolation=cv2.INTER_AREA)
    return small, 1.0 / scale


def _nms(xyxy: np.ndarray, scores: np.ndarray, score_threshold: float, iou: float) -> np.ndarray:
    if len(xyxy) == 0:
        return np.zeros(0, dtype=int)
    boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]).tolist()
    keep = cv2.dnn.NMSBoxes(boxes, scores.astype(float).tolist(), score_threshold, iou)
    return np.asarray(keep, dtype=int).reshape(-1)


_MIN_SIDE = 2.0  # pixels: narrower or flatter boxes are decoding artefacts, not people


def _people(xyxy: np.ndarray, confidence: np.ndarray) -> sv.Detections:
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    sizes = xyxy[:, 2:] - xyxy[:, :2]
    real = (sizes >= _MIN_SIDE).all(axis=1)
    xyxy, confidence = xyxy[real], np.asarray(confidence)[real]
    detections = sv.Detections(
        xyxy=xyxy.astype(np.float32).reshape(-1, 4),
        confidence=confidence.astype(np.float32),
        class_id=np.zeros(len(xyxy), dtype=int),
    )
    detections.data["class_name"] = np.array(["person"] * len(xyxy))
    return detections


class HogPeopleDetector:
    """OpenCV's HOG people detector (64×128 window). Modest accuracy; zero setup."""

    name = "hog (modest fallback)"

    def __init__(self, spec: DetectorSpec) -> None:
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise DetectorError("this OpenCV build has no HOG people detector (OpenCV 5 moved it; pin opencv < 5)")
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._spec = spec

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        small, back = _shrink(rgb, self._spec.detect_width)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        rects, weights = self._hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return _people(np.zeros((0, 4)), np.zeros(0))
        boxes = np.asarray(rects, dtype=float).reshape(-1, 4)
        # SVM margins (≈0–3) squashed into (0, 1) so the tracker's confidence thresholds mean something.
        confidence = 1.0 - np.exp(-np.clip(np.asarray(weights, dtype=float).reshape(-1), 0.0, None))
        xyxy = np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]) * back
        keep = _nms(xyxy, confidence, self._spec.confidence, self._spec.iou)
        return _people(xyxy[keep], confidence[keep])


class YoloOnnxDetector:
    """YOLO v5 / v8 / v11 ONNX exports, decoded with onnxruntime (letterboxed RGB input in [0, 1])."""

    def __init__(self, spec: DetectorSpec) -> None:
        import onnxruntime as ort

        assert spec.path is not None
        self._spec = spec
        try:
            self._session = ort.InferenceSession(str(spec.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise DetectorError(f"cannot load YOLO model {spec.path}: {str(exc).splitlines()[0]}") from None
        self._input, self._size = self._check_input()
        self._layout, self._classes = self._check_output()
        self._person = self._person_class()
        self.name = f"yolo-{self._layout} ({Path(spec.path).name})"

    def _person_class(self) -> int:
        """Explicit `person_class`, else `person_label` looked up in the export's class names (Ultralytics writes
        them into the metadata), else 0 (COCO)."""
        spec = self._spec
        if spec.person_class is None:
            metadata = dict(self._session.get_modelmeta().custom_metadata_map)
            names = parse_class_names(metadata, self._classes)
            if names is None:
                return 0
            if spec.person_label not in names:
                raise NoPersonClassError(
                    f"{Path(str(spec.path)).name} has no {spec.person_label!r} class (classes: "
                    f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}); a people counter needs one"
                )
            return names.index(spec.person_label)
        if spec.person_class >= self._classes:
            raise NoPersonClassError(
                f"detector.person_class={spec.person_class} but {Path(str(spec.path)).name} has only "
                f"{self._classes} classes (allowed: 0..{self._classes - 1})"
            )
        return spec.person_class

    def _check_input(self) -> tuple[str, tuple[int, int]]:
        inputs = self._session.get_inputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[1] != 3:
            raise DetectorError(
                f"{self._spec.path}: expected one image input of shape [1, 3, H, W], got "
                f"{[i.shape for i in inputs]} — is this a YOLO detection export?"
            )
        side = (self._spec.detect_width // 32) * 32
        height = shape[2] if isinstance(shape[2], int) else side
        width = shape[3] if isinstance(shape[3], int) else side
        return inputs[0].name, (int(height), int(width))

    def _check_output(self) -> tuple[str, int]:
        outputs = self._session.get_outputs()
        shape = outputs[0].shape
        if len(shape) != 3 or not all(isinstance(d, int) for d in shape[1:]):
            raise DetectorError(
                f"{self._spec.path}: expected a detection output [1, 4+classes, N] (v8/v11) or "
                f"[1, N, 5+classes] (v5), got {shape}"
            )
        rows, cols = int(shape[1]), int(shape[2])
        layout = self._spec.yolo_layout
        if layout == "auto":
            layout = "v8" if rows < cols else "v5"
        classes = rows - 4 if layout == "v8" else cols - 5
        if classes < 1:
            raise DetectorError(
                f"{self._spec.path}: output {shape} leaves no class scores for layout {layout} "
                f"(v8/v11 need [1, 4+classes, N], v5 needs [1, N, 5+classes])"
            )
        return layout, classes

    def _letterbox(self, rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
        target_h, target_w = self._size
        h, w = rgb.shape[:2]
        scale = min(target_w / w, target_h / h)
        new_w, new_h = round(w * scale), round(h * scale)
        canvas = np.full((target_h, target_w, 3), 114, dtype=np.uint8)
        pad_x, pad_y = (target_w - new_w) / 2, (target_h - new_h) / 2
        top, left = round(pad_y - 0.1), round(pad_x - 0.1)
        canvas[top : top + new_h, left : left + new_w] = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        return tensor, scale, (left, top)

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        tensor, scale, (left, top) = self._letterbox(rgb)
        raw = self._session.run(None, {self._input: tensor})[0][0]
        predictions = raw.T if self._layout == "v8" else raw  # → [N, 4 + ...]
        if self._layout == "v8":
            scores = predictions[:, 4 + self._person]
        else:
            scores = predictions[:, 4] * predictions[:, 5 + self._person]
        keep = scores >= self._spec.confidence
        boxes, scores = predictions[keep, :4], scores[keep]
        xyxy = np.column_stack(
            [
                boxes[:, 0] - boxes[:, 2] / 2,
                boxes[:, 1] - boxes[:, 3] / 2,
                boxes[:, 0] + boxes[:, 2] / 2,
                boxes[:, 1] + boxes[:, 3] / 2,
            ]
        )
        xyxy = (xyxy - np.array([left, top, left, top])) / scale
        h, w = rgb.shape[:2]
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        chosen = _nms(xyxy, scores, self._spec.confidence, self._spec.iou)
        return _people(xyxy[chosen], scores[chosen])


class VeilOnnxDetector:
    """A detector exported by Veil's trainer (`veil.vision.runtime`), keeping its `person` label only."""

    def __init__(self, spec: DetectorSpec) -> None:
        assert spec.path is not None
        try:
            from veil.vision.runtime import load_model
        except ImportError as exc:
            raise DetectorError(f"veil.vision.runtime is not available ({exc}); use kind hog or yolo") from None
        try:
            self._model = load_model(spec.path)
        except Exception as exc:  # the runtime reports bad files with its own errors
            raise DetectorError(f"cannot load Veil model {spec.path}: {str(exc).splitlines()[0]}") from None
        info = self._model.info
        if getattr(info, "task", "detect") != "detect":
            raise DetectorError(f"{spec.path} is a {info.task!r} model; edge needs a detection model")
        labels = list(getattr(info, "labels", []))
        if spec.person_label not in labels:
            raise NoPersonClassError(
                f"{spec.path} has no {spec.person_label!r} label (labels: {labels}); set detector.person_label"
            )
        self._spec = spec
        self.name = f"veil ({Path(spec.path).name})"

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        small, back = _shrink(rgb, self._spec.detect_width)
        found = self._model.detect(small, threshold=self._spec.confidence)
        if len(found) == 0:
            return _people(np.zeros((0, 4)), np.zeros(0))
        names = np.asarray(found.data.get("class_name", []))
        mask = names == self._spec.person_label
        confidence = found.confidence if found.confidence is not None else np.ones(len(found))
        return _people(np.asarray(found.xyxy)[mask] * back, np.asarray(confidence)[mask])


class YoloxPeopleDetector:
    """A YOLOX export (Nano … X, any input multiple of 32), person class only; one onnxruntime session per frame
    size, created on the first frame of that size."""

    def __init__(self, spec: DetectorSpec, threads: int = 0) -> None:
        assert spec.path is not None
        self._spec, self._threads = spec, threads
        self._file = Path(spec.path).name
        try:
            self._graph = read_model(spec.path)
            native = YoloxModel(self._graph, self._file, threads=threads)  # refuses a wrong layout
        except YoloxError as exc:
            raise DetectorError(str(exc)) from None
        self._person = self._person_class(native)
        self._models: dict[InputSize, YoloxModel] = {native.size: native}
        self.name = f"yolox ({self._file})"

    def _person_class(self, model: YoloxModel) -> int:
        if self._spec.person_class is not None:
            if self._spec.person_class >= model.num_classes:
                raise NoPersonClassError(
                    f"detector.person_class={self._spec.person_class} but {self._file} has only "
                    f"{model.num_classes} classes (allowed: 0..{model.num_classes - 1})"
                )
            return self._spec.person_class
        names = class_names_for(self._graph, model.num_classes)
        if names is None:
            raise NoPersonClassError(
                f"{self._file}: its {model.num_classes} classes have no names (no `names`/`classes` metadata, not "
                f"COCO's 80), so the person class is unknown; set detector.person_class"
            )
        if self._spec.person_label not in names:
            raise NoPersonClassError(
                f"{self._file} has no {self._spec.person_label!r} class (classes: {', '.join(names[:10])}"
                f"{', ...' if len(names) > 10 else ''}); a people counter needs one"
            )
        return names.index(self._spec.person_label)

    def model_for(self, width: int, height: int) -> YoloxModel:
        size = InputSize.covering(width, height, min(width, self._spec.detect_width))
        if size not in self._models:
            self._models[size] = YoloxModel(self._graph, self._file, size, self._threads)
        return self._models[size]

    def detect(self, rgb: np.ndarray) -> sv.Detections:
        model = self.model_for(rgb.shape[1], rgb.shape[0])
        found = model.detect(rgb, self._spec.confidence, self._spec.iou, classes=[self._person])
        return _people(found.xyxy, np.asarray(found.confidence))


def resolve(spec: DetectorSpec, data_dir: Path | None = None) -> DetectorSpec:
    """The spec with a concrete kind and file: a registered `model` looked up (in `data_dir`, default Veil's
    data directory), nothing set → the shipped YOLOX-Nano."""
    if spec.model is not None:
        if data_dir is None:
            from veil.config import get_settings

            data_dir = get_settings().data_dir
        try:
            entry = find_model(spec.model, data_dir)
        except RegistryError as exc:
            raise DetectorError(f"detector.model: {exc}") from None
        person = spec.person_class if spec.person_class is not None else entry.person_class
        return spec.model_copy(update={"model": None, "kind": entry.kind, "path": entry.path, "person_class": person})
    if spec.kind in (None, "yolox") and spec.path is None:
        default = next(m for m in shipped_models() if m.name == DEFAULT_MODEL)
        return spec.model_copy(update={"kind": "yolox", "path": default.path})
    return spec


def build_detector(spec: DetectorSpec, data_dir: Path | None = None, threads: int = 0) -> PeopleDetector:
    """`threads`: onnxruntime intra-op threads of a YOLOX detector (0: onnxruntime's default, one per core)."""
    spec = resolve(spec, data_dir)
    if spec.path is not None and not Path(spec.path).is_file():
        raise DetectorError(f"detector.path: file not found: {spec.path}")
    if spec.kind == "yolox":
        return YoloxPeopleDetector(spec, threads)
    if spec.kind == "yolo":
        return YoloOnnxDetector(spec)
    if spec.kind == "veil":
        return VeilOnnxDetector(spec)
    return HogPeopleDetector(spec)


def identify_model(path: Path, person_class: int | None = None, person_label: str = "person") -> str:
    """The kind of a detector file (`yolox`, `yolo` or `veil`) after checking that it loads and has a person
    class; `DetectorError` naming what each kind expected otherwise."""
    if not path.is_file():
        raise DetectorError(f"file not found: {path}")
    if path.read_bytes()[:2] != b"PK":  # a Veil bundle is a zip; anything else must parse as ONNX
        try:
            read_model(path)
        except YoloxError:
            raise DetectorError(f"{path.name} is not an ONNX model file") from None
    problems = []
    kinds: tuple[DetectorKind, ...] = ("yolox", "veil", "yolo")
    for kind in kinds:
        spec = DetectorSpec(kind=kind, path=path, person_class=person_class, person_label=person_label)
        try:
            build_detector(spec)
            return kind
        except NoPersonClassError:
            raise  # the right kind of file, without a person class: that is the answer
        except DetectorError as exc:
            problems.append(f"{kind}: {exc}")
    raise DetectorError(f"{path.name} is not a usable people detector — " + "; ".join(problems))
