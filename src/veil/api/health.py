"""`GET /healthz`: 200 once the database answers, 503 otherwise (no key: for load balancers and probes)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

import veil
from veil.api.deps import Ctx

router = APIRouter(tags=["veil"])


@router.get("/healthz")
def healthz(ctx: Ctx) -> JSONResponse:
    """200 once the database answers; 503 otherwise."""
    try:
        with ctx.db.read_session() as session:
            session.execute(text("SELECT 1"))
    except Exception as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "version": veil.__version__})
