"""The FastAPI app: Custom Vision Training routes (v3.3 and v3.4-preview), Veil's `/veil/v1`, `/healthz`.

    >>> ctx = AppContext.open(get_settings())
    >>> app = create_app(ctx)                   # uvicorn.run(app) — `veil serve` does exactly this

Parts built elsewhere plug in when present: the rest of Custom Vision's routes (`veil.api.routes.cv_training`,
`.prediction`, `.veil`), the portal (`veil.web.mount_portal`) and, with `background=True`, the job worker and
the retention purge.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import text

import veil
from veil.api.errors import install_error_handlers
from veil.api.routes import admin, cv_training, training
from veil.api.routes import veil as veil_routes
from veil.services.context import AppContext

log = logging.getLogger("veil.api")

TRAINING_PREFIXES = ("/customvision/v3.3/training", "/customvision/v3.4-preview/training")
PREDICTION_PREFIXES = ("/customvision/v3.0/prediction", "/customvision/v3.1/prediction")


def _unique_id(prefix: str) -> Callable[[APIRoute], str]:
    version = prefix.split("/")[2]

    def generate(route: APIRoute) -> str:
        return f"{route.name}_{version}"

    return generate


def _optional(module: str) -> Any | None:
    """A module of a part that may not be built yet; its absence must not stop the server."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def _optional_routers(module: str) -> list[APIRouter]:
    found = _optional(module)
    return [found.router] if found is not None else []


def _start_background(ctx: AppContext) -> list[Callable[[], None]]:
    """Start the in-process job worker and retention loop when those parts exist; returns their stoppers."""
    stoppers: list[Callable[[], None]] = []
    worker_module = _optional("veil.jobs.worker")
    if worker_module is not None:
        worker = worker_module.Worker(ctx.settings)
        worker.start()  # settles jobs a previous process left running, then polls
        stoppers.append(worker.stop)
    retention_module = _optional("veil.jobs.retention")
    if retention_module is not None:
        loop = retention_module.RetentionLoop(ctx.db, ctx.blobs)
        loop.start()
        stoppers.append(loop.stop)
    return stoppers


def create_app(ctx: AppContext, background: bool = False) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        stoppers = _start_background(ctx) if background else []
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()

    app = FastAPI(
        title="Veil",
        version=veil.__version__,
        description="Self-hosted, privacy-first custom vision with Azure Custom Vision's REST API.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for prefix in TRAINING_PREFIXES:
        app.include_router(
            training.router, prefix=prefix, tags=["training"], generate_unique_id_function=_unique_id(prefix)
        )
        app.include_router(cv_training.router, prefix=prefix, generate_unique_id_function=_unique_id(prefix))
    prediction = _optional("veil.api.routes.prediction")
    if prediction is not None:
        for prefix in PREDICTION_PREFIXES:
            app.include_router(
                prediction.router,
                prefix=prefix,
                tags=["prediction"],
                generate_unique_id_function=_unique_id(prefix),
            )
    app.include_router(admin.router)
    app.include_router(veil_routes.router)

    @app.get("/healthz", tags=["veil"])
    def healthz(request: Request) -> JSONResponse:
        """200 once the database answers; 503 otherwise."""
        try:
            with request.app.state.ctx.db.read_session() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "version": veil.__version__})

    web = _optional("veil.web")
    if web is not None and hasattr(web, "mount_portal"):
        web.mount_portal(app)
    return app
