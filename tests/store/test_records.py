"""The typed views of an iteration's JSON column: the privacy report is typed fields, not a loose dict, and a row
written as JSON reads back into them (the same keys the training job writes)."""

from __future__ import annotations

import numpy as np

from veil.store.models import Iteration
from veil.store.records import IterationRecord, PrivacyRecord, PrivacyRequestRecord
from veil.vision.dp import PrivacyReport, PrivacySpent
from veil.vision.membership import AuditTarget, audit


def _report() -> PrivacyReport:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 2))
    labels = rng.integers(0, 2, 40)
    report = audit([AuditTarget(logits, list(range(20)), list(range(20, 40)))], labels, False, None)
    spent = PrivacySpent(7.98, 1e-3, 8.0, "prv", 1.0, 1.6, 1.0, 10, 10.0, 40, "DP-SGD")
    return PrivacyReport(spent, report)


def test_privacy_report_is_stored_as_typed_fields_and_reads_back() -> None:
    report = _report()
    iteration = Iteration(id="i", project_id="p", name="Iteration 1")
    IterationRecord(
        privacy_request=PrivacyRequestRecord(epsilon=8.0), privacy=PrivacyRecord.model_validate(report.to_dict())
    ).save_to(iteration)
    stored = IterationRecord.of(iteration)
    assert stored.privacy_request is not None and stored.privacy_request.epsilon == 8.0
    assert stored.privacy_request.delta is None  # auto
    assert stored.privacy is not None and stored.privacy.differential_privacy is not None
    spent = stored.privacy.differential_privacy
    assert (spent.epsilon, spent.noise_multiplier, spent.sample_rate, spent.steps) == (7.98, 1.6, 1.0, 10)
    assert stored.privacy.audit is not None and stored.privacy.audit.attacks[0].name == "loss threshold"
    assert stored.privacy.audit.attacks[0].auc.value == report.audit.attacks[0].auc.value  # type: ignore[union-attr]
    # the JSON column holds exactly what the engine's report serialises to
    assert iteration.metrics["privacy"] == report.to_dict()  # type: ignore[index]


def test_non_private_unaudited_iteration_has_empty_privacy_fields() -> None:
    iteration = Iteration(id="i", project_id="p", name="Iteration 1")
    IterationRecord(privacy=PrivacyRecord()).save_to(iteration)
    stored = IterationRecord.of(iteration)
    assert stored.privacy_request is None
    assert stored.privacy is not None and stored.privacy.differential_privacy is None and stored.privacy.audit is None
