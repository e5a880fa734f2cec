"""Targets other than faces: a Veil-format detector ONNX (the export contract of `veil.vision.runtime`) hides
exactly the classes asked for, and a detector that cannot serve the targets is refused in one line.

The ONNX here is a fixture of the export format (metadata + boxes/scores outputs) that reports the real
ground-truth plate of an OpenALPR photo: it tests Veil's plumbing around any detector, not a detector's skill.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from tests.conftest import dataset_path
from tests.privacy.conftest import read_rgb, run_veil

SIZE = 320  # the fixture's input side (stretch resize, as Veil's exports declare in their metadata)


def _plate_photo() -> tuple[Path, tuple[int, int, int, int]]:
    folder = dataset_path("plates-det") / "eu"
    name, x, y, w, h, _text = (folder / "eu1.txt").read_text().strip().split("\t")[:6]
    return folder / name, (int(x), int(y), int(x) + int(w), int(y) + int(h))


def _detector_onnx(path: Path, image_size: tuple[int, int], plate: tuple[int, int, int, int]) -> None:
    """A 'detector' answering one plate (score 0.9) and one car around it (0.8), in input pixels."""
    width, height = image_size
    sx, sy = SIZE / width, SIZE / height
    x1, y1, x2, y2 = plate
    plate_box = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
    car_box = [max(0, x1 - 150) * sx, max(0, y1 - 200) * sy, min(width, x2 + 150) * sx, min(height, y2 + 60) * sy]
    boxes = helper.make_tensor("boxes_value", TensorProto.FLOAT, [1, 2, 4], plate_box + car_box)
    scores = helper.make_tensor("scores_value", TensorProto.FLOAT, [1, 2, 2], [0.9, 0.0, 0.0, 0.8])
    graph = helper.make_graph(
        [
            helper.make_node("Constant", [], ["boxes"], value=boxes),
            helper.make_node("Constant", [], ["scores"], value=scores),
        ],
        "fixture",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 2, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 2]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    meta = {
        "veil.task": "detect",
        "veil.labels": json.dumps(["plate", "car"]),
        "veil.input_width": str(SIZE),
        "veil.input_height": str(SIZE),
        "veil.mean": "[0, 0, 0]",
        "veil.std": "[1, 1, 1]",
        "veil.default_threshold": "0.5",
    }
    helper.set_model_props(model, meta)
    onnx.save(model, path)


def test_plate_hidden_car_kept_when_only_plates_are_asked(tmp_path: Path) -> None:
    photo, plate = _plate_photo()
    original = read_rgb(photo)
    model = tmp_path / "plates.onnx"
    _detector_onnx(model, (original.shape[1], original.shape[0]), plate)
    out = tmp_path / "clean.png"
    result = run_veil("anonymize", photo, "-o", out, "--targets", "plate", "--detector", model, "--boxes")
    assert result.returncode == 0, result.stderr
    clean = read_rgb(out)
    x1, y1, x2, y2 = plate
    assert clean[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].max() == 0, "the plate must be solid black"
    outside = np.ones(original.shape[:2], dtype=bool)
    outside[max(0, y1 - 30) : y2 + 30, max(0, x1 - 70) : x2 + 70] = False
    assert np.array_equal(clean[outside], original[outside]), "the car (not asked for) must be untouched"


def test_detector_without_the_target_class_is_refused(tmp_path: Path) -> None:
    photo, plate = _plate_photo()
    original = read_rgb(photo)
    model = tmp_path / "plates.onnx"
    _detector_onnx(model, (original.shape[1], original.shape[0]), plate)
    result = run_veil("anonymize", photo, "-o", tmp_path / "x.jpg", "--targets", "people", "--detector", model)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {model} does not detect people; its classes are: plate, car"
    assert not (tmp_path / "x.jpg").exists()
