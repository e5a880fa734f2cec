"""Every error leaves the API as Custom Vision's `{"code": ..., "message": ...}` body, never a stack trace.

Service, auth and crypto exceptions are translated here, so routes stay free of try/except. On a Custom Vision
route (`/customvision/...`) the code is always one of the SDK's `CustomVisionErrorCodes` (api/wire/errors.py):
a lower layer's Veil-only code becomes the enum's code for its status; `/veil/v1` keeps Veil's own codes.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veil.api.route_table import allowed_methods
from veil.api.wire.errors import custom_vision_code
from veil.security.audit import AuditTampered
from veil.security.auth import Forbidden, Throttled, Unauthenticated
from veil.security.crypto import IntegrityError, KeyShredded, MasterKeyError
from veil.services.errors import Conflict, InvalidInput, NotFound, ServiceError, Unavailable
from veil.store.blobs import BlobStoreError, BlobStoreFull
from veil.store.db import database_failure

log = logging.getLogger("veil.api")
CUSTOM_VISION_PREFIX = "/customvision/"


class ApiError(Exception):
    """An error with its HTTP status, Custom Vision code and message (raised by routes and dependencies)."""

    def __init__(self, status: int, code: str, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra or {}


def error_response(
    where: Request | str, status: int, code: str, message: str, extra: dict[str, Any] | None = None
) -> JSONResponse:
    """The `{code, message}` answer; `where` (the request or its path) decides whether the code must be one of
    Custom Vision's."""
    path = where if isinstance(where, str) else where.url.path
    if path.startswith(CUSTOM_VISION_PREFIX):
        code = custom_vision_code(status, code)
    return JSONResponse(status_code=status, content={"code": code, "message": message, **(extra or {})})


_SERVICE_STATUS: dict[type[ServiceError], int] = {
    NotFound: 404,
    InvalidInput: 400,
    Conflict: 400,
    Unavailable: 503,
}

_HTTP_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, exc.message, exc.extra)

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        status = next((s for cls, s in _SERVICE_STATUS.items() if isinstance(exc, cls)), 400)
        return error_response(request, status, exc.code, exc.message)

    @app.exception_handler(Unauthenticated)
    async def _unauthenticated(request: Request, exc: Unauthenticated) -> JSONResponse:
        return error_response(
            request, 401, "Unauthorized", f"{exc}; send a valid key in the Training-Key/Prediction-Key header"
        )

    @app.exception_handler(Throttled)
    async def _throttled(request: Request, exc: Throttled) -> JSONResponse:
        response = error_response(request, 429, "TooManyRequests", str(exc))
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return error_response(request, 403, "Forbidden", str(exc))

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.error("integrity check failed: %s", exc)
        return error_response(request, 500, "StorageIntegrityError", f"stored data failed its integrity check: {exc}")

    @app.exception_handler(BlobStoreFull)
    async def _storage_full(request: Request, exc: BlobStoreFull) -> JSONResponse:
        log.error("blob store full: %s", exc)
        return error_response(request, 507, "StorageFull", "the blob store is out of space; nothing was stored")

    @app.exception_handler(BlobStoreError)
    async def _storage_unavailable(request: Request, exc: BlobStoreError) -> JSONResponse:
        log.error("blob store: %s", exc)  # the detail (endpoint, bucket) stays in the server log
        response = error_response(request, 503, "StorageUnavailable", "the blob store is unavailable; retry later")
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        failure = database_failure(exc)
        if failure is None:  # a bug, not an outage: one traceback, a 500, the connection kept
            log.error("database error in %s %s", request.method, request.url.path, exc_info=exc)
            return error_response(request, 500, "InternalServerError", "unexpected server error; see the server log")
        log.error("database %s: %s", failure, exc.__class__.__name__)  # the driver's text may hold the URL
        if failure == "full":
            return error_response(request, 507, "StorageFull", "the database is out of space; nothing was stored")
        why = "refuses writes (read-only)" if failure == "read-only" else "is unreachable or busy"
        response = error_response(
            request, 503, "DatabaseUnavailable", f"the database {why}; nothing was changed, retry later"
        )
        response.headers["Retry-After"] = "30"
        return response

    @app.exception_handler(KeyShredded)
    async def _shredded(request: Request, exc: KeyShredded) -> JSONResponse:
        # Deleted between the lookup and the read (its key went with its row): gone, not broken.
        return error_response(request, 404, "NotFound", str(exc))

    @app.exception_handler(MasterKeyError)
    async def _master_key(request: Request, exc: MasterKeyError) -> JSONResponse:
        log.error("master key problem: %s", exc)
        return error_response(request, 500, "MasterKeyUnavailable", str(exc))

    @app.exception_handler(AuditTampered)
    async def _audit_tampered(request: Request, exc: AuditTampered) -> JSONResponse:
        log.error("audit log: %s", exc)
        return error_response(request, 500, "AuditLogTampered", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 400, "BadRequest", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "Error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such route: {request.method} {request.url.path}"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
            # Starlette names only the first route matching the path; every route of the resource counts.
            headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path)) or headers.get("Allow", "")
        response = error_response(request, exc.status_code, code, message)
        response.headers.update(headers)
        return response

    # Not `exception_handler(Exception)`: Starlette runs that handler and then re-raises, so uvicorn logs the
    # traceback a second time and closes the keep-alive connection. This middleware answers and stops there.
    app.add_middleware(UnexpectedErrors)


class UnexpectedErrors:
    """ASGI middleware: an exception no handler knew becomes one logged traceback and a 500 `{code, message}`
    body on a connection that stays open (re-raised only if the response had already started)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            if started:
                raise
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            response = error_response(
                scope.get("path", ""), 500, "InternalServerError", "unexpected server error; see the server log"
            )
            await response(scope, receive, send)
