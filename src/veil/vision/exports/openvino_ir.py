"""OpenVINO IR (model.xml + model.bin) from a Veil model, with the `openvino` package's own ONNX converter.

Input follows Azure's OpenVINO samples (Azure-Samples/customvision-export-samples `samples/python/openvino`):
`data` (1, 3, H, W) RGB in 0..1 (a static shape: the samples read H, W from it); outputs as the ONNX tensor
layout (probabilities (1, C), or the detection grid).
Weights stay float32 (`compress_to_fp16=False`): OpenVINO's default halves them, which costs agreement. On CPUs
with bf16 units (AMX, AVX512-BF16) the CPU plugin also *computes* in bf16 unless compiled with
`INFERENCE_PRECISION_HINT=f32` (measured 1.7e-2 off the service without it, < 1e-4 with it; docs/EXPORTS.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import openvino as ov

from veil.vision.exports.azure_layout import azure_layout, privacy_record, read_veil_model


def to_openvino(onnx_bytes: bytes) -> tuple[bytes, bytes]:
    """(model.xml, model.bin) bytes."""
    graph = azure_layout(onnx_bytes, pixels="rgb01", classifier_head="tensor")
    _, info = read_veil_model(onnx_bytes)
    with tempfile.TemporaryDirectory(prefix="veil-openvino-") as folder:
        source = Path(folder) / "model.onnx"
        source.write_bytes(graph.SerializeToString())
        model = ov.convert_model(source)
        model.reshape([1, 3, info.input_height, info.input_width])
        record = privacy_record(onnx_bytes)
        if record is not None:  # the ONNX metadata's privacy record, in the IR's <rt_info> (Model.get_rt_info)
            model.set_rt_info(record, ["veil", "privacy"])
        target = Path(folder) / "model.xml"
        ov.save_model(model, target, compress_to_fp16=False)
        return target.read_bytes(), target.with_suffix(".bin").read_bytes()
