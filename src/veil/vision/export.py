"""ONNX export and the Veil model bundle.

`export_onnx(module, info)` (imports torch lazily) writes the network — and for detectors the box decoding — as
an ONNX graph, opset 17, with a dynamic batch axis and Veil's preprocessing recorded in `metadata_props`
(see `veil.vision.runtime` for the keys). `make_bundle(onnx_bytes, card)` zips `model.onnx`, `labels.txt`,
`model_card.json` and `model_card.md`; `veil.vision.runtime.load_model` reads either form.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import onnx

from veil.vision.runtime import ModelInfo

if TYPE_CHECKING:
    import torch

OPSET = 17


@dataclass
class ModelCard:
    """What a model is, what it was trained on, how it was measured, when. Serialized into the bundle."""

    name: str
    task: str
    labels: list[str]
    created_at: str
    veil_version: str
    image_counts: dict[str, int]
    total_images: int
    evaluation_method: str
    metrics: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    privacy: dict[str, Any] = field(default_factory=dict)  # veil.vision.dp.PrivacyReport.to_dict()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    def to_markdown(self) -> str:
        lines = [
            f"# {self.name}",
            "",
            f"- Task: {self.task}",
            f"- Created: {self.created_at} (Veil {self.veil_version})",
            f"- Images: {self.total_images}",
            f"- Evaluation: {self.evaluation_method} (metrics from images the model did not train on)",
            "",
            "## Images per tag",
            "",
            "| tag | images |",
            "|---|---|",
            *[f"| {tag} | {count} |" for tag, count in sorted(self.image_counts.items())],
            "",
            "## Metrics",
            "",
            "| metric | value |",
            "|---|---|",
            *[f"| {key} | {_format(value)} |" for key, value in self.metrics.items() if not isinstance(value, dict)],
            "",
            "## Training settings",
            "",
            *[f"- {key}: {value}" for key, value in sorted(self.training.items())],
            "",
            "## Preprocessing",
            "",
            *[f"- {key}: {value}" for key, value in sorted(self.preprocessing.items())],
            "",
            *_privacy_markdown(self.privacy),
        ]
        return "\n".join(lines)


def _privacy_markdown(privacy: dict[str, Any]) -> list[str]:
    """The card's privacy section: ε and how it was spent, then the membership-inference audit."""
    if not privacy:
        return []
    lines = ["## Privacy", ""]
    spent = privacy.get("differential_privacy")
    if spent:
        lines += [
            f"- Differential privacy: ε = {spent['epsilon']:.3g}, δ = {spent['delta']:.1e} "
            f"({spent['accountant'].upper()} accountant; target ε {spent['target_epsilon']:g})",
            f"- Mechanism: {spent['mechanism']}",
            f"- Clipping norm {spent['max_grad_norm']:g}, noise multiplier {spent['noise_multiplier']:.4g}, "
            f"sampling rate {spent['sample_rate']:.4g}, {spent['steps']} steps ({spent['epochs']:g} epochs)",
            f"- ε covers: {spent['covers']}",
        ]
    else:
        lines.append("- Differential privacy: not used (ε = ∞)")
    audit = privacy.get("audit")
    if audit:
        lines += [
            "",
            f"### Membership-inference audit ({audit['members']} member / {audit['non_members']} non-member "
            f"pairs, {audit['seconds']:g} s)",
            "",
            audit["verdict"],
            "",
            "| attack | AUC [95 % CI] | TPR @ 0.1 % FPR | TPR @ 1 % FPR |",
            "|---|---|---|---|",
            *[
                f"| {a['name']} | {_interval(a['auc'])} | {_interval(a['tpr_at_0_1_fpr'])} | "
                f"{_interval(a['tpr_at_1_fpr'])} |"
                for a in audit["attacks"]
            ],
            "",
            f"The smallest measurable FPR with {audit['non_members']} non-members is "
            f"{audit['min_measurable_fpr']:.2%}.",
            *[f"\nNote: {note}" for note in audit.get("notes", [])],
        ]
    return [*lines, ""]


def _interval(value: dict[str, float]) -> str:
    return f"{value['value']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def export_onnx(module: torch.nn.Module, info: ModelInfo, output_names: list[str]) -> bytes:
    """Trace `module` (input: normalized float32 (N, 3, H, W)) to ONNX bytes carrying `info` as metadata."""
    import torch

    module = module.eval()
    example = torch.zeros(1, 3, info.input_height, info.input_width)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            buffer,  # type: ignore[arg-type]  # writes to any binary file object
            input_names=["image"],
            output_names=output_names,
            dynamic_axes={"image": {0: "batch"}, **{name: {0: "batch"} for name in output_names}},
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load_from_string(buffer.getvalue())
    for key, value in info.to_metadata().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.doc_string = f"Veil {info.task} model; labels: {', '.join(info.labels)}"
    return bytes(model.SerializeToString())


def add_metadata(onnx_bytes: bytes, entries: dict[str, str]) -> bytes:
    """The same graph with more `metadata_props` (e.g. "veil.privacy", known only after training)."""
    model = onnx.load_from_string(onnx_bytes)
    for key, value in entries.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return bytes(model.SerializeToString())


def make_bundle(onnx_bytes: bytes, card: ModelCard) -> bytes:
    """The Veil zip bundle: model.onnx, labels.txt, model_card.json, model_card.md."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("model.onnx", onnx_bytes)
        bundle.writestr("labels.txt", "\n".join(card.labels) + "\n")
        bundle.writestr("model_card.json", card.to_json())
        bundle.writestr("model_card.md", card.to_markdown())
    return buffer.getvalue()
