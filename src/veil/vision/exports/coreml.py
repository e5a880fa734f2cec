"""Core ML export (`coremltools`): a neural-network `.mlmodel` with an image input, as Azure's Core ML exports.

Input `data`: an image (BGR, 0..255, the model's input size), which Core ML feeds from a CVPixelBuffer/PIL image
(Azure-Samples/customvision-export-samples `samples/python/coreml` passes a PIL image resized to the input).
Classifiers are Core ML classifiers: `classLabel` (the top tag) and `loss` ({tag: probability}), the outputs
Azure's Core ML classifiers had. Detectors output the grid tensor `model_outputs0` (1, 5·(5+C), gh, gw) of
`veil.vision.exports.azure_layout`. Conversion runs on Linux; prediction needs macOS, so Veil's tests check the
spec (names, types, sizes, labels, metadata) and that the PyTorch graph handed to coremltools agrees with the
ONNX export.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import coremltools as ct
import torch

from veil.vision.exports.azure_layout import (
    DETECTION_OUTPUT,
    PRIVACY_KEY,
    azure_layout,
    privacy_record,
    read_veil_model,
)
from veil.vision.exports.torch_graph import to_torch


def to_coreml(onnx_bytes: bytes) -> bytes:
    _, info = read_veil_model(onnx_bytes)
    module = to_torch(azure_layout(onnx_bytes, classifier_head="tensor"))
    example = torch.zeros(1, 3, info.input_height, info.input_width)
    traced = torch.jit.trace(module, example)
    image = ct.ImageType(name="data", shape=example.shape, color_layout=ct.colorlayout.BGR)
    classifier = ct.ClassifierConfig(list(info.labels)) if info.task != "detect" else None
    model = ct.convert(
        traced, inputs=[image], classifier_config=classifier, convert_to="neuralnetwork", minimum_deployment_target=None
    )
    spec = model.get_spec()
    if classifier is None:
        ct.utils.rename_feature(spec, spec.description.output[0].name, DETECTION_OUTPUT)
    else:
        probabilities = next(o.name for o in spec.description.output if o.name != "classLabel")
        ct.utils.rename_feature(spec, probabilities, "loss")
    spec.description.metadata.shortDescription = f"Veil {info.task} model (Azure Custom Vision export layout)"
    spec.description.metadata.author = "Veil"
    spec.description.metadata.userDefined.update({"veil.labels": ",".join(info.labels), "veil.task": info.task})
    record = privacy_record(onnx_bytes)
    if record is not None:  # ε, δ, accountant and the audit, as in the ONNX metadata
        spec.description.metadata.userDefined[PRIVACY_KEY] = record
    with tempfile.TemporaryDirectory(prefix="veil-coreml-") as folder:
        path = Path(folder) / "model.mlmodel"
        ct.models.MLModel(spec).save(str(path))
        return path.read_bytes()
