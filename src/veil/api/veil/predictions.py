"""A stored prediction's kept image (until the project's retention deletes it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import Ctx, VeilKey
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import predictions as prediction_service

router = APIRouter()


@router.get("/projects/{projectId}/predictions/{predictionId}/image", response_class=Response)
async def stored_prediction_image(
    projectId: str, predictionId: str, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.image_bytes)]
) -> Response:
    """The kept image of a stored prediction (until the project's retention deletes it)."""
    data, content_type = await run_in_threadpool(
        prediction_service.stored_image, ctx, principal, projectId, predictionId
    )
    return Response(content=data, media_type=content_type, headers={"Cache-Control": "no-store"})
