"""OpenVINO IR export: loads in the OpenVINO runtime and agrees with the service within 1e-4 (float32 IR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.vision.export_helpers import azure_input, held_out_ants_bees, held_out_people, service_rgb, unzip

from veil.vision.exports import export_model
from veil.vision.runtime import load_model

ov = pytest.importorskip("openvino", reason="OpenVINO export needs the `openvino` package (make install)")


def _compiled(folder: Path):  # type: ignore[no-untyped-def]
    core = ov.Core()
    return core.compile_model(
        core.read_model(folder / "model.xml", folder / "model.bin"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )


def _rgb01(model_input: np.ndarray) -> np.ndarray:
    """Azure's OpenVINO input (its samples: RGB, 0..1, NCHW) from the BGR 0..255 helper."""
    return np.ascontiguousarray(model_input[:, ::-1] / 255.0, dtype=np.float32)


def test_openvino_classifier_agrees_with_the_service_within_1e_4(export_classifier: bytes, tmp_path: Path) -> None:
    folder = unzip(export_model(export_classifier, "OpenVino").data, tmp_path)
    assert {p.name for p in folder.iterdir()} == {"model.xml", "model.bin", "labels.txt", "cvexport.manifest"}
    compiled = _compiled(folder)
    assert (compiled.input(0).any_name, list(compiled.input(0).shape)) == ("data", [1, 3, 224, 224])
    service = load_model(export_classifier)
    worst = 0.0
    for path in held_out_ants_bees(per_class=10):
        rgb = service_rgb(path)
        expected = service.probabilities([rgb])[0]
        got = compiled(_rgb01(azure_input(service, rgb)))[0][0]
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst < 1e-4, worst


def test_openvino_detector_grid_agrees_with_the_onnx_export_within_1e_4(export_detector: bytes, tmp_path: Path) -> None:
    import onnxruntime as ort

    folder = unzip(export_model(export_detector, "OpenVino").data, tmp_path / "ov")
    onnx_folder = unzip(export_model(export_detector, "ONNX").data, tmp_path / "onnx")
    session = ort.InferenceSession(str(onnx_folder / "model.onnx"), providers=["CPUExecutionProvider"])
    compiled = _compiled(folder)
    service = load_model(export_detector)
    worst = 0.0
    for path in held_out_people(5):
        rgb = service_rgb(path)
        bgr = azure_input(service, rgb)
        (expected,) = session.run(None, {"data": bgr})
        got = compiled(_rgb01(bgr))[0]
        scores_expected = 1 / (1 + np.exp(-expected[:, 4 :: 5 + len(service.info.labels)]))
        scores_got = 1 / (1 + np.exp(-got[:, 4 :: 5 + len(service.info.labels)]))
        worst = max(worst, float(np.abs(scores_got - scores_expected).max()))
    assert worst < 1e-4, worst
