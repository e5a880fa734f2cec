"""What Azure's published consumers of an exported ONNX model do, step by step — written here from their
documented behaviour, not copied (Azure-Samples/customvision-export-samples, `samples/python/onnx/
classification/predict.py` and `object_detection/predict.py`; docs/EXPORTS.md says why the file itself is not
vendored). If Veil's export works with this, it works with the sample:

1. open the .onnx with onnxruntime; take the one input's name, its (H, W) from shape[2:], its element type;
2. read the WinML metadata: `Image.BitmapPixelFormat == Bgr8` → feed BGR; `Image.NominalPixelRange ==
   NominalRange_0_255` → feed 0..255, otherwise divide by 255;
3. `PIL.Image.open(path).resize(shape[2:])` (PIL's default filter), to float, NCHW, run;
4. classifier: print the outputs by name (`classLabel` holds the top tag); detector: decode the one grid output
   with five fixed anchors, then greedy NMS over the top class of each box (score > 0.01, IoU > 0.45, ≤ 64).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

ANCHORS = np.array([[0.573, 0.677], [1.87, 2.06], [3.34, 5.47], [7.88, 3.53], [9.77, 9.17]])
PROB_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS = 0.01, 0.45, 64


class AzureOnnxConsumer:
    def __init__(self, model_path: Path) -> None:
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        (graph_input,) = self.session.get_inputs()
        self.input_name = graph_input.name
        self.size = tuple(graph_input.shape[2:])
        self.dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}[graph_input.type]
        self.output_names = [output.name for output in self.session.get_outputs()]
        metadata = {entry.key: entry.value for entry in onnx.load(str(model_path)).metadata_props}
        self.bgr = metadata.get("Image.BitmapPixelFormat") == "Bgr8"
        self.range_255 = metadata.get("Image.NominalPixelRange") == "NominalRange_0_255"

    def run(self, image_path: Path) -> dict[str, Any]:
        image = Image.open(image_path).resize(self.size)  # type: ignore[arg-type]
        array = np.array(image, dtype=np.float32)[np.newaxis].transpose(0, 3, 1, 2)
        if self.bgr:
            array = array[:, (2, 1, 0)]
        if not self.range_255:
            array = array / 255
        outputs = self.session.run(self.output_names, {self.input_name: array.astype(self.dtype)})
        return dict(zip(self.output_names, outputs, strict=True))

    def top_tag(self, image_path: Path) -> str:
        """The classifier's `classLabel` (what the sample prints first)."""
        return str(self.run(image_path)["classLabel"][0][0])


@dataclass(frozen=True)
class GridDetections:
    boxes: np.ndarray  # (K, 4) normalized x1, y1, x2, y2
    classes: np.ndarray  # (K,)
    scores: np.ndarray  # (K,)


def decode_grid(grid_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's grid (5·(5+C), gh, gw) → every slot's normalized box (S, 4) and class probabilities (S, C)."""
    cells = grid_nchw.transpose(1, 2, 0)
    height, width, channels = cells.shape
    cells = cells.reshape(height, width, len(ANCHORS), channels // len(ANCHORS))
    x = (cells[..., 0] + np.arange(width)[None, :, None]) / width
    y = (cells[..., 1] + np.arange(height)[:, None, None]) / height
    w = np.exp(cells[..., 2]) * ANCHORS[:, 0][None, None, :] / width
    h = np.exp(cells[..., 3]) * ANCHORS[:, 1][None, None, :] / height
    boxes = np.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), axis=-1).reshape(-1, 4)
    objectness = 1 / (1 + np.exp(-cells[..., 4:5]))
    logits = cells[..., 5:]
    softmax = np.exp(logits - logits.max(axis=3, keepdims=True))
    softmax /= softmax.sum(axis=3, keepdims=True)
    return boxes, (softmax * objectness).reshape(len(boxes), -1)


def greedy_nms(boxes: np.ndarray, class_probs: np.ndarray) -> GridDetections:
    classes = class_probs.argmax(axis=1)
    scores = class_probs[np.arange(len(classes)), classes].copy()
    keep = scores > PROB_THRESHOLD
    boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
    original = scores.copy()
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    chosen: list[int] = []
    while len(chosen) < min(MAX_DETECTIONS, len(boxes)):
        best = int(np.argmax(scores))
        if scores[best] < PROB_THRESHOLD:
            break
        chosen.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[:, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[:, 2:])
        overlap = np.prod(np.maximum(0, bottom_right - top_left), axis=1)
        iou = overlap / (areas[best] + areas - overlap)
        scores[iou > IOU_THRESHOLD] = 0
        scores[best] = 0
    index = np.array(chosen, dtype=int)
    return GridDetections(boxes[index].reshape(-1, 4), classes[index], original[index])


class AzureOnnxDetectorConsumer(AzureOnnxConsumer):
    def detect(self, image_path: Path) -> GridDetections:
        (grid,) = self.run(image_path).values()
        return greedy_nms(*decode_grid(grid[0]))
