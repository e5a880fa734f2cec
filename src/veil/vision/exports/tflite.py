"""TensorFlow Lite export (Azure's platform `TensorFlow`, flavor `TensorFlowLite`; Veil's `TensorFlowLiteInt8`).

Layout of Azure's TensorFlow Lite exports (Azure-Samples/customvision-export-samples
`samples/python/tensorflow_lite`): one float32 input (1, H, W, 3), NHWC, BGR, 0..255; one output — the
probabilities (1, C) of a classifier, or the detection grid NHWC (1, gh, gw, 5·(5+C)) of
`veil.vision.exports.azure_layout`.

Converter: Google's `litert-torch` (PyTorch → LiteRT/TFLite through torch.export and the LiteRT MLIR converter),
fed the Azure-layout ONNX graph as a static PyTorch module (`onnx2torch`, see `torch_graph`). Chosen over
`onnx2tf` because that one needs TensorFlow itself and pins numpy < 2, onnx 1.19, onnxruntime 1.23 and
protobuf 4 — older than Veil's; `litert-torch` needs no TensorFlow (it installs outside pip's resolver only to
skip an xdsl pin on typing-extensions; see the Makefile). int8 (`TensorFlowLiteInt8`): `ai-edge-quantizer`'s
static recipe on the converted model — int8 weights and activations, int8 input and output (read their scale and
zero point from the interpreter's details, as integer-only TFLite consumers do), calibrated on the project's own
images. (PyTorch's PT2E route keeps float32 I/O but took 400 s for a 224-px Lite0 here and wrote a float-sized
file, so it was not used.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from veil.vision.exports.azure_layout import PRIVACY_KEY, azure_layout, privacy_record, read_veil_model
from veil.vision.exports.torch_graph import to_torch
from veil.vision.runtime import ModelInfo, fit_to_input

CALIBRATION_IMAGES = 64  # enough for stable activation ranges; more only costs export time


class ChannelsLast(torch.nn.Module):
    """(1, H, W, 3) → the graph's (1, 3, H, W)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.inner(pixels.permute(0, 3, 1, 2))


def tflite_input(rgb: np.ndarray, info: ModelInfo) -> np.ndarray:
    """An RGB image → the model's input as Veil's service resizes it: (1, H, W, 3) float32 BGR 0..255."""
    fitted, _ = fit_to_input(rgb, info)
    return np.ascontiguousarray(fitted[None, ..., ::-1], dtype=np.float32)


def to_tflite(onnx_bytes: bytes, calibration: Sequence[np.ndarray] | None = None) -> bytes:
    """The .tflite bytes; int8 when `calibration` (RGB uint8 images) is given."""
    import litert_torch

    _, info = read_veil_model(onnx_bytes)
    graph = azure_layout(onnx_bytes, classifier_head="tensor", channels_last_grid=True)
    module = ChannelsLast(to_torch(graph)).eval()
    example = torch.zeros(1, info.input_height, info.input_width, 3)
    with tempfile.TemporaryDirectory(prefix="veil-tflite-") as folder:
        path = Path(folder) / "model.tflite"
        litert_torch.convert(module, (example,)).export(str(path))
        converted = path.read_bytes()
    if calibration:
        converted = _int8(converted, [tflite_input(rgb, info) for rgb in calibration[:CALIBRATION_IMAGES]])
    record = privacy_record(onnx_bytes)
    return converted if record is None else with_metadata(converted, PRIVACY_KEY, record.encode())


def with_metadata(tflite_bytes: bytes, name: str, value: bytes) -> bytes:
    """The model with one more entry in the flatbuffer's `metadata` table (name → a buffer of bytes), the slot
    TFLite keeps for such records (`Interpreter` ignores it; `read_metadata` reads it back)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    if any(buffer.offset for buffer in model.buffers or []):  # weights stored past the flatbuffer: not repacked
        raise ValueError("cannot add metadata to a TFLite model with external buffers")
    buffer = schema.BufferT()
    buffer.data = list(value)
    model.buffers = [*(model.buffers or []), buffer]
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(tflite_bytes) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(tflite_bytes: bytes) -> dict[str, bytes]:
    """The `metadata` table of a .tflite model: name → bytes."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite_bytes, 0)
    found = {}
    for index in range(model.MetadataLength()):
        entry = model.Metadata(index)
        found[entry.Name().decode()] = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return found


def _int8(float_model: bytes, samples: list[np.ndarray]) -> bytes:
    """Full-integer post-training quantization of the converted model, calibrated on `samples`."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    signature = Interpreter(model_content=float_model).get_signature_list()
    name, spec = next(iter(signature.items()))
    (input_name,) = spec["inputs"]
    quantization = quantizer.Quantizer(float_model, recipe.static_wi8_ai8())
    ranges = quantization.calibrate({name: [{input_name: sample} for sample in samples]}, num_threads=1)
    return bytes(quantization.quantize(ranges, enable_progress_report=False).quantized_model)
