"""A stored training image's decrypted bytes (an audited read), full size or a smaller copy."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from veil.api.deps import Ctx, VeilKey
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import images as image_service
from veil.services.images import ImageSize

router = APIRouter()


@router.get("/projects/{projectId}/images/{imageId}/data", response_class=Response)
async def get_image_data(
    projectId: str,
    imageId: str,
    ctx: Ctx,
    principal: Annotated[Principal, VeilKey(P.image_bytes)],
    size: ImageSize = Query("original"),
) -> Response:
    """The decrypted pixels of a stored image (an audited read); `size` gives a smaller copy."""
    data, content_type = await run_in_threadpool(
        image_service.read_image_bytes, ctx, principal, projectId, imageId, size
    )
    return Response(content=data, media_type=content_type, headers={"Cache-Control": "no-store"})
