"""Typed views of the JSON a row keeps: an iteration's status names and what training recorded on it.

>>> record = IterationRecord.of(iteration)      # never `iteration.metrics["..."]`
>>> record.tag_ids_by_name(), record.evaluation_method, record.backbone
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from veil.store.models import Iteration

TRAINING, COMPLETED, FAILED = "Training", "Completed", "Failed"


class LabelRecord(BaseModel):
    """A label of a trained model, in the model's output order, with the tag it came from."""

    id: str = ""
    name: str
    type: str = "Regular"  # or "Negative"


class PrivacyRequestRecord(BaseModel):
    """The differential-privacy budget a train call asked for (`privacy=dp&epsilon=8&delta=auto`)."""

    model_config = ConfigDict(extra="allow")

    epsilon: float
    delta: float | None = None  # None: auto, 1/(10·N)


class PrivacySpentRecord(BaseModel):
    """What a differentially private training spent and how (`veil.vision.dp.PrivacySpent`)."""

    model_config = ConfigDict(extra="allow")

    epsilon: float  # spent, read back from the accountant (≤ target_epsilon)
    delta: float
    target_epsilon: float
    accountant: str  # prv | rdp
    max_grad_norm: float  # per-image clipping norm C
    noise_multiplier: float  # σ: the noise's standard deviation is σ·C
    sample_rate: float  # Poisson sampling rate q
    steps: int
    epochs: float
    images: int
    mechanism: str
    covers: str = ""


class IntervalRecord(BaseModel):
    value: float
    low: float  # 95 % bootstrap interval
    high: float


class AttackRecord(BaseModel):
    name: str
    description: str
    auc: IntervalRecord
    tpr_at_0_1_fpr: IntervalRecord
    tpr_at_1_fpr: IntervalRecord


class MembershipAuditRecord(BaseModel):
    """The membership-inference audit of an iteration (`veil.vision.membership.AuditReport`)."""

    model_config = ConfigDict(extra="allow")

    members: int
    non_members: int
    min_measurable_fpr: float
    reference_models: int
    calibration: str
    attacks: list[AttackRecord]
    verdict: str
    seconds: float
    notes: list[str] = Field(default_factory=list)


class PrivacyRecord(BaseModel):
    """An iteration's privacy: what DP spent (None: not private) and the audit (None: not audited)."""

    model_config = ConfigDict(extra="allow")

    differential_privacy: PrivacySpentRecord | None = None
    audit: MembershipAuditRecord | None = None


class IterationRecord(BaseModel):
    """What Veil records on an iteration (the `iterations.metrics` JSON column), typed: what it was trained on,
    how it was measured, which network and budget, and the sealed artifacts it owns besides its model."""

    # Keys written by other Veil versions are kept as they are.
    model_config = ConfigDict(extra="allow")

    fingerprint: str | None = None  # of images, labels and options: "training not needed" when unchanged
    images: int = 0
    backbone: str | None = None  # the network asked for (None: the task's default)
    budget_minutes: float | None = None  # the training budget the job ran with (None: the engine's default)
    labels: list[LabelRecord] = Field(default_factory=list)
    evaluation_method: str = ""
    evaluation_blob_id: str | None = None
    pr_curve_blob_ids: dict[str, str] = Field(default_factory=dict)
    training_curve_blob_id: str | None = None
    model_card: dict[str, Any] = Field(default_factory=dict)
    prediction_resource_id: str | None = None  # Azure's publish target, echoed back
    privacy_request: PrivacyRequestRecord | None = None  # the differential-privacy budget asked for (None: not private)
    privacy: PrivacyRecord | None = None  # what training spent and the membership-inference audit
    images_forgotten: int = 0  # training images shredded after training (policy forget_images_after_training)

    @classmethod
    def of(cls, iteration: Iteration) -> IterationRecord:
        return cls.model_validate(iteration.metrics or {})

    def save_to(self, iteration: Iteration) -> None:
        iteration.metrics = self.model_dump(mode="json")

    def tag_ids_by_name(self) -> dict[str, str]:
        return {label.name: label.id for label in self.labels}

    def tag_types_by_name(self) -> dict[str, str]:
        return {label.name: label.type for label in self.labels}

    def artifact_blob_ids(self) -> list[str]:
        """The sealed blobs besides the model: held-out evaluation, PR curves, training curve."""
        ids = [self.evaluation_blob_id, *self.pr_curve_blob_ids.values(), self.training_curve_blob_id]
        return [blob_id for blob_id in ids if blob_id]
