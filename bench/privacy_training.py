"""Private training benchmark: accuracy and membership-inference leakage at ε = ∞, 8, 3, 1.

ants/bees (PyTorch's transfer-learning tutorial data), Regular classification (frozen EfficientNet-Lite2
embeddings, image + mirror; linear head: L-BFGS when ε = ∞, Opacus DP-SGD otherwise), trained on the full train
split (245 images) and on 30 images per class; accuracy on the 153 validation images. The audit attacks that
model with the training images as members and the validation images as non-members (loss threshold, and LiRA
with 8 reference models of the same procedure), exactly as `veil train` does with a fixed test set. The DP
hyperparameters were chosen by 5-fold cross-validation on the train split only; everything reported here is on
the validation split. Embeddings are computed once per set; the wall time per ε is the head's training plus the
audit (the shared embedding time is reported separately). Detection: DP is not offered (see veil.vision.dp), so no
detection row. The plot goes to docs/privacy_training.png.

    make bench BENCH=privacy-training        # or: python -m bench privacy-training
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from veil.vision import classify, membership
from veil.vision.backbone import MEAN, STD, FrozenRunner, pretrained_backbone
from veil.vision.data import Sample
from veil.vision.datasets import load_dataset
from veil.vision.dp import PrivacyBudget
from veil.vision.dp_train import LinearHead
from veil.vision.runtime import ModelInfo
from veil.vision.variants import variant_named

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
PLOT = REPO / "docs" / "privacy_training.png"
EPSILONS = (math.inf, 8.0, 3.0, 1.0)
BACKBONE = "efficientnet-lite2"
SEED = 0
console = Console(width=200)  # the table is wide; keep it whole in logs and pipes


def _ants_bees(split: str, per_class: int | None = None) -> list[Sample]:
    samples = list(load_dataset(DATASETS / "ants-bees" / split, "folders"))
    if per_class is None:
        return samples
    return [s for tag in ("ants", "bees") for s in [x for x in samples if x.labels == [tag]][:per_class]]


def _embeddings(samples: list[Sample]) -> np.ndarray:
    size = variant_named(BACKBONE).native_size
    info = ModelInfo("classify", ["ants", "bees"], size, size, "stretch", MEAN, STD)
    runner = FrozenRunner(pretrained_backbone(BACKBONE), size, size)
    return classify.embed(runner, [s.rgb for s in samples], info)


def _row(embeddings: np.ndarray, targets: np.ndarray, members: list[int], epsilon: float) -> dict[str, object]:
    non_members = list(range(len(members), len(targets)))
    budget = None if math.isinf(epsilon) else PrivacyBudget(epsilon)
    started = time.monotonic()
    head = LinearHead(embeddings, targets, False, 2, budget, SEED)
    layer = head.fit(members)
    trained = time.monotonic() - started
    accuracy = float((head.probabilities(layer, non_members).argmax(1) == targets[non_members]).mean())
    target = membership.AuditTarget(head.logits(layer), members, non_members)
    report = membership.audit([target], targets, False, head.reference_logits, seed=SEED)
    attacks = {a.name: a for a in report.attacks}
    return {
        "epsilon": epsilon,
        "spent": head.spent,
        "accuracy": accuracy,
        "loss": attacks["loss threshold"],
        "lira": attacks["LiRA"],
        "train_seconds": trained,
        "audit_seconds": report.seconds,
        "verdict": report.verdict,
    }


def _plot(results: dict[str, list[dict[str, object]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    labels = ["∞", "8", "3", "1"]
    for name, rows in results.items():
        left.plot(labels, [r["accuracy"] for r in rows], marker="o", label=name)
        lira = [r["lira"] for r in rows]
        right.errorbar(
            labels,
            [a.auc.value for a in lira],  # type: ignore[attr-defined]
            yerr=[
                [a.auc.value - a.auc.low for a in lira],  # type: ignore[attr-defined]
                [a.auc.high - a.auc.value for a in lira],  # type: ignore[attr-defined]
            ],
            marker="o",
            capsize=3,
            label=f"{name} (LiRA)",
        )
        right.plot(labels, [r["loss"].auc.value for r in rows], linestyle=":", marker="x", label=f"{name} (loss)")  # type: ignore[attr-defined]
    left.set_xlabel("ε")
    left.set_ylabel("validation accuracy")
    left.set_title("Accuracy (ants/bees val, 153 images)")
    left.legend()
    right.axhline(0.5, color="grey", linewidth=0.8)
    right.axhline(0.55, color="red", linewidth=0.8, linestyle="--", label="goal at ε = 8")
    right.set_xlabel("ε")
    right.set_ylabel("attack AUC (95 % bootstrap CI)")
    right.set_title("Membership inference: train vs val")
    right.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(PLOT, dpi=110)


def main() -> None:
    validation = _ants_bees("val")
    results: dict[str, list[dict[str, object]]] = {}
    table = Table(title="Private training · ants/bees · Regular (Lite2 embeddings) · metrics on val")
    for column in (
        "train set",
        "ε target",
        "ε spent (δ)",
        "σ · q · steps",
        "val accuracy",
        "loss AUC",
        "LiRA AUC [95 % CI]",
        "LiRA TPR@0.1%FPR",
        "LiRA TPR@1%FPR",
        "train s",
        "audit s",
    ):
        table.add_column(column, justify="left" if column == "train set" else "right")
    for name, per_class in (("full (245)", None), ("30 per class", 30)):
        training = _ants_bees("train", per_class)
        started = time.monotonic()
        embeddings = _embeddings(training + validation)
        embed_seconds = time.monotonic() - started
        console.print(f"{name}: embedded {len(training)} + {len(validation)} images in {embed_seconds:.0f} s")
        targets = np.array([0 if s.labels == ["ants"] else 1 for s in training + validation])
        members = list(range(len(training)))
        rows = []
        for epsilon in EPSILONS:
            row = _row(embeddings, targets, members, epsilon)
            rows.append(row)
            spent = row["spent"]
            lira, loss = row["lira"], row["loss"]
            table.add_row(
                name,
                "∞" if math.isinf(epsilon) else f"{epsilon:g}",
                f"{spent.epsilon:.2f} ({spent.delta:.0e})" if spent else "—",  # type: ignore[attr-defined]
                f"{spent.noise_multiplier:.2f} · {spent.sample_rate:.2f} · {spent.steps}" if spent else "—",  # type: ignore[attr-defined]
                f"{row['accuracy']:.3f}",
                f"{loss.auc.value:.3f}",  # type: ignore[attr-defined]
                str(lira.auc),
                f"{lira.tpr_at_0_1_fpr.value:.3f}",  # type: ignore[attr-defined]
                f"{lira.tpr_at_1_fpr.value:.3f}",  # type: ignore[attr-defined]
                f"{row['train_seconds']:.1f}",
                f"{row['audit_seconds']:.1f}",
            )
            console.print(f"  ε = {epsilon:g}: {row['verdict']}", highlight=False)
        results[name] = rows
    console.print(table)
    console.print(
        "detection: not benchmarked — DP is not offered for detection (per-image gradients are not defined by "
        "the detection loss; see veil.vision.dp.UNSUPPORTED)"
    )
    _plot(results)
    console.print(f"plot: {PLOT.relative_to(REPO)}")
