"""The FastAPI app: it only assembles routers (see docs/ARCHITECTURE.md for where each resource lives).

>>> app = create_app(AppContext.open(get_settings()), background=True)   # what `veil serve` runs
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute

import veil
from veil.api import customvision, health
from veil.api import veil as veil_routes
from veil.api.deps import AuthGuard
from veil.api.errors import install_error_handlers
from veil.api.headers import SecurityHeaders
from veil.api.lifespan import background_lifespan
from veil.api.limits import BodyLimit
from veil.api.metrics import install_metrics
from veil.api.openapi import install_openapi
from veil.services.context import AppContext
from veil.web import mount_portal


def _operation_ids(prefix: str) -> Callable[[APIRoute], str]:
    """Custom Vision's operation ids: the route's name and the API version (`get_projects_v3.3`)."""
    version = prefix.split("/")[2]
    return lambda route: f"{route.name}_{version}"


def create_app(ctx: AppContext, background: bool = False) -> FastAPI:
    app = FastAPI(
        title="Veil",
        version=veil.__version__,
        description="Self-hosted, privacy-first custom vision with Azure Custom Vision's REST API.",
        lifespan=background_lifespan(ctx) if background else None,
    )
    app.state.ctx = ctx
    app.state.auth_guard = AuthGuard.from_settings(ctx.settings)
    install_error_handlers(app)
    for prefix in customvision.TRAINING_PREFIXES:
        app.include_router(
            customvision.training_router, prefix=prefix, generate_unique_id_function=_operation_ids(prefix)
        )
    for prefix in customvision.PREDICTION_PREFIXES:
        app.include_router(
            customvision.prediction_router, prefix=prefix, generate_unique_id_function=_operation_ids(prefix)
        )
    app.include_router(veil_routes.router)
    app.include_router(health.router)
    app.add_middleware(BodyLimit, settings=ctx.settings)
    app.add_middleware(SecurityHeaders)
    install_metrics(app, ctx)
    mount_portal(app)
    install_openapi(app)
    return app
