"""`POST /veil/v1/anonymize`: hide faces (or other targets) in one image and return it; nothing is stored."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import Ctx, OneImage, VeilKey
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import anonymize as anonymize_service

router = APIRouter()


@router.post("/anonymize", response_class=Response)
async def anonymize_image(
    ctx: Ctx,
    _: Annotated[Principal, VeilKey(P.predict)],
    data: OneImage,
    targets: str = "faces",
    method: str = "solid",
) -> Response:
    """Hide faces (or other `targets`) in one image and return it; Veil stores nothing at all.

    Body: the image (octet-stream or multipart). `method`: solid, pixelate, blur or dp-pixelate. The answer is
    the anonymized image; `X-Veil-Hidden` says how many regions were obscured.
    """
    wanted = tuple(t.strip() for t in targets.split(",") if t.strip())
    result = await run_in_threadpool(anonymize_service.anonymize, ctx, data, wanted, method)
    return Response(
        content=result.data,
        media_type=result.content_type,
        headers={"X-Veil-Hidden": str(result.hidden), "Cache-Control": "no-store"},
    )
