"""Export downloads: the `downloadUri` of `getExports` (needs `models.read`, never a public link)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import Ctx, VeilKey
from veil.api.responses import attachment
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import exports as export_service

router = APIRouter()


@router.get("/projects/{projectId}/exports/{exportId}/download", response_class=Response)
async def download_export(
    projectId: str, exportId: str, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.models_read)]
) -> Response:
    """The exported model bundle (zip: model.onnx, labels.txt, model_card.json/md), decrypted in memory."""
    data, filename = await run_in_threadpool(export_service.download_export, ctx, principal, projectId, exportId)
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": attachment(filename), "Cache-Control": "no-store"},
    )
