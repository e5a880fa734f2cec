"""Veil's YOLOX decoding (torch-free): grid cells and strides, objectness × class score, the top-left letterbox,
the declared shapes rewritten for other input sizes without touching the weights, wrong layouts refused — and the
shipped YOLOX-Nano finding the pedestrians of a real MOT17 frame at several input sizes."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import supervision as sv
from onnx import TensorProto, helper
from tests.conftest import dataset_path

from veil.vision.yolox_runtime import (
    InputSize,
    YoloxError,
    YoloxModel,
    check_layout,
    decode,
    read_model,
    with_input_size,
)

NANO = Path(__file__).resolve().parents[2] / "src" / "veil" / "edge" / "models" / "yolox_nano.onnx"


def _row_index(size: InputSize, stride: int, x: int, y: int) -> int:
    """YOLOX's output order, written out independently: all stride-8 cells row by row, then 16, then 32."""
    before = {8: 0, 16: (size.height // 8) * (size.width // 8)}
    before[32] = before[16] + (size.height // 16) * (size.width // 16)
    return before[stride] + y * (size.width // stride) + x


def test_decode_puts_a_box_on_its_grid_cell_with_its_stride() -> None:
    size = InputSize(64, 96)
    raw = np.zeros((size.cells, 5 + 2), np.float32)
    row = _row_index(size, 16, x=2, y=1)
    raw[row, :4] = [0.5, 0.25, math.log(2.0), math.log(4.0)]  # offset in cells, log of size in strides
    raw[row, 4:] = [0.8, 0.5, 0.9]  # objectness, class 0, class 1
    boxes, scores = decode(raw, size)
    centre_x, centre_y, w, h = (2 + 0.5) * 16, (1 + 0.25) * 16, 2 * 16, 4 * 16
    np.testing.assert_allclose(boxes[row], [centre_x - w / 2, centre_y - h / 2, centre_x + w / 2, centre_y + h / 2])
    np.testing.assert_allclose(scores[row], [0.8 * 0.5, 0.8 * 0.9], rtol=1e-6)
    assert np.count_nonzero(scores) == 2


def _constant_yolox(path: Path, raw: np.ndarray, size: InputSize, channels: int = 3) -> Path:
    """A graph with YOLOX's declared input/output whose output is `raw` (0 × mean(image) keeps the input wired):
    the decoding is what is under test."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, channels, size.height, size.width])
    output = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, *raw.shape])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output"]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("raw", TensorProto.FLOAT, [1, *raw.shape], raw.flatten().tolist()),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "yolox", [image], [output], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_detect_maps_boxes_back_through_the_top_left_letterbox_and_keeps_asked_classes(tmp_path: Path) -> None:
    size = InputSize(64, 96)
    raw = np.zeros((size.cells, 7), np.float32)
    person, car = _row_index(size, 8, x=4, y=2), _row_index(size, 32, x=1, y=0)
    raw[person] = [0.5, 0.5, math.log(2), math.log(4), 0.9, 0.8, 0.1]  # (36, 20) 16×32 in input pixels
    raw[car] = [0.5, 0.5, 0, 0, 0.95, 0.05, 0.9]
    model = YoloxModel.load(_constant_yolox(tmp_path / "y.onnx", raw, size))
    # A 192×96 frame fits the 96×64 input at scale 0.5, top-left: input pixels × 2 are frame pixels.
    found = model.detect(np.zeros((96, 192, 3), np.uint8), threshold=0.5, classes=[0])
    assert len(found) == 1 and found.class_id.tolist() == [0]
    np.testing.assert_allclose(found.xyxy[0], [2 * 28, 2 * 4, 2 * 44, 2 * 36], atol=1e-4)
    assert found.confidence[0] == pytest.approx(0.9 * 0.8)
    both = model.detect(np.zeros((96, 192, 3), np.uint8), threshold=0.5)
    assert sorted(both.class_id.tolist()) == [0, 1]


def test_input_tensor_is_bgr_0_255_at_the_top_left_padded_with_114() -> None:
    model = YoloxModel.load(NANO, (64, 96))
    rgb = np.zeros((32, 96, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    tensor, placement = model.tensor(rgb)
    assert tensor.shape == (1, 3, 64, 96) and placement.scale == 1.0
    assert tensor[0, 2, 0, 0] == 200 and tensor[0, 0, 0, 0] == 0  # BGR: red is the last channel
    assert (tensor[0, :, 32:, :] == 114).all()  # padding below the frame, none above


def test_any_multiple_of_32_rewrites_only_the_declared_shapes() -> None:
    original = read_model(NANO)
    resized = with_input_size(original, InputSize(384, 640))
    assert check_layout(resized, "resized") == (InputSize(384, 640), 80)
    assert [d.dim_value for d in resized.graph.output[0].type.tensor_type.shape.dim] == [
        1,
        80 * 48 + 40 * 24 + 20 * 12,
        85,
    ]
    assert [i.SerializeToString() for i in resized.graph.initializer] == [
        i.SerializeToString() for i in original.graph.initializer
    ]
    with pytest.raises(YoloxError, match="multiples of 32"):
        InputSize(380, 640)


def test_wrong_layouts_are_refused_saying_what_was_expected(tmp_path: Path) -> None:
    size = InputSize(64, 96)
    v8_like = np.zeros((84, size.cells), np.float32)  # YOLOv8's [1, 4 + classes, N]
    with pytest.raises(YoloxError, match=r"expected a YOLOX output \[1, 126, 5 \+ classes\]"):
        YoloxModel.load(_constant_yolox(tmp_path / "v8.onnx", v8_like, size))
    grey = np.zeros((size.cells, 85), np.float32)
    with pytest.raises(YoloxError, match=r"expected a YOLOX image input \[1, 3, H, W\]"):
        YoloxModel.load(_constant_yolox(tmp_path / "grey.onnx", grey, size, channels=1))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(YoloxError, match="not an ONNX file"):
        YoloxModel.load(tmp_path / "junk.onnx")


def _visible_pedestrians(sequence: str, frame: int) -> np.ndarray:
    gt = np.loadtxt(dataset_path("people-video") / "train" / sequence / "gt" / "gt.txt", delimiter=",")
    rows = gt[(gt[:, 0] == frame) & (gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] >= 0.5)]
    return np.column_stack([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]])


@pytest.mark.parametrize(("size", "minimum_recall"), [((416, 416), 0.3), ((544, 960), 0.7), ((736, 1280), 0.7)])
def test_the_shipped_nano_finds_street_pedestrians_at_several_input_sizes(
    size: tuple[int, int], minimum_recall: float
) -> None:
    """MOT17-04 frame 1 (1920×1080, 20+ visible pedestrians). Recall grows with the input size (small people);
    a broken decoder (wrong grid order, stride, letterbox or channel order) finds almost nobody at any size."""
    path = dataset_path("people-video") / "train" / "MOT17-04-FRCNN" / "img1" / "000001.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    truth = _visible_pedestrians("MOT17-04-FRCNN", 1)
    found = YoloxModel.load(NANO, size).detect(rgb, threshold=0.3, classes=[0])
    assert set(found.data["class_name"]) <= {"person"}
    matched = (sv.box_iou_batch(truth, found.xyxy) >= 0.5).any(axis=1)
    assert len(truth) >= 20
    assert matched.mean() >= minimum_recall, f"recall {matched.mean():.2f} at {size}"
