"""Probes for load balancers and orchestrators (no key):

- `GET /healthz` and `GET /healthz/live` — liveness: 200 while the process answers requests. It checks nothing
  outside the process, so a full disk or a database outage never gets a healthy server restarted in a loop.
- `GET /healthz/ready` — readiness: 200 only when this process can do its work: the database takes a write
  transaction, the blob store takes a write (probe written, read, deleted), and the data directory (and a local
  blob store) have more than `VEIL_READY_MIN_FREE_BYTES` free. Otherwise 503 with each check's verdict and
  Retry-After, so the balancer sends traffic elsewhere until it passes again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

import veil
from veil.api.deps import Ctx
from veil.services.context import AppContext
from veil.store.blobs import LocalBlobStore
from veil.store.db import DatabaseFailure, database_failure

router = APIRouter(tags=["veil"])


@router.get("/healthz")
@router.get("/healthz/live")
def liveness() -> JSONResponse:
    """200 while the process answers (liveness: nothing outside the process is checked)."""
    return JSONResponse({"status": "ok", "version": veil.__version__})


@router.get("/healthz/ready", responses={503: {"description": "not ready: the failing checks are named"}})
def readiness(ctx: Ctx) -> JSONResponse:
    """200 when the database and the blob store take writes and free space is above the threshold; else 503."""
    checks = {"database": _database_writable(ctx), "blobStore": _blobs_writable(ctx), "freeSpace": _free_space(ctx)}
    ready = all(verdict == "ok" for verdict in checks.values())
    body = {"status": "ready" if ready else "unavailable", "version": veil.__version__, "checks": checks}
    if ready:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})


def _database_writable(ctx: AppContext) -> str:
    try:
        with ctx.db.engine.connect() as connection, connection.begin() as transaction:
            # Takes the write lock (SQLite) / a row lock (PostgreSQL), changes nothing, and is rolled back.
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
    except Exception as exc:  # any driver error means: not ready; the reason is named without leaking the URL
        return f"failed: {_DATABASE_REASONS.get(database_failure(exc), exc.__class__.__name__)}"
    return "ok"


_DATABASE_REASONS: dict[DatabaseFailure | None, str] = {
    "read-only": "the database refuses writes (read-only)",
    "full": "the database is out of space",
    "unavailable": "the database is unreachable or busy",
}


def _blobs_writable(ctx: AppContext) -> str:
    try:
        ctx.blobs.check_writable()
    except OSError as exc:
        return f"failed: {exc.__class__.__name__}"
    return "ok"


def _free_space(ctx: AppContext) -> str:
    folders: list[Path] = [ctx.settings.data_dir]
    if isinstance(ctx.blobs, LocalBlobStore):
        folders.append(ctx.blobs.root)
    threshold = ctx.settings.ready_min_free_bytes
    for folder in folders:
        free = shutil.disk_usage(folder).free
        if free < threshold:
            return f"failed: {free} bytes free under {folder.name or folder}, below {threshold}"
    return "ok"
