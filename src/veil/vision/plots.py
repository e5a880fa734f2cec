"""PNG plots of an iteration: precision/recall curves per tag and the Advanced training curve (matplotlib, Agg)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from veil.vision.metrics import Evaluation, performance, precision_recall_curve


def _png(figure: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def pr_curve_png(evaluation: Evaluation, tag: str, overlap_threshold: float = 0.5, ap: float | None = None) -> bytes:
    """Precision/recall curve of one tag on the held-out images, titled with its AP."""
    recall, precision = precision_recall_curve(evaluation, tag, overlap_threshold)
    if ap is None:
        summary = performance(evaluation, 0.5, overlap_threshold)
        ap = next((t.average_precision for t in summary.per_tag if t.tag == tag), 0.0)
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.step(recall, precision, where="post")
    axes.set(xlim=(0, 1.02), ylim=(0, 1.05), xlabel="recall", ylabel="precision")
    scope = f"IoU ≥ {overlap_threshold:g}, " if evaluation.task == "detect" else ""
    axes.set_title(f"{tag}: AP {ap:.3f} ({scope}{evaluation.method}, {len(evaluation.images)} held-out)", fontsize=9)
    axes.grid(alpha=0.3)
    return _png(figure)


def training_curve_png(
    epochs: Sequence[int], train_loss: Sequence[float], validation: Sequence[float], metric: str
) -> bytes:
    """Training loss and the validation metric per epoch (Advanced training)."""
    figure, axes = plt.subplots(figsize=(5, 3.5))
    axes.plot(epochs, train_loss, label="training loss", color="tab:blue")
    axes.set(xlabel="epoch", ylabel="training loss")
    other = axes.twinx()
    other.plot(epochs, validation, label=f"validation {metric}", color="tab:orange")
    other.set_ylabel(f"validation {metric}")
    figure.legend(loc="upper center", ncol=2, fontsize=8)
    return _png(figure)
