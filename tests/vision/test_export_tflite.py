"""TensorFlow Lite export in the LiteRT interpreter (`ai-edge-litert`): float32 agrees with the service within
1e-4. The int8 flavor's cost (size, top tag and probabilities on ants/bees `val`) is measured by
`make bench BENCH=exports`: its quantization took 91 s in the suite under load and the float32 test already
covers the format's conversion and layout (docs/EXPORTS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.vision.export_helpers import held_out_ants_bees, service_rgb, unzip

from veil.vision.exports import UnsupportedExport, export_model
from veil.vision.runtime import load_model

pytest.importorskip("litert_torch", reason="TensorFlow Lite export needs litert-torch (make install)")
from ai_edge_litert.interpreter import Interpreter

from veil.vision.exports.tflite import tflite_input


def _interpreter(folder: Path) -> Interpreter:
    interpreter = Interpreter(model_path=str(folder / "model.tflite"))
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter: Interpreter, pixels: np.ndarray) -> np.ndarray:
    (given,), (answer,) = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(given["index"], pixels)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(answer["index"])[0])


def test_float32_tflite_has_azures_nhwc_input_and_agrees_within_1e_4(export_classifier: bytes, tmp_path: Path) -> None:
    folder = unzip(export_model(export_classifier, "TensorFlow", "TensorFlowLite").data, tmp_path)
    interpreter = _interpreter(folder)
    (given,) = interpreter.get_input_details()
    assert list(given["shape"]) == [1, 224, 224, 3] and given["dtype"] == np.float32
    service = load_model(export_classifier)
    worst = 0.0
    for path in held_out_ants_bees(per_class=15):
        rgb = service_rgb(path)
        got = _run(interpreter, tflite_input(rgb, service.info))
        worst = max(worst, float(np.abs(got - service.probabilities([rgb])[0]).max()))
    assert worst < 1e-4, worst


def test_tflite_refuses_detectors_with_the_reason(export_detector: bytes) -> None:
    with pytest.raises(UnsupportedExport, match="classification models only, not object detection"):
        export_model(export_detector, "TensorFlow", "TensorFlowLite")


def test_formats_on_offer_say_which_tasks_they_serve() -> None:
    from veil.vision.exports import available_formats, exportable_platforms

    assert "TensorFlow/TensorFlowLite" in {fmt.key for fmt in available_formats("classify")}
    assert "TensorFlow/TensorFlowLite" not in {fmt.key for fmt in available_formats("detect")}
    assert set(exportable_platforms("detect")) == {"ONNX", "OpenVino", "CoreML", "DockerFile"}
