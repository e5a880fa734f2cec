"""Every exported model file carries the privacy record training wrote into the Veil ONNX (`veil.privacy`: ε, δ,
accountant, σ, q, steps and the audit's headline), each in its format's own metadata slot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.vision.conftest import ants_bees
from tests.vision.export_helpers import unzip

from veil.vision.dp import PrivacyBudget
from veil.vision.export_formats import find_format
from veil.vision.exports import UnsupportedExport, export_model
from veil.vision.exports.azure_layout import privacy_record


@pytest.fixture(scope="module")
def private_classifier() -> bytes:
    """A Lite0 classifier trained with ε = 8 on 12 ants/bees images at 64 px (seconds)."""
    from veil.vision.train import TrainRequest, train

    request = TrainRequest(
        "classify",
        ants_bees("train", 6, skip=80),
        seed=3,
        backbone="efficientnet-lite0",
        input_size=64,
        privacy=PrivacyBudget(8.0),
    )
    return train(request).onnx


def _installed(platform: str, flavor: str | None = None) -> None:
    try:
        find_format(platform, flavor, "classify")
    except UnsupportedExport as missing:
        pytest.skip(str(missing))


def _dp(record: str) -> dict[str, object]:
    spent = json.loads(record)["differential_privacy"]
    assert spent is not None
    return dict(spent)


def test_the_onnx_record_holds_the_spent_budget(private_classifier: bytes) -> None:
    record = privacy_record(private_classifier)
    assert record is not None
    spent = _dp(record)
    assert 7.9 <= float(spent["epsilon"]) <= 8.0 and spent["accountant"] == "prv" and float(spent["delta"]) < 1 / 12  # type: ignore[arg-type]
    assert json.loads(record)["membership_audit"]["verdict"]


def test_core_ml_user_metadata_carries_the_privacy_record(private_classifier: bytes, tmp_path: Path) -> None:
    _installed("CoreML")
    import coremltools as ct

    folder = unzip(export_model(private_classifier, "CoreML").data, tmp_path)
    spec = ct.utils.load_spec(str(folder / "model.mlmodel"))
    assert spec.description.metadata.userDefined["veil.privacy"] == privacy_record(private_classifier)


def test_openvino_rt_info_carries_the_privacy_record(private_classifier: bytes, tmp_path: Path) -> None:
    _installed("OpenVino")
    import openvino as ov

    folder = unzip(export_model(private_classifier, "OpenVino").data, tmp_path)
    model = ov.Core().read_model(folder / "model.xml")
    assert model.get_rt_info(["veil", "privacy"]).astype(str) == privacy_record(private_classifier)


def test_tflite_metadata_carries_the_privacy_record_and_the_model_still_runs(
    private_classifier: bytes, tmp_path: Path
) -> None:
    _installed("TensorFlow", "TensorFlowLite")
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from veil.vision.exports.tflite import read_metadata

    folder = unzip(export_model(private_classifier, "TensorFlow", "TensorFlowLite").data, tmp_path)
    data = (folder / "model.tflite").read_bytes()
    assert read_metadata(data)["veil.privacy"].decode() == privacy_record(private_classifier)
    interpreter = Interpreter(model_content=data)  # the repacked flatbuffer still loads and runs
    interpreter.allocate_tensors()
    (given,) = interpreter.get_input_details()
    interpreter.set_tensor(given["index"], np.zeros(given["shape"], dtype=np.float32))
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    assert interpreter.get_tensor(output["index"]).sum() == pytest.approx(1.0, abs=1e-4)
