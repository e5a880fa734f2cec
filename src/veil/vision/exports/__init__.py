"""Exports of a trained Veil model in the formats Azure Custom Vision exported, built from the stored ONNX.

    from veil.vision.exports import export_model, available_formats
    artifact = export_model(onnx_bytes, "ONNX")                       # Azure layout: model.onnx + labels.txt
    artifact = export_model(onnx_bytes, "TensorFlow", "TensorFlowLite")
    artifact.filename, artifact.data                                  # "model-onnx.zip", zip bytes

The formats (Azure's platform/flavor names, Veil's own flavors, which converter each needs) are the torch- and
onnx-free table of `veil.vision.export_formats`, re-exported here. Formats and layouts: docs/EXPORTS.md.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from veil.vision.export_formats import (
    FORMATS,
    ExportFormat,
    UnsupportedExport,
    archive_name,
    available_formats,
    exportable_platforms,
    find_format,
)
from veil.vision.exports.azure_layout import azure_layout, read_veil_model
from veil.vision.runtime import ModelInfo

CLASSIFICATION, DETECTION = "Classification", "ObjectDetection"
__all__ = [
    "FORMATS",
    "ExportArtifact",
    "ExportFormat",
    "ExportOptions",
    "UnsupportedExport",
    "available_formats",
    "export_model",
    "exportable_platforms",
    "find_format",
]


@dataclass(frozen=True)
class ExportArtifact:
    filename: str
    data: bytes
    format: ExportFormat


def domain_type(info: ModelInfo) -> str:
    return DETECTION if info.task == "detect" else CLASSIFICATION


def manifest(info: ModelInfo, fmt: ExportFormat, model_file: str, version: str = "") -> str:
    """`cvexport.manifest`, the JSON file Azure's export zips carried (consumers read `DomainType` from it)."""
    return json.dumps(
        {
            "DomainType": domain_type(info),
            "Platform": fmt.platform,
            "Flavor": fmt.flavor or "",
            "ModelFileName": model_file,
            "LabelFileName": "labels.txt",
            "ExportedDate": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ExporterVersion": f"veil {version}".strip(),
        },
        indent=2,
    )


def zip_files(files: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def labels_text(info: ModelInfo) -> str:
    return "\n".join(info.labels) + "\n"


@dataclass(frozen=True)
class ExportOptions:
    calibration: Sequence[np.ndarray] = ()  # RGB uint8 images (the project's own), for int8 quantization
    tag_ids: dict[str, str] | None = None  # tag name → id, for answers that carry tag ids (Docker)


def _onnx(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    model = azure_layout(onnx_bytes, float16=fmt.flavor == "OnnxFloat16")
    return {
        "model.onnx": model.SerializeToString(),
        "labels.txt": labels_text(info),
        "cvexport.manifest": manifest(info, fmt, "model.onnx", info.version),
    }


def _veil(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    return {"model.onnx": onnx_bytes, "labels.txt": labels_text(info)}


def _openvino(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    from veil.vision.exports.openvino_ir import to_openvino

    xml, weights = to_openvino(onnx_bytes)
    return {
        "model.xml": xml,
        "model.bin": weights,
        "labels.txt": labels_text(info),
        "cvexport.manifest": manifest(info, fmt, "model.xml", info.version),
    }


def _tflite(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    from veil.vision.exports.tflite import to_tflite

    int8 = fmt.flavor == "TensorFlowLiteInt8"
    if int8 and not options.calibration:
        raise UnsupportedExport("int8 TensorFlow Lite needs calibration images (the project's own)")
    model = to_tflite(onnx_bytes, options.calibration if int8 else None)
    return {
        "model.tflite": model,
        "labels.txt": labels_text(info),
        "cvexport.manifest": manifest(info, fmt, "model.tflite", info.version),
    }


def _coreml(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    from veil.vision.exports.coreml import to_coreml

    return {
        "model.mlmodel": to_coreml(onnx_bytes),
        "labels.txt": labels_text(info),
        "cvexport.manifest": manifest(info, fmt, "model.mlmodel", info.version),
    }


def _docker(onnx_bytes: bytes, info: ModelInfo, fmt: ExportFormat, options: ExportOptions) -> dict[str, bytes | str]:
    from veil.vision.exports.docker_context import build_context

    return build_context(onnx_bytes, info, options.tag_ids)


Builder = Callable[[bytes, ModelInfo, ExportFormat, ExportOptions], dict[str, bytes | str]]
_BUILDERS: dict[str, Builder] = {
    "ONNX": _onnx,
    "ONNX/OnnxFloat16": _onnx,
    "ONNX/Veil": _veil,
    "OpenVino": _openvino,
    "TensorFlow/TensorFlowLite": _tflite,
    "TensorFlow/TensorFlowLiteInt8": _tflite,
    "CoreML": _coreml,
    "DockerFile/Linux": _docker,
}


def export_model(
    onnx_bytes: bytes,
    platform: str,
    flavor: str | None = None,
    *,
    options: ExportOptions | None = None,
    extra_files: dict[str, bytes | str] | None = None,
) -> ExportArtifact:
    """Convert a Veil ONNX model to `platform`/`flavor` and zip it. Raises `UnsupportedExport`, `ModelLoadError`.

    `extra_files` are added to the zip (e.g. the model card).
    """
    _, info = read_veil_model(onnx_bytes)
    fmt = find_format(platform, flavor, info.task)
    files = _BUILDERS[fmt.key](onnx_bytes, info, fmt, options or ExportOptions())
    files.update(extra_files or {})
    return ExportArtifact(f"model-{archive_name(fmt)}", zip_files(files), fmt)
