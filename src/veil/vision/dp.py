"""Differential privacy: the budget a user asks for, what a run spent, and Opacus' accountants. Torch-free, so the
API and CLI validate a request before any training process starts; the training code is `veil.vision.dp_train`.

    budget = PrivacyBudget(epsilon=8.0)                     # δ: None = auto, 1/(10·N) for N training images
    budget.validate(task="classify", advanced=False, images=244)   # PrivacyInputError: one line, before training
    spent = epsilon_spent("prv", noise_multiplier=1.1, sample_rate=0.25, steps=240, delta=4e-4)

The mechanism is DP-SGD (Abadi et al., CCS 2016) as Opacus implements it (Yousefpour et al. 2021): Poisson
sampling of images with rate q, each image's gradient clipped to L2 norm C, Gaussian noise N(0, σ²C²) added to the
sum. The privacy unit is one image. σ is calibrated by Opacus (`get_noise_multiplier`) so that the whole run spends
at most the requested (ε, δ) under the chosen accountant — PRV (Gopi et al., NeurIPS 2021; the default, tightest)
or RDP (Mironov 2017) — and the spent ε is read back from that accountant after training.

What ε covers: the weights that are delivered and exported. The ImageNet backbone is public, so its frozen
embeddings cost no privacy. The held-out metrics come from extra models trained the same way on part of the
images (and the audit's reference models too); they stay inside the project, visible only to keys that can read
the images themselves, and are not covered by ε. Advanced classification trains the same DP head on the
Advanced network's embeddings (`veil.vision.dp_train.fine_tune_dp`; DP fine-tuning of its last stage was measured
worse, see `DPFineTuneSettings`). Detection with the EfficientNet-Lite FCOS detector (the default) trains its
feature pyramid and head by DP-SGD with a per-image loss, the trunk frozen (`veil.vision.dp_detect`); with
yolox-nano asked for, only its three 1×1 class and three 1×1 objectness convolutions train by DP-SGD, the class
rows from a COCO class row chosen by report-noisy-max, everything else COCO-pretrained and frozen
(`veil.vision.dp_yolox`; far better with tens of images on COCO-like objects, weaker on plates, useless on small
faces whose boxes the frozen network misses: docs/BENCHMARKS.md). Every iteration,
private or not, is audited for membership.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

from veil.vision.membership import AuditReport

ACCOUNTANTS = ("prv", "rdp")
DEFAULT_ACCOUNTANT = "prv"
DEFAULT_CLIP = 1.0


class PrivacyInputError(ValueError):
    """A privacy request that cannot be honoured (bad ε or δ, or DP on a task without it); one line."""


@dataclass(frozen=True)
class PrivacyBudget:
    """What the user asks for: ε (> 0, finite) and δ (None: auto = 1/(10·N), below 1/N as DP requires)."""

    epsilon: float
    delta: float | None = None
    accountant: str = DEFAULT_ACCOUNTANT
    max_grad_norm: float = DEFAULT_CLIP

    def delta_for(self, images: int) -> float:
        if self.delta is not None:
            return self.delta
        return float(f"{1.0 / (10 * max(images, 1)):.1g}")

    def validate(self, task: str, advanced: bool, images: int | None = None, backbone: str | None = None) -> None:
        """Raise `PrivacyInputError` naming what is wrong and what to do (`backbone`: the one asked for, if any;
        every detection backbone trains privately today: FCOS by `veil.vision.dp_detect`, yolox-nano by
        `veil.vision.dp_yolox`)."""
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise PrivacyInputError(f"epsilon must be a positive number, got {self.epsilon:g}")
        if self.delta is not None and not (0 < self.delta < 1):
            raise PrivacyInputError(f"delta must be between 0 and 1 (exclusive), got {self.delta:g}; or use auto")
        if images and self.delta is not None and self.delta >= 1 / images:
            raise PrivacyInputError(
                f"delta {self.delta:g} is not below 1/N = 1/{images}: such a δ allows leaking an image outright; "
                "use a smaller delta or auto"
            )
        if self.accountant not in ACCOUNTANTS:
            raise PrivacyInputError(f"unknown accountant {self.accountant!r}; use {' or '.join(ACCOUNTANTS)}")
        if not self.max_grad_norm > 0:
            raise PrivacyInputError(f"the clipping norm must be positive, got {self.max_grad_norm:g}")


@dataclass(frozen=True)
class PrivacySpent:
    """What a DP run spent and how: recorded on the iteration, the model card and the ONNX metadata."""

    epsilon: float  # spent, read back from the accountant (≤ target_epsilon)
    delta: float
    target_epsilon: float
    accountant: str
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: float
    images: int
    mechanism: str
    covers: str = "the delivered model's weights (per image; the held-out metrics' extra models are not covered)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def opacus_version() -> str:
    import opacus

    return str(opacus.__version__)


def spent_by_dp_sgd(
    accountant_history: list[tuple[float, float, int]],
    budget: PrivacyBudget,
    delta: float,
    noise_multiplier: float,
    images: int,
    mechanism: str,
    extra_epsilon: float = 0.0,
) -> PrivacySpent:
    """What a DP-SGD run spent, read back from its Opacus accountant's history (one (σ, q) pair, counted once per
    optimizer step taken). `mechanism` says what was trained; `extra_epsilon` is a share spent outside DP-SGD and
    composed with it (dp_yolox's private choice of starting rows)."""
    ((recorded_sigma, recorded_rate, recorded_steps),) = accountant_history
    spent = epsilon_spent(budget.accountant, recorded_sigma, recorded_rate, recorded_steps, delta)
    return PrivacySpent(
        epsilon=round(float(spent) + extra_epsilon, 4),
        delta=delta,
        target_epsilon=budget.epsilon,
        accountant=budget.accountant,
        max_grad_norm=budget.max_grad_norm,
        noise_multiplier=round(noise_multiplier, 5),
        sample_rate=round(recorded_rate, 6),
        steps=recorded_steps,
        epochs=round(recorded_steps * recorded_rate, 2),
        images=images,
        mechanism=f"DP-SGD, per-image clipping, Poisson sampling (Opacus {opacus_version()}) {mechanism}",
    )


def noise_multiplier_for(budget: PrivacyBudget, delta: float, sample_rate: float, steps: int) -> float:
    """σ for which `steps` steps at rate `sample_rate` spend at most (ε, δ) (Opacus' binary search)."""
    return _noise_multiplier(budget.epsilon, delta, round(sample_rate, 9), steps, budget.accountant)


@functools.lru_cache(maxsize=64)
def _noise_multiplier(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    # cached: the PRV search takes seconds, and the folds and the audit's reference models share one setting
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        # PRV's log(1 − q) at q = 1 is handled but warns; so does the RDP bound PRV uses to size its domain
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        return float(
            get_noise_multiplier(
                target_epsilon=epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
                epsilon_tolerance=0.005,
            )
        )


@functools.lru_cache(maxsize=64)
def epsilon_spent(accountant: str, noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε after `steps` steps of the subsampled Gaussian mechanism, from Opacus' accountant."""
    from opacus.accountants import create_accountant

    counter = create_accountant(mechanism=accountant)
    counter.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(counter.get_epsilon(delta=delta))


@dataclass
class PrivacyReport:
    """An iteration's privacy: what DP spent (None: not trained privately) and the membership-inference audit
    (None: not audited: trained with the audit off)."""

    differential_privacy: PrivacySpent | None
    audit: AuditReport | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "differential_privacy": self.differential_privacy.to_dict() if self.differential_privacy else None,
            "audit": self.audit.to_dict() if self.audit else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyReport:
        spent, audit = data.get("differential_privacy"), data.get("audit")
        return cls(PrivacySpent(**spent) if spent else None, AuditReport.from_dict(audit) if audit else None)

    def summary(self) -> dict[str, Any]:
        """The short form kept in ONNX metadata: ε, δ, mechanism settings and the audit's headline numbers."""
        summary: dict[str, Any] = {
            "differential_privacy": self.differential_privacy.to_dict() if self.differential_privacy else None
        }
        if self.audit:
            summary["membership_audit"] = {
                "verdict": self.audit.verdict,
                **{a.name: {"auc": a.auc.value, "tpr_at_0.1%_fpr": a.tpr_at_0_1_fpr.value} for a in self.audit.attacks},
            }
        return summary
