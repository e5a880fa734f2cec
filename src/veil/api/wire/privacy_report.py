"""An iteration's privacy report on the wire: what differential privacy spent and the membership-inference audit
(`GET /veil/v1/projects/{projectId}/iterations/{iterationId}/privacy`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from veil.api.wire.base import Wire

if TYPE_CHECKING:
    from veil.services.iterations import IterationPrivacy


class DifferentialPrivacyOut(Wire):
    epsilon: float  # spent, read back from the accountant
    delta: float
    target_epsilon: float
    accountant: str  # prv | rdp
    max_grad_norm: float  # per-image clipping norm C
    noise_multiplier: float  # σ: noise standard deviation σ·C
    sample_rate: float  # Poisson sampling rate q
    steps: int
    epochs: float
    images: int
    mechanism: str
    covers: str


class IntervalOut(Wire):
    value: float
    low: float  # 95 % bootstrap interval
    high: float


class AttackOut(Wire):
    name: str
    description: str
    auc: IntervalOut
    tpr_at_0_1_fpr: IntervalOut
    tpr_at_1_fpr: IntervalOut


class MembershipAuditOut(Wire):
    members: int
    non_members: int
    min_measurable_fpr: float
    reference_models: int
    calibration: str
    attacks: list[AttackOut]
    verdict: str
    seconds: float
    notes: list[str] = Field(default_factory=list)


class IterationPrivacyOut(Wire):
    iteration_id: str
    private: bool
    requested_epsilon: float | None = None
    requested_delta: float | None = None  # None with privacy=dp: auto, 1/(10·N)
    differential_privacy: DifferentialPrivacyOut | None = None
    audit: MembershipAuditOut | None = None  # None: not audited (trained with audit off, or before audits)


def iteration_privacy_out(privacy: IterationPrivacy) -> IterationPrivacyOut:
    spent, audit = privacy.report.differential_privacy, privacy.report.audit
    return IterationPrivacyOut(
        iteration_id=privacy.iteration_id,
        private=spent is not None,
        requested_epsilon=privacy.requested.epsilon if privacy.requested else None,
        requested_delta=privacy.requested.delta if privacy.requested else None,
        differential_privacy=DifferentialPrivacyOut.model_validate(spent.model_dump()) if spent else None,
        audit=MembershipAuditOut.model_validate(audit.model_dump()) if audit else None,
    )
