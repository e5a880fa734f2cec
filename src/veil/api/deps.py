"""Every route's dependencies, one style: `Annotated` aliases and key requirements (FastAPI's template style).

    @router.get("/projects/{projectId}/tags")
    def list_tags(projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.tags_read)]) -> ...

- `Ctx`: the running Veil (`AppContext`); `BaseUrl`: this server's URL, for the links in answers.
- `TrainingKey(permission)` reads `Training-Key`, `PredictionKey(...)` `Prediction-Key` (Custom Vision's
  headers), `VeilKey(...)` either (Veil's own `/veil/v1`). A missing/unknown key is 401; a valid key whose
  role or project scope forbids it is 403 (and an audit event). Declare the key before a body dependency, so
  an unauthenticated upload is refused before it is read.
- `ImageUpload` / `OneImage`: the images of a multipart or raw body, within the server's limits.
- `TagIds`, `ImageIds`, ...: Custom Vision's array query parameters (`a,b` or repeated).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from veil.api.bodies import ImagePart, read_image_parts
from veil.api.metrics import AUTH_FAILURES
from veil.config import Settings
from veil.security import audit
from veil.security.auth import (
    FailureThrottle,
    Forbidden,
    Permission,
    Principal,
    RepeatCounter,
    Throttled,
    Unauthenticated,
    authenticate,
    authorize,
)
from veil.services.context import AppContext

TRAINING_HEADER = "Training-Key"
PREDICTION_HEADER = "Prediction-Key"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_base_url(request: Request) -> str:
    return str(request.base_url)


Ctx = Annotated[AppContext, Depends(get_ctx)]
BaseUrl = Annotated[str, Depends(get_base_url)]


# --- keys ------------------------------------------------------------------------------------------------


@dataclass
class AuthGuard:
    """Per-process abuse state: the wrong-key throttle per client address and the counters that aggregate
    repeated failures into one audit event per source (or key) and minute."""

    throttle: FailureThrottle
    repeats: RepeatCounter

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthGuard:
        return cls(
            FailureThrottle(settings.auth_failure_burst, settings.auth_failures_per_minute / 60),
            RepeatCounter(window_s=60),
        )


def _client_address(request: Request) -> str:
    # Behind a reverse proxy this is the proxy unless uvicorn trusts its X-Forwarded-For (docs/DEPLOY.md).
    return request.client.host if request.client else "unknown"


def _principal(request: Request, headers: tuple[str, ...], permission: Permission | None) -> Principal:
    ctx = get_ctx(request)
    guard: AuthGuard = request.app.state.auth_guard
    source = _client_address(request)
    wait = guard.throttle.retry_after(source)
    if wait is not None:
        AUTH_FAILURES.labels("throttled").inc()
        raise Throttled(wait)
    # Every key header sent must hold a valid key: an empty or wrong one is refused even beside a valid one in
    # the other header (fail closed); with two valid keys the first header's key is the caller.
    sent = list(dict.fromkeys(request.headers[h] for h in headers if h in request.headers))
    presented = next((key for key in sent if key), None)
    project_id = request.path_params.get("projectId")
    try:
        with ctx.db.read_connection() as connection:
            principal, *_others = [authenticate(connection, key) for key in sent] or [authenticate(connection, None)]
    except Unauthenticated:
        AUTH_FAILURES.labels("invalid" if presented else "missing").inc()
        if presented:  # a wrong key, not a forgotten header: what a brute force sends
            guard.throttle.failed(source)
            _audit_repeated(ctx, guard, None, "auth.failed", [f"source={source}"], ("auth.failed", source))
        raise
    if permission is None:
        return principal
    try:
        authorize(principal, permission, project_id)
    except Forbidden:
        AUTH_FAILURES.labels("forbidden").inc()
        resources = [project_id] if project_id else []
        _audit_repeated(ctx, guard, principal, permission.value, resources,
                        ("denied", str(principal.key_id), permission.value, project_id or ""))  # fmt: skip
        raise
    return principal


def _audit_repeated(
    ctx: AppContext, guard: AuthGuard, actor: Principal | None, action: str, resources: list[str], key: tuple[str, ...]
) -> None:
    """One `denied` audit event per `key` and minute, carrying how many it stands for (`attempts=N`)."""
    attempts = guard.repeats.seen(key)
    if attempts is None:
        return
    with ctx.db.session() as session:
        audit.record(session, actor, action, [*resources, f"attempts={attempts}"], "denied")


@dataclass(frozen=True)
class RequireKey:
    """The caller's key (from the first of `headers` present) must grant `permission` (None: any valid key,
    for routes about the key itself). The role test reads every route's `RequireKey` to build its matrix."""

    permission: Permission | None
    headers: tuple[str, ...]

    def __call__(self, request: Request) -> Principal:
        return _principal(request, self.headers, self.permission)


# Capitalized like the Annotated aliases above: they are read as part of a type, `Annotated[Principal, TrainingKey(p)]`.
def TrainingKey(permission: Permission) -> Any:
    """Custom Vision Training routes: the `Training-Key` header must grant `permission`."""
    return Depends(RequireKey(permission, (TRAINING_HEADER,)))


def PredictionKey(permission: Permission = Permission.predict) -> Any:
    """Custom Vision Prediction routes: the `Prediction-Key` header must grant `permission`."""
    return Depends(RequireKey(permission, (PREDICTION_HEADER,)))


def VeilKey(permission: Permission | None) -> Any:
    """Veil's own `/veil/v1` routes: either header; None lets any valid key in (routes about the key itself)."""
    return Depends(RequireKey(permission, (TRAINING_HEADER, PREDICTION_HEADER)))


# --- request bodies holding images ---------------------------------------------------------------------


async def image_upload(request: Request, ctx: Ctx) -> list[ImagePart]:
    return await read_image_parts(request, ctx.settings.max_images_per_batch, ctx.settings.max_request_bytes)


async def one_image(request: Request, ctx: Ctx) -> bytes:
    return (await read_image_parts(request, 1, ctx.settings.max_request_bytes))[0].data


ImageUpload = Annotated[list[ImagePart], Depends(image_upload)]
OneImage = Annotated[bytes, Depends(one_image)]


# --- Custom Vision's array query parameters -------------------------------------------------------------


@dataclass(frozen=True)
class CsvQuery:
    """`tagIds=a,b` (msrest's csv) or repeated `tagIds=a&tagIds=b`, as a list."""

    name: str

    def __call__(self, request: Request) -> list[str]:
        raw_values = request.query_params.getlist(self.name)
        return [item.strip() for raw in raw_values for item in raw.split(",") if item.strip()]


TagIds = Annotated[list[str], Depends(CsvQuery("tagIds"))]
ImageIds = Annotated[list[str], Depends(CsvQuery("imageIds"))]
RegionIds = Annotated[list[str], Depends(CsvQuery("regionIds"))]
PredictionIds = Annotated[list[str], Depends(CsvQuery("ids"))]
TargetExportPlatforms = Annotated[list[str], Depends(CsvQuery("targetExportPlatforms"))]
