"""Core ML export: spec and metadata checks only (prediction needs macOS); the PyTorch graph handed to
coremltools agrees with the ONNX export within 1e-4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tests.vision.export_helpers import azure_input, held_out_ants_bees, service_rgb, unzip

from veil.vision.exports import export_model
from veil.vision.runtime import load_model

ct = pytest.importorskip("coremltools", reason="Core ML export needs coremltools (make install)")


def test_coreml_classifier_has_a_bgr_image_input_and_azures_classifier_outputs(
    export_classifier: bytes, tmp_path: Path
) -> None:
    folder = unzip(export_model(export_classifier, "CoreML").data, tmp_path)
    spec = ct.utils.load_spec(str(folder / "model.mlmodel"))
    (image,) = spec.description.input
    kind = image.type.imageType
    assert (image.name, kind.width, kind.height) == ("data", 224, 224)
    assert kind.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.BGR
    assert {output.name for output in spec.description.output} == {"classLabel", "loss"}
    assert spec.description.predictedFeatureName == "classLabel"
    assert list(spec.neuralNetworkClassifier.stringClassLabels.vector) == ["ants", "bees"]
    assert spec.description.metadata.userDefined["veil.task"] == "classify"


def test_coreml_detector_outputs_azures_grid(export_detector: bytes, tmp_path: Path) -> None:
    folder = unzip(export_model(export_detector, "CoreML").data, tmp_path)
    spec = ct.utils.load_spec(str(folder / "model.mlmodel"))
    assert [o.name for o in spec.description.output] == ["model_outputs0"]
    assert spec.description.input[0].type.imageType.width == 256


def test_the_graph_given_to_coremltools_agrees_with_the_service_within_1e_4(export_classifier: bytes) -> None:
    import torch

    from veil.vision.exports.azure_layout import azure_layout
    from veil.vision.exports.torch_graph import to_torch

    module = to_torch(azure_layout(export_classifier, classifier_head="tensor"))
    service = load_model(export_classifier)
    worst = 0.0
    for path in held_out_ants_bees(per_class=5):
        rgb = service_rgb(path)
        with torch.no_grad():
            got = module(torch.from_numpy(azure_input(service, rgb))).numpy()[0]
        worst = max(worst, float(np.abs(got - service.probabilities([rgb])[0]).max()))
    assert worst < 1e-4, worst
