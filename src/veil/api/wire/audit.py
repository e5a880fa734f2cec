"""The audit log (`/veil/v1/audit`)."""

from __future__ import annotations

from datetime import datetime

from veil.api.wire.base import Wire
from veil.security.audit import VerifyReport
from veil.store import models


class AuditEventOut(Wire):
    seq: int
    at: datetime
    key_id: str | None
    role: str | None
    action: str
    resource_ids: list[str]
    outcome: str
    hash: str


class AuditVerifyOut(Wire):
    ok: bool
    events: int
    broken_at: int | None
    reason: str
    head: str | None = None  # "seq:hash" of the last event: keep it outside Veil, verify against it later


def audit_event_out(event: models.AuditEvent) -> AuditEventOut:
    return AuditEventOut.model_validate(event, from_attributes=True)


def audit_verify_out(report: VerifyReport) -> AuditVerifyOut:
    return AuditVerifyOut(
        ok=report.ok,
        events=report.events,
        broken_at=report.broken_at,
        reason=report.reason,
        head=str(report.head) if report.head else None,
    )
