"""The export formats Veil builds, by Azure's names — the one table the API, the domains, the CLI and the portal
read. Light on purpose (no onnx, no torch): the API validates a request and lists `exportableTo` without loading
a converter; `veil.vision.exports` does the converting.

    >>> find_format("ONNX").key, find_format("tensorflow", "TensorFlowLite", task="classify").key
    ('ONNX', 'TensorFlow/TensorFlowLite')

Each format is a (platform, flavor) pair with Azure's names (`ExportPlatform` and `ExportFlavor` of Custom
Vision's Training API 3.3, plus 3.3's `OnnxFloat16`) and Veil's own flavors (`Veil`: the native graph
`veil predict` and the edge pipeline load; `TensorFlowLiteInt8`). A format is offered only where its converter is
installed, so `exportableTo` tells the truth on every installation. Formats and layouts: docs/EXPORTS.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache

TASKS = ("classify", "multilabel", "detect")
CLASSIFIERS = ("classify", "multilabel")
_TASK_NAMES = {"classify": "classification", "multilabel": "classification", "detect": "object detection"}


class UnsupportedExport(ValueError):
    """The platform/flavor is unknown, does not fit the model's task, or its converter is not installed."""


@dataclass(frozen=True)
class ExportFormat:
    platform: str
    flavor: str | None
    title: str
    needs: tuple[str, ...] = ()  # importable modules the conversion needs (an optional install)
    tasks: tuple[str, ...] = TASKS

    @property
    def key(self) -> str:
        return f"{self.platform}/{self.flavor}" if self.flavor else self.platform

    def installed(self) -> bool:
        return all(_importable(module) for module in self.needs)


@cache
def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


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
        tasks=CLASSIFIERS,
    ),
    ExportFormat(
        "TensorFlow",
        "TensorFlowLiteInt8",
        "TensorFlow Lite int8",
        needs=("litert_torch", "onnx2torch", "ai_edge_quantizer"),
        tasks=CLASSIFIERS,
    ),
    ExportFormat("CoreML", None, "Core ML", needs=("coremltools", "onnx2torch")),
    ExportFormat("DockerFile", "Linux", "Docker build context (Linux)"),
)

# Azure's names that mean one of the formats above: ONNX10/ONNX12 asked for Azure's ONNX (Veil writes opset 17,
# which every onnxruntime since 1.12 and Windows ML since Windows 11 runs); DockerFile without a flavor is Linux.
ALIASES: dict[tuple[str, str], tuple[str, str]] = {
    ("onnx", "onnx10"): ("onnx", ""),
    ("onnx", "onnx12"): ("onnx", ""),
    ("dockerfile", ""): ("dockerfile", "linux"),
}

# What Azure exported and Veil does not build, with the reason a user reads (the request is refused).
NOT_BUILT: dict[tuple[str, ...], str] = {
    ("tensorflow", ""): "TensorFlow's frozen graph (flavor TensorFlowNormal) is not built; "
    "ask for flavor TensorFlowLite (classifiers), or platform ONNX or OpenVino",
    ("tensorflow", "tensorflownormal"): "TensorFlow's frozen graph (flavor TensorFlowNormal) is not built; "
    "ask for flavor TensorFlowLite (classifiers), or platform ONNX or OpenVino",
    ("dockerfile", "windows"): "the Windows container is not built; flavor Linux's context is the one Veil makes",
    ("dockerfile", "arm"): "the ARM (Raspberry Pi) container is not built or tested; flavor Linux is",
    ("vaidk",): "the Vision AI Dev Kit (VAIDK) is retired and not built; ask for ONNX or OpenVino",
}


def _canonical(platform: str, flavor: str | None) -> tuple[str, str]:
    wanted = (platform.strip().lower(), (flavor or "").strip().lower())
    return ALIASES.get(wanted, wanted)


def available_formats(task: str | None = None) -> list[ExportFormat]:
    """The formats this installation can produce for a model of `task` (any task when None). Every domain and
    backbone exports alike: Veil's networks are all graphs of portable operators."""
    return [fmt for fmt in FORMATS if fmt.installed() and (task is None or task in fmt.tasks)]


def exportable_platforms(task: str | None = None) -> list[str]:
    """Azure platform names (`exportableTo`, `exportablePlatforms`) this installation can produce for `task`."""
    return list(dict.fromkeys(fmt.platform for fmt in available_formats(task)))


def find_format(platform: str, flavor: str | None = None, task: str | None = None) -> ExportFormat:
    """The format for Azure's `platform`/`flavor` names (case-insensitive); raises `UnsupportedExport` with the
    reason (unknown, not built by Veil, not for this task, converter not installed)."""
    wanted = _canonical(platform, flavor)
    reason = NOT_BUILT.get(wanted) or NOT_BUILT.get(wanted[:1])
    if reason:
        raise UnsupportedExport(reason)
    for fmt in FORMATS:
        if (fmt.platform.lower(), (fmt.flavor or "").lower()) == wanted:
            if not fmt.installed():
                raise UnsupportedExport(
                    f"{fmt.title} needs {', '.join(fmt.needs)}, not installed here; install Veil with `make install`"
                )
            if task is not None and task not in fmt.tasks:
                kinds = " and ".join(dict.fromkeys(_TASK_NAMES[t] for t in fmt.tasks))
                raise UnsupportedExport(
                    f"{fmt.title} export is available for {kinds} models only, not {_TASK_NAMES.get(task, task)}"
                )
            return fmt
    offered = ", ".join(fmt.key for fmt in FORMATS)
    raise UnsupportedExport(f"unknown export platform/flavor {platform!r}/{flavor!r}; Veil exports {offered}")


def archive_name(fmt: ExportFormat) -> str:
    """The download's file name suffix, e.g. `tensorflow-tensorflowlite.zip`."""
    return f"{fmt.key.lower().replace('/', '-')}.zip"
