"""Membership-inference audit: can an attacker tell, from a model's outputs, whether an image was trained on?

numpy only (no torch): training the reference models is the caller's `fit_reference` callable, so the same audit
runs on linear heads (Regular) and on fine-tuned networks (Advanced).

    report = audit(
        targets=[AuditTarget(logits, members=train_idx, non_members=held_out)],   # the iteration's model(s)
        labels=targets, multilabel=False,
        fit_reference=lambda indices, seed: logits_of_a_model_trained_on(indices),
        calibration="online",
    )
    report.verdict          # plain words; report.attacks[i].auc, .tpr_at_0_1_fpr, .tpr_at_1_fpr with 95 % CIs

Members are the images a target model trained on; non-members are the images held out from it (the iteration's
held-out split or cross-validation folds). Two attacks score every (model, image) pair, higher = "member":

- **loss threshold** (Yeom et al., CSF 2018): score = −cross-entropy of the true tag. Needs no reference model.
- **calibrated likelihood ratio** (LiRA, Carlini et al., IEEE S&P 2022): `reference_models` models are trained on
  random halves of all audited images (each image is in exactly half of them). The confidence φ = log(p/(1−p)) of
  the true tag is compared, per image, with Gaussians fitted to φ of the reference models that did ("online") or
  did not see it; variances are pooled over images, as the paper advises with few reference models. "offline"
  uses only the models that did not see the image (φ − μ_out: difficulty calibration, Watson et al., ICLR 2022),
  for when the reference models are cheaper proxies of the audited procedure.

Detectors (`audit_detection`) are scored by their per-image fit (`detection_fit`) instead of a loss: the
loss-threshold attack reads it directly, the calibrated attack reads its log-odds minus the mean under reference
detectors that did not train on the image ("offline"; the reference detectors are cheap proxies trained by
`veil.vision.detection_audit`).

AUC and TPR at 0.1 % and 1 % FPR come with 95 % bootstrap intervals (images resampled within members and within
non-members; the trained models are held fixed). With n non-members the smallest measurable FPR is 1/n: below
that, "TPR at 0.1 % FPR" is the TPR at zero false positives (`min_measurable_fpr` says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import supervision as sv

REFERENCE_MODELS = 8
BOOTSTRAP_RESAMPLES = 200
# Verdict bands on the best attack's AUC (0.5 = guessing). 0.55 is the goal for ε = 8.
NO_MEASURABLE_LEAK_AUC = 0.55
STRONG_LEAK_AUC = 0.65

FitReference = Callable[[list[int], int], np.ndarray]  # (training indices, seed) → logits (N, C) on every image


class AuditCancelled(RuntimeError):
    """`should_cancel()` turned true during the audit."""


@dataclass(frozen=True)
class AuditTarget:
    """One audited model: its logits on every audited image, and which of them it trained on."""

    logits: np.ndarray
    members: Sequence[int]
    non_members: Sequence[int]


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


@dataclass(frozen=True)
class AttackResult:
    """One attack's success, with 95 % bootstrap intervals."""

    name: str
    description: str
    auc: Interval
    tpr_at_0_1_fpr: Interval
    tpr_at_1_fpr: Interval


@dataclass
class AuditReport:
    members: int  # (model, image) pairs where the model trained on the image
    non_members: int
    min_measurable_fpr: float
    reference_models: int
    calibration: str
    attacks: list[AttackResult]
    verdict: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def best_auc(self) -> float:
        return max(attack.auc.value for attack in self.attacks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditReport:
        attacks = [
            AttackResult(
                a["name"],
                a["description"],
                Interval(**a["auc"]),
                Interval(**a["tpr_at_0_1_fpr"]),
                Interval(**a["tpr_at_1_fpr"]),
            )
            for a in data["attacks"]
        ]
        return cls(**{**data, "attacks": attacks})


# ---------------------------------------------------------------- per-image statistics


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def true_tag_confidence(logits: np.ndarray, labels: np.ndarray, multilabel: bool) -> np.ndarray:
    """φ per image: log-odds of the true tag (multiclass), or the sum over tags of the log-odds of the true
    answer (multilabel). Computed from logits so a confident model does not saturate at p = 1."""
    logits = np.asarray(logits, dtype=np.float64)
    if multilabel:
        signed = np.where(np.asarray(labels) >= 0.5, logits, -logits)
        return np.asarray(signed.sum(axis=1))
    rows = np.arange(len(logits))
    log_p = _log_softmax(logits)
    true = log_p[rows, labels]
    others = log_p.copy()
    others[rows, labels] = -np.inf
    log_rest = np.logaddexp.reduce(others, axis=1)
    return np.asarray(true - log_rest)


def true_tag_loss(logits: np.ndarray, labels: np.ndarray, multilabel: bool) -> np.ndarray:
    """Cross-entropy per image (summed binary cross-entropies for multilabel)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multilabel:
        signed = np.where(np.asarray(labels) >= 0.5, logits, -logits)
        return np.asarray(_softplus(-signed).sum(axis=1))
    return np.asarray(-_log_softmax(logits)[np.arange(len(logits)), labels])


# ---------------------------------------------------------------- ROC statistics


def auc(member_scores: np.ndarray, non_member_scores: np.ndarray) -> float:
    """Area under the ROC curve = P(member score > non-member score), ties counted half (Mann-Whitney U)."""
    scores = np.concatenate([member_scores, non_member_scores])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    m, n = len(member_scores), len(non_member_scores)
    return float((ranks[:m].sum() - m * (m + 1) / 2.0) / (m * n))


def tpr_at_fpr(member_scores: np.ndarray, non_member_scores: np.ndarray, fpr: float) -> float:
    """The largest share of members flagged by a threshold that flags at most `fpr` of the non-members."""
    allowed = int(np.floor(fpr * len(non_member_scores) + 1e-9))
    ranked = np.sort(non_member_scores)[::-1]
    # flag scores strictly above the (allowed+1)-th highest non-member score
    threshold = ranked[allowed] if allowed < len(ranked) else -np.inf
    return float(np.mean(member_scores > threshold))


def _with_bootstrap(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    members: np.ndarray,
    non_members: np.ndarray,
    rng: np.random.Generator,
    resamples: int,
) -> Interval:
    value = statistic(members, non_members)
    draws = [
        statistic(
            members[rng.integers(0, len(members), len(members))],
            non_members[rng.integers(0, len(non_members), len(non_members))],
        )
        for _ in range(resamples)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(round(value, 4), round(float(low), 4), round(float(high), 4))


def attack_result(
    name: str,
    description: str,
    member_scores: np.ndarray,
    non_member_scores: np.ndarray,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> AttackResult:
    def interval(statistic: Callable[[np.ndarray, np.ndarray], float]) -> Interval:
        rng = np.random.default_rng(seed)  # the same resamples for every statistic
        return _with_bootstrap(statistic, member_scores, non_member_scores, rng, resamples)

    return AttackResult(
        name=name,
        description=description,
        auc=interval(auc),
        tpr_at_0_1_fpr=interval(lambda m, n: tpr_at_fpr(m, n, 0.001)),
        tpr_at_1_fpr=interval(lambda m, n: tpr_at_fpr(m, n, 0.01)),
    )


# ---------------------------------------------------------------- reference models


def balanced_halves(count: int, models: int, seed: int) -> np.ndarray:
    """(models, count) boolean: model 2j trains on a random half, model 2j+1 on the rest, so each image is in
    exactly half of the reference models."""
    rng = np.random.default_rng(seed)
    inside = np.zeros((models, count), dtype=bool)
    for pair in range(0, models, 2):
        half = rng.permutation(count)[: count // 2]
        inside[pair, half] = True
        if pair + 1 < models:
            inside[pair + 1] = ~inside[pair]
    return inside


def lira_scores(
    target_confidence: np.ndarray, reference_confidence: np.ndarray, inside: np.ndarray, calibration: str
) -> np.ndarray:
    """Per image, how much more likely its target confidence is under "trained on it" than under "not"."""
    out = np.where(~inside, reference_confidence, np.nan)
    mu_out = np.nanmean(out, axis=0)
    if calibration == "offline":
        return np.asarray(target_confidence - mu_out)
    into = np.where(inside, reference_confidence, np.nan)
    mu_in = np.nanmean(into, axis=0)
    # pooled (global) variances: per-image ones are unreliable from a handful of models
    sigma_in = max(float(np.nanstd(into - mu_in)), 1e-3)
    sigma_out = max(float(np.nanstd(out - mu_out)), 1e-3)
    log_in = -0.5 * ((target_confidence - mu_in) / sigma_in) ** 2 - np.log(sigma_in)
    log_out = -0.5 * ((target_confidence - mu_out) / sigma_out) ** 2 - np.log(sigma_out)
    return np.asarray(log_in - log_out)


# ---------------------------------------------------------------- the audit


def verdict(attacks: Sequence[AttackResult], non_members: int) -> str:
    """Plain words from the strongest attack."""
    best = max(attacks, key=lambda attack: attack.auc.value)
    auc_text = f"AUC {best.auc.value:.2f}, 95 % interval {best.auc.low:.2f}–{best.auc.high:.2f}"
    tpr = best.tpr_at_1_fpr.value
    if best.auc.value > NO_MEASURABLE_LEAK_AUC and best.auc.low <= 0.5:
        # the point estimate says leakage but the interval still contains guessing: say neither
        text = (
            f"Possible leakage, not established: the {best.name} attack scores {auc_text}, an interval that "
            "still includes guessing (0.5)."
        )
    elif best.auc.value >= STRONG_LEAK_AUC:
        text = (
            f"The model leaks which images it was trained on: the {best.name} attack tells training images from "
            f"held-out ones well ({auc_text}; it finds {tpr:.0%} of training images at 1 % false alarms)."
        )
    elif best.auc.value > NO_MEASURABLE_LEAK_AUC:
        text = (
            f"Some leakage: the {best.name} attack tells training images from held-out ones better than a coin "
            f"flip ({auc_text}; {tpr:.0%} found at 1 % false alarms)."
        )
    else:
        text = (
            f"No measurable leakage: the best attack ({best.name}) does about as well as guessing ({auc_text}). "
            "An audit can show leakage but never prove its absence; differential privacy's ε is the guarantee."
        )
    if best.auc.high - best.auc.low > 0.25:
        text += f" Only {non_members} held-out images were available, so this estimate is rough."
    return text


def audit(
    targets: Sequence[AuditTarget],
    labels: np.ndarray,
    multilabel: bool,
    fit_reference: FitReference | None,
    reference_models: int = REFERENCE_MODELS,
    calibration: str = "online",
    seed: int = 0,
    on_progress: Callable[[float], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> AuditReport:
    """Attack every target on its members and non-members; see the module docstring for the two attacks."""
    if calibration not in ("online", "offline"):
        raise ValueError(f"calibration must be online or offline, got {calibration!r}")
    started = time.monotonic()
    count = len(labels)
    member_loss: list[np.ndarray] = []
    non_member_loss: list[np.ndarray] = []
    member_conf: list[tuple[AuditTarget, np.ndarray]] = []
    for target in targets:
        loss = true_tag_loss(target.logits, labels, multilabel)
        confidence = true_tag_confidence(target.logits, labels, multilabel)
        member_loss.append(-loss[list(target.members)])
        non_member_loss.append(-loss[list(target.non_members)])
        member_conf.append((target, confidence))
    members = np.concatenate(member_loss)
    non_members = np.concatenate(non_member_loss)
    attacks = [
        attack_result(
            "loss threshold",
            "flags an image as a training image when the model's loss on it is low (Yeom et al. 2018)",
            members,
            non_members,
            seed,
        )
    ]
    notes: list[str] = []
    if fit_reference is not None and reference_models >= 2:
        inside = balanced_halves(count, reference_models, seed + 1)
        reference = np.zeros((reference_models, count))
        for model in range(reference_models):
            if should_cancel and should_cancel():
                raise AuditCancelled("audit cancelled")
            chosen = [int(i) for i in np.flatnonzero(inside[model])]
            reference[model] = true_tag_confidence(fit_reference(chosen, seed + 100 + model), labels, multilabel)
            if on_progress:
                on_progress((model + 1) / reference_models)
        scored_members, scored_non_members = [], []
        for target, confidence in member_conf:
            scores = lira_scores(confidence, reference, inside, calibration)
            scored_members.append(scores[list(target.members)])
            scored_non_members.append(scores[list(target.non_members)])
        name = "LiRA" if calibration == "online" else "calibrated loss"
        description = (
            f"likelihood ratio of the image's confidence under {reference_models} reference models that did or did "
            "not train on it (Carlini et al. 2022)"
            if calibration == "online"
            else f"confidence minus its mean under the {reference_models // 2} reference models that did not train "
            "on the image (difficulty calibration, Watson et al. 2022)"
        )
        attacks.append(
            attack_result(name, description, np.concatenate(scored_members), np.concatenate(scored_non_members), seed)
        )
    else:
        notes.append("no reference models: only the loss-threshold attack was run")
    if on_progress:
        on_progress(1.0)
    return AuditReport(
        members=len(members),
        non_members=len(non_members),
        min_measurable_fpr=round(1.0 / len(non_members), 6),
        reference_models=reference_models if fit_reference is not None else 0,
        calibration=calibration,
        attacks=attacks,
        verdict=verdict(attacks, len(non_members)),
        seconds=round(time.monotonic() - started, 2),
        notes=notes,
    )


# ---------------------------------------------------------------- object detection


def detection_fit(
    true_boxes: np.ndarray,
    true_classes: Sequence[str],
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: Sequence[str],
) -> float:
    """How well a detector fits one image, in [0, 1]: the mean over its ground-truth boxes of the best
    IoU × confidence among the detections of the same tag (1: every box found exactly and surely; 0: none found).
    It plays the role of the negative loss for the loss-threshold attack: a detector fits its training images
    better than unseen ones. An image without boxes scores 1 − its highest confidence (no false alarm = fit)."""
    true_boxes = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(true_boxes) == 0:
        return float(1.0 - (scores.max() if len(scores) else 0.0))
    if len(boxes) == 0:
        return 0.0
    same = np.asarray(true_classes)[:, None] == np.asarray(classes)[None, :]
    weighted = np.where(same, sv.box_iou_batch(true_boxes, boxes) * scores[None, :], 0.0)
    return float(weighted.max(axis=1).mean())


@dataclass(frozen=True)
class ScoredTarget:
    """One audited detector: its fit (`detection_fit`) on every audited image, and which of them it trained on."""

    fit: np.ndarray
    members: Sequence[int]
    non_members: Sequence[int]


def fit_log_odds(fit: np.ndarray) -> np.ndarray:
    """φ of a detector on an image: the log-odds of its fit (`detection_fit`), clipped at 10⁻⁴ from 0 and 1 so an
    image with no detection (fit 0) gets a finite, shared floor."""
    clipped = np.clip(np.asarray(fit, dtype=np.float64), 1e-4, 1 - 1e-4)
    return np.asarray(np.log(clipped) - np.log1p(-clipped))


@dataclass(frozen=True)
class ReferenceFits:
    """The calibrated attack's reference detectors: `fit[r, i]` is detector r's fit on image i, NaN where r trained
    on i or did not score it (only the images a reference model did not train on are scored: the "offline"
    calibration reads nothing else). `seconds`: what training and scoring them cost; `description`: how they were
    trained, for the report; `cpu_seconds`: this process's CPU time over the same span (load-independent)."""

    fit: np.ndarray
    seconds: float
    description: str
    cpu_seconds: float = 0.0


def audit_detection(
    targets: Sequence[ScoredTarget],
    seed: int = 0,
    started: float | None = None,
    references: ReferenceFits | None = None,
) -> AuditReport:
    """Attack detectors with their per-image fit as the score (higher = "member"): the loss-threshold attack, and
    with `references` the calibrated one — φ = `fit_log_odds` of the target minus the mean φ of the reference
    detectors that did not train on the image ("offline" LiRA: difficulty calibration, Watson et al., ICLR 2022),
    over the images at least one reference detector scored. The reference detectors are cheap proxies of the
    audited procedure (a frozen network, a few steps), which offline calibration tolerates: it only needs them to
    find the same images hard."""
    started = time.monotonic() if started is None else started
    members = np.concatenate([t.fit[list(t.members)] for t in targets])
    non_members = np.concatenate([t.fit[list(t.non_members)] for t in targets])
    attacks = [
        attack_result(
            "loss threshold",
            "flags an image as a training image when the detector fits it well: mean over its boxes of the best "
            "IoU × confidence of a detection of the same tag (Yeom et al. 2018's loss attack for detectors)",
            members,
            non_members,
            seed,
        )
    ]
    notes: list[str] = []
    if references is not None:
        attacks.append(_calibrated_detection_attack(targets, references, seed))
        notes.append(
            f"object detection: the calibrated attack's reference detectors are {references.description}; they "
            f"cost {references.seconds:.1f} s "
            f"({references.cpu_seconds:.1f} CPU s)"
        )
    else:
        notes.append("object detection: only the loss-threshold attack was run (no reference detectors were trained)")
    return AuditReport(
        members=len(members),
        non_members=len(non_members),
        min_measurable_fpr=round(1.0 / len(non_members), 6),
        reference_models=0 if references is None else len(references.fit),
        calibration="none" if references is None else "offline",
        attacks=attacks,
        verdict=verdict(attacks, len(non_members)),
        seconds=round(time.monotonic() - started, 2),
        notes=notes,
    )


def _calibrated_detection_attack(targets: Sequence[ScoredTarget], references: ReferenceFits, seed: int) -> AttackResult:
    scored = np.isfinite(references.fit)
    outside = scored.sum(axis=0)
    # mean φ of the reference detectors that did not see the image; NaN where none scored it (not attacked)
    phi = np.where(scored, fit_log_odds(np.nan_to_num(references.fit)), 0.0)
    mu_out = np.where(outside > 0, phi.sum(axis=0) / np.maximum(outside, 1), np.nan)
    member_scores, non_member_scores = [], []
    for target in targets:
        calibrated = fit_log_odds(target.fit) - mu_out
        member_scores.append(calibrated[[i for i in target.members if outside[i] > 0]])
        non_member_scores.append(calibrated[[i for i in target.non_members if outside[i] > 0]])
    return attack_result(
        "calibrated loss",
        "the detector's fit on the image (as log-odds) minus its mean under the reference detectors that did not "
        "train on it (difficulty calibration, Watson et al. 2022; offline LiRA, Carlini et al. 2022)",
        np.concatenate(member_scores),
        np.concatenate(non_member_scores),
        seed,
    )
