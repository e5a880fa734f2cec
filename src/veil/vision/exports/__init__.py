"""Exports of a trained Veil model in the formats Azure Custom Vision exported, built from the stored ONNX.

    from veil.vision.exports import export_model, available_formats
    artifact = export_model(onnx_bytes, "ONNX")                       # Azure layout: model.onnx + labels.txt
    artifact = export_model(onnx_bytes, "TensorFlow", "TensorFlowLite")
    artifact.filename, artifact.data                                  # "model-onnx.zip", zip bytes

Each format is a (platform, flavor) pair with Azure's names (`ExportPlatform`/flavors of Custom Vision's
Training API 3.3) plus Veil's own flavors (`Veil`: the native graph `veil predict` and the edge pipeline load;
`TensorFlowLiteInt8`). A format is offered only where its converter is installed (`available_formats`), so
`exportableTo` can tell the truth on every installation. Formats and layouts: docs/EXPORTS.md.
"""

from __future__ import annotations

import importlib.util
import io
import json
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from veil.vision.exports.azure_layout import azure_layout, read_veil_model
from veil.vision.runtime import ModelInfo

CLASSIFICATION, DETECTION = "Classification", "ObjectDetection"


class UnsupportedExport(ValueError):
    """The platform/flavor is unknown, does not fit the model's task, or its converter is not installed."""


@dataclass(frozen=True)
class ExportFormat:
    platform: str
    flavor: str | None
    title: str
    needs: tuple[str, ...] = ()  # importable modules the conversion needs (an optional install)
    tasks: tuple[str, ...] = ("classify", "multilabel", "detect")

    @property
    def key(self) -> str:
        return f"{self.platform}/{self.flavor}" if self.flavor else self.platform

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.needs)


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("ONNX", None, "ONNX, Azure's compact-domain layout"),
    ExportFormat("ONNX", "OnnxFloat16", "ONNX float16, Azure's layout"),
    ExportFormat("ONNX", "Veil", "ONNX, Veil's native graph (veil predict, edge)"),
    ExportFormat("OpenVino", None, "OpenVINO IR", needs=("openvino",)),
    # TensorFlow Lite: classifiers only for now — onnx2torch's Slice reads its bounds at run time, which
    # torch.export (under litert-torch) cannot trace in the detector's graph (docs/EXPORTS.md).
    ExportFormat(
        "TensorFlow",
        "TensorFlowLite",
        "TensorFlow Lite float32",
        needs=("litert_torch", "onnx2torch"),
        tasks=("classify", "multilabel"),
    ),
    ExportFormat(
        "TensorFlow",
        "TensorFlowLiteInt8",
        "TensorFlow Lite int8",
        needs=("litert_torch", "onnx2torch", "ai_edge_quantizer"),
        tasks=("classify", "multilabel"),
    ),
    ExportFormat("CoreML", None, "Core ML", needs=("coremltools", "onnx2torch")),
    ExportFormat("DockerFile", "Linux", "Docker build context (Linux)"),
)


@dataclass(frozen=True)
class ExportArtifact:
    filename: str
    data: bytes
    format: ExportFormat


def available_formats(task: str | None = None) -> list[ExportFormat]:
    """The formats this installation can produce for a model of `task` (any task when None). Every domain and
    backbone exports alike: Veil's networks are all EfficientNet-Lite graphs made of portable operators."""
    return [fmt for fmt in FORMATS if fmt.installed() and (task is None or task in fmt.tasks)]


def exportable_platforms(task: str | None = None) -> list[str]:
    """Azure platform names (`exportableTo`, `exportablePlatforms`) this installation can produce for `task`."""
    return list(dict.fromkeys(fmt.platform for fmt in available_formats(task)))


def find_format(platform: str, flavor: str | None = None, task: str | None = None) -> ExportFormat:
    """The format for Azure's `platform`/`flavor` names (case-insensitive); raises `UnsupportedExport`."""
    wanted = (platform.lower(), (flavor or "").lower())
    if wanted == ("dockerfile", ""):
        wanted = ("dockerfile", "linux")
    for fmt in FORMATS:
        if (fmt.platform.lower(), (fmt.flavor or "").lower()) == wanted:
            if not fmt.installed():
                raise UnsupportedExport(
                    f"{fmt.title} needs {', '.join(fmt.needs)}, not installed here; install Veil with `make install`"
                )
            if task is not None and task not in fmt.tasks:
                raise UnsupportedExport(f"{fmt.title} export is available for {' and '.join(fmt.tasks)} models only")
            return fmt
    offered = ", ".join(fmt.key for fmt in FORMATS)
    raise UnsupportedExport(f"unknown export platform/flavor {platform!r}/{flavor!r}; Veil exports {offered}")


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
    name = fmt.key.lower().replace("/", "-")
    return ExportArtifact(f"model-{name}.zip", zip_files(files), fmt)
