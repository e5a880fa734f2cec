"""Membership-inference audit: its statistics against independent implementations, and on real iterations: an
overfit non-private head (and detector) is caught, a differentially private one much less (so the audit can fail
a model)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from tests.conftest import dataset_path
from tests.vision.conftest import ants_bees

from veil.vision import membership
from veil.vision.datasets import load_dataset
from veil.vision.dp import PrivacyBudget
from veil.vision.train import TrainRequest, TrainResult, train


def test_auc_equals_mann_whitney_u_over_pairs_including_ties() -> None:
    rng = np.random.default_rng(1)
    members = np.round(rng.normal(0.4, 1, 300), 1)  # rounded: plenty of ties
    non_members = np.round(rng.normal(0.0, 1, 200), 1)
    u = mannwhitneyu(members, non_members).statistic
    assert membership.auc(members, non_members) == pytest.approx(u / (300 * 200), abs=1e-12)


def test_tpr_at_fpr_never_exceeds_the_allowed_false_alarms() -> None:
    non_members = np.arange(100, dtype=float)  # one false alarm allowed at 1 %: the threshold sits at 98
    members = np.array([98.5, 99.5, 100.5, 50.0])
    assert membership.tpr_at_fpr(members, non_members, 0.01) == 0.75
    assert membership.tpr_at_fpr(members, non_members, 0.001) == 0.5  # zero false alarms: 99.5 and 100.5
    flagged = members > 98
    assert flagged.sum() / len(members) == 0.75 and (non_members > 98).mean() <= 0.01


def test_reference_models_each_see_exactly_half_of_the_images() -> None:
    inside = membership.balanced_halves(41, 8, seed=3)
    assert inside.shape == (8, 41) and set(inside.sum(axis=0)) == {4}
    assert not (inside[0] & inside[1]).any() and (inside[0] | inside[1]).all()


def test_perfectly_separated_scores_give_auc_1_and_verdict_of_leakage() -> None:
    result = membership.attack_result("toy", "", np.linspace(5, 6, 50), np.linspace(0, 1, 50), seed=0)
    assert result.auc.value == 1.0 and result.tpr_at_1_fpr.value == 1.0
    assert "leaks" in membership.verdict([result], 50)


@pytest.fixture(scope="module")
def audited() -> dict[str, TrainResult]:
    """A tiny set (29 images per tag: 5-fold cross-validation, so every image is a non-member once) trained to
    convergence without regularization to speak of (200 L-BFGS iterations), and the same images at ε = 1."""
    samples = ants_bees("train", 29, skip=30)

    def run(privacy: PrivacyBudget | None) -> TrainResult:
        return train(TrainRequest("classify", samples, seed=11, input_size=96, privacy=privacy))

    return {"plain": run(None), "private": run(PrivacyBudget(1.0))}


def _attack(result: TrainResult, name: str) -> membership.AttackResult:
    assert result.privacy is not None and result.privacy.audit is not None
    return next(a for a in result.privacy.audit.attacks if a.name == name)


def test_audit_catches_the_overfit_non_private_head(audited: dict[str, TrainResult]) -> None:
    report = audited["plain"].privacy.audit  # type: ignore[union-attr]
    assert report is not None
    assert report.non_members == 58 and report.members == 4 * 58 and report.reference_models == 8
    lira = _attack(audited["plain"], "LiRA")
    assert lira.auc.value >= 0.75 and lira.auc.low > 0.6, lira
    assert lira.tpr_at_1_fpr.value > 0.05
    assert "leak" in report.verdict


def test_differential_privacy_lowers_what_the_audit_finds(audited: dict[str, TrainResult]) -> None:
    plain, private = _attack(audited["plain"], "LiRA"), _attack(audited["private"], "LiRA")
    assert private.auc.value <= plain.auc.value - 0.15, (plain, private)
    assert private.auc.value < 0.65
    report = audited["private"].privacy.audit  # type: ignore[union-attr]
    assert report is not None and report.seconds > 0


def test_advanced_iteration_is_audited_with_proxy_reference_models() -> None:
    samples = ants_bees("train", 20, skip=60)
    result = train(
        TrainRequest("classify", samples, advanced=True, budget_minutes=0.3, seed=2, input_size=96, backbone="lite0")
    )
    assert result.privacy is not None and result.privacy.differential_privacy is None
    report = result.privacy.audit
    assert report is not None and report.calibration == "offline" and report.reference_models == 8
    held_out = len(result.evaluation.images)
    assert report.non_members == held_out and 0 < report.members < len(samples) - held_out  # early-stop set: neither
    assert {a.name for a in report.attacks} == {"loss threshold", "calibrated loss"}
    for attack in report.attacks:
        assert attack.auc.low <= attack.auc.value <= attack.auc.high
    assert result.model_card.privacy["audit"]["verdict"] == report.verdict


def test_verdict_does_not_claim_leakage_when_the_interval_includes_guessing() -> None:
    wide = membership.AttackResult(
        "loss threshold",
        "",
        membership.Interval(0.68, 0.49, 0.84),
        membership.Interval(0.1, 0.0, 0.5),
        membership.Interval(0.1, 0.0, 0.5),
    )
    text = membership.verdict([wide], 12)
    assert text.startswith("Possible leakage, not established") and "12 held-out images" in text


@pytest.fixture(scope="module")
def overfit_detectors() -> dict[str, membership.AuditReport]:
    """Penn-Fudan: 12 members, 12 non-members (images 100–111), 128 px; the FPN + FCOS head over the frozen trunk
    trained 150 full-batch steps on the served view only (no augmentation) — deliberately overfit — and the same
    at ε = 1 (veil.vision.dp_detect). Each exported model scores every image as served; the audit reads the fit.
    4 proxy reference detectors (veil.vision.detection_audit, 20 steps each) train on random halves of those 24
    images and of 24 more (112–135) that no audited model saw: "relabelled" attacks the overfit model on those 24
    with random member labels, where no attack can do better than guessing."""
    import torch

    from veil.vision import detect, detection_audit
    from veil.vision.backbone import MEAN, STD, pretrained_backbone
    from veil.vision.dp_detect import DPDetectionSettings, train_detector_dp
    from veil.vision.export import export_onnx
    from veil.vision.runtime import ModelInfo, load_model
    from veil.vision.train import _detection_fit, _detection_item

    people = load_dataset(dataset_path("pedestrians-det") / "PennFudanPed")
    pool = people[:12] + people[100:112] + people[112:136]
    info = ModelInfo("detect", ["person"], 128, 128, "letterbox", MEAN, STD)
    items = [_detection_item(s, ["person"], 128)[0] for s in pool]
    overfit = DPDetectionSettings(views=1, batch_size=12, learning_rate=3e-3)

    def fit(budget: PrivacyBudget | None) -> np.ndarray:
        torch.manual_seed(0)
        detector = detect.build_detector(pretrained_backbone(), 1, 128)
        train_detector_dp(detector, items[:12], info, budget, 1e-3, seed=0, steps=150, settings=overfit)
        model = load_model(export_onnx(detect.DetectorExport(detector, 128), info, ["boxes", "scores"]))
        return np.array([_detection_fit(model, sample) for sample in pool])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as `train` does on a busy machine
    try:
        references = detection_audit.reference_fits(items, info, "efficientnet-lite0", range(48), steps=20, seed=5)
        plain, private = fit(None), fit(PrivacyBudget(1.0))
    finally:
        torch.set_num_threads(threads)
    relabelled = [int(i) for i in np.random.default_rng(3).permutation(np.arange(24, 48))]

    def audit(fit: np.ndarray, members: list[int], non_members: list[int]) -> membership.AuditReport:
        target = membership.ScoredTarget(fit, members, non_members)
        return membership.audit_detection([target], references=references)

    return {
        "plain": audit(plain, list(range(12)), list(range(12, 24))),
        "private": audit(private, list(range(12)), list(range(12, 24))),
        "relabelled": audit(plain, relabelled[:12], relabelled[12:]),
    }


def _attacks(report: membership.AuditReport) -> dict[str, membership.AttackResult]:
    return {attack.name: attack for attack in report.attacks}


def test_detection_audit_catches_an_overfit_detector_and_less_a_private_one(
    overfit_detectors: dict[str, membership.AuditReport],
) -> None:
    # measured: plain AUC 0.99 [0.96, 1.00]; ε = 1 0.16 [0.03, 0.35] (it learned too little to fit anything)
    plain = _attacks(overfit_detectors["plain"])["loss threshold"]
    private = _attacks(overfit_detectors["private"])["loss threshold"]
    assert plain.auc.value >= 0.85 and plain.auc.low > 0.7, plain
    assert "leak" in overfit_detectors["plain"].verdict
    assert private.auc.value <= plain.auc.value - 0.2 and private.auc.value < 0.65, (plain, private)


def test_calibrated_detection_attack_catches_the_overfit_detector_and_less_a_private_one(
    overfit_detectors: dict[str, membership.AuditReport],
) -> None:
    # measured: see the asserts' messages
    plain = _attacks(overfit_detectors["plain"])["calibrated loss"]
    private = _attacks(overfit_detectors["private"])["calibrated loss"]
    assert plain.auc.value >= 0.85 and plain.auc.low > 0.7, plain
    assert private.auc.value <= plain.auc.value - 0.2 and private.auc.value < 0.65, (plain, private)


def test_calibrated_detection_attack_guesses_on_a_random_relabelling_of_unseen_images(
    overfit_detectors: dict[str, membership.AuditReport],
) -> None:
    for attack in overfit_detectors["relabelled"].attacks:
        assert attack.auc.low <= 0.5 <= attack.auc.high, attack
    assert overfit_detectors["relabelled"].best_auc < 0.8


def test_detection_audit_reports_both_attacks_and_what_the_reference_detectors_cost(
    overfit_detectors: dict[str, membership.AuditReport],
) -> None:
    report = overfit_detectors["plain"]
    assert [a.name for a in report.attacks] == ["loss threshold", "calibrated loss"]
    assert report.reference_models == 4 and report.calibration == "offline"
    assert (report.members, report.non_members) == (12, 12)
    (note,) = report.notes
    seconds = float(note.rsplit("cost ", 1)[1].split(" s ")[0])
    assert seconds > 0 and "4 proxies" in note and "48 attacked images" in note, note
