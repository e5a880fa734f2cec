"""The audit log: events after a sequence number, and a verification of the hash chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from veil.api.deps import Ctx, VeilKey
from veil.api.wire.audit import AuditEventOut, AuditVerifyOut, audit_event_out, audit_verify_out
from veil.security import audit
from veil.security.auth import Permission as P
from veil.security.auth import Principal

router = APIRouter()


@router.get("/audit", response_model=list[AuditEventOut])
def list_audit_events(
    ctx: Ctx,
    _: Annotated[Principal, VeilKey(P.audit_read)],
    afterSeq: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> list[AuditEventOut]:
    with ctx.db.read_session() as session:
        return [audit_event_out(e) for e in audit.events(session, afterSeq, limit)]


@router.get("/audit/verify", response_model=AuditVerifyOut)
def verify_audit(ctx: Ctx, _: Annotated[Principal, VeilKey(P.audit_read)]) -> AuditVerifyOut:
    with ctx.db.read_session() as session:
        return audit_verify_out(audit.verify(session))
