"""Exports of a trained iteration: start (a job; answers `Exporting` at once, as Azure does) and list (status,
progress, `downloadUri` once done — the zip downloads from `/veil/v1`, see veil/exports.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from veil.api.deps import BaseUrl, Ctx, TrainingKey
from veil.api.wire.exports import ExportOut, export_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import exports as export_service

router = APIRouter(tags=["exports"])


@router.get("/projects/{projectId}/iterations/{iterationId}/export", response_model=list[ExportOut])
def get_exports(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.iterations_read)],
) -> list[ExportOut]:
    return [export_out(v, base_url, projectId) for v in export_service.list_exports(ctx, projectId, iterationId)]


@router.post("/projects/{projectId}/iterations/{iterationId}/export", response_model=ExportOut)
def export_iteration(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, TrainingKey(P.export)],
    platform: str = Query(...),
    flavor: str | None = None,
) -> ExportOut:
    view = export_service.start_export(ctx, principal, projectId, iterationId, platform, flavor)
    return export_out(view, base_url, projectId)
