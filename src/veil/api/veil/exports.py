"""Veil's additions on exports: the zip download (the `downloadUri` of `getExports`; needs `models.read`, never a
public link), one export's state, its job (stage, percent) and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import BaseUrl, Ctx, VeilKey
from veil.api.responses import attachment
from veil.api.wire.exports import ExportOut, export_out
from veil.api.wire.jobs import JobOut, job_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import exports as export_service

router = APIRouter()


@router.get("/projects/{projectId}/exports/{exportId}", response_model=ExportOut)
def get_export(
    projectId: str,
    exportId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, VeilKey(P.iterations_read)],
) -> ExportOut:
    """One export: status (Exporting | Done | Failed), stage and percent while it runs, the reason if it failed."""
    return export_out(export_service.get_export(ctx, projectId, exportId), base_url, projectId)


@router.get("/projects/{projectId}/exports/{exportId}/job", response_model=JobOut)
def export_job(projectId: str, exportId: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.iterations_read)]) -> JobOut:
    """The job that builds (or built) an export: status, stage, percent, ETA, error."""
    return job_out(export_service.export_job(ctx, projectId, exportId))


@router.post("/projects/{projectId}/exports/{exportId}/cancel", response_model=ExportOut)
def cancel_export(
    projectId: str,
    exportId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, VeilKey(P.export)],
) -> ExportOut:
    """Stop a running export; it becomes `Failed` with "cancelled by the user" as its reason."""
    return export_out(export_service.cancel_export(ctx, principal, projectId, exportId), base_url, projectId)


@router.get("/projects/{projectId}/exports/{exportId}/download", response_class=Response)
async def download_export(
    projectId: str, exportId: str, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.models_read)]
) -> Response:
    """The export's zip (its layout: docs/EXPORTS.md), decrypted in memory."""
    data, filename = await run_in_threadpool(export_service.download_export, ctx, principal, projectId, exportId)
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": attachment(filename), "Cache-Control": "no-store"},
    )
