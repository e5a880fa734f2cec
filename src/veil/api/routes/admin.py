"""Veil's own routes under `/veil/v1`: the calling key (`whoami`), API keys, the audit log, a project's
privacy policy, image bytes.

Authorized like the rest (either `Training-Key` or `Prediction-Key`; role decides; `whoami` takes any valid key).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from veil.api import schemas
from veil.api.deps import get_ctx, veil_key
from veil.images.ingest import thumbnail
from veil.security import audit
from veil.security.auth import Permission, Principal
from veil.services import images as image_service
from veil.services import keys as key_service
from veil.services import projects as project_service
from veil.store.policy import PrivacyPolicy

router = APIRouter(prefix="/veil/v1", tags=["veil"])
P = Permission
SIZES = {"resized": 1024, "thumbnail": 256}


@router.get("/whoami", response_model=schemas.WhoAmIOut)
def whoami(request: Request, principal: Principal = Depends(veil_key(None))) -> schemas.WhoAmIOut:
    """The calling key's id, role, project scope and name: any valid key may ask about itself."""
    with get_ctx(request).db.read_session() as session:
        name = key_service.key_name(session, principal)
    return schemas.WhoAmIOut(key_id=principal.key_id, role=principal.role, project_id=principal.project_id, name=name)


@router.get("/keys", response_model=list[schemas.ApiKeyOut])
def list_keys(request: Request, _: Principal = Depends(veil_key(P.keys_manage))) -> list[schemas.ApiKeyOut]:
    with get_ctx(request).db.read_session() as session:
        return [schemas.api_key_out(k) for k in key_service.all_api_keys(session)]


@router.post("/keys", response_model=schemas.ApiKeyCreatedOut, status_code=201)
def create_key(
    request: Request, body: schemas.ApiKeyIn, principal: Principal = Depends(veil_key(P.keys_manage))
) -> schemas.ApiKeyCreatedOut:
    with get_ctx(request).db.session() as session:
        row, secret = key_service.create_api_key(
            session, principal, body.role, body.project_id, body.expires_in_days, body.name
        )
        return schemas.ApiKeyCreatedOut(**schemas.api_key_out(row).model_dump(), key=secret)


@router.delete("/keys/{keyId}", status_code=204)
def revoke_key(request: Request, keyId: str, principal: Principal = Depends(veil_key(P.keys_manage))) -> Response:
    with get_ctx(request).db.session() as session:
        key_service.revoke_api_key(session, principal, keyId)
    return Response(status_code=204)


@router.get("/audit", response_model=list[schemas.AuditEventOut])
def list_audit_events(
    request: Request,
    afterSeq: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
    _: Principal = Depends(veil_key(P.audit_read)),
) -> list[schemas.AuditEventOut]:
    with get_ctx(request).db.read_session() as session:
        return [schemas.audit_event_out(e) for e in audit.events(session, afterSeq, limit)]


@router.get("/audit/verify", response_model=schemas.AuditVerifyOut)
def verify_audit(request: Request, _: Principal = Depends(veil_key(P.audit_read))) -> schemas.AuditVerifyOut:
    with get_ctx(request).db.read_session() as session:
        report = audit.verify(session)
    return schemas.AuditVerifyOut(
        ok=report.ok,
        events=report.events,
        broken_at=report.broken_at,
        reason=report.reason,
        head=str(report.head) if report.head else None,
    )


@router.get("/projects/{projectId}/privacy", response_model=PrivacyPolicy)
def get_privacy_policy(
    request: Request, projectId: str, _: Principal = Depends(veil_key(P.projects_read))
) -> PrivacyPolicy:
    with get_ctx(request).db.read_session() as session:
        return project_service.privacy_policy(project_service.get_project(session, projectId))


@router.put("/projects/{projectId}/privacy", response_model=PrivacyPolicy)
def set_privacy_policy(
    request: Request,
    projectId: str,
    policy: PrivacyPolicy,
    principal: Principal = Depends(veil_key(P.projects_write)),
) -> PrivacyPolicy:
    with get_ctx(request).db.session() as session:
        project = project_service.set_privacy_policy(session, principal, projectId, policy)
        return project_service.privacy_policy(project)


@router.get("/projects/{projectId}/images/{imageId}/data", response_class=Response)
async def get_image_data(
    request: Request,
    projectId: str,
    imageId: str,
    size: Literal["original", "resized", "thumbnail"] = Query("original"),
    principal: Principal = Depends(veil_key(P.image_bytes)),
) -> Response:
    """The decrypted pixels of a stored image (an audited read); `size` gives a smaller copy."""
    ctx = get_ctx(request)
    data, content_type = await run_in_threadpool(image_service.read_image_bytes, ctx, principal, projectId, imageId)
    if size != "original":
        small = await run_in_threadpool(thumbnail, data, SIZES[size])
        data, content_type = small.data, small.content_type
    return Response(content=data, media_type=content_type, headers={"Cache-Control": "no-store"})
