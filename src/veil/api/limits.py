"""Request bodies are bounded before they are read, per route: a `Content-Length` over the route's limit is
refused at once, and a body streamed without one (chunked) is refused as soon as it passes the limit — 413 with
Custom Vision's `{code, message}`, before any JSON is parsed or any image decoded.

Limits (`VEIL_*` settings): image uploads (multipart or raw bytes) `max_request_bytes`; the base64 JSON of
`images/files` `max_json_image_batch_bytes`; every other body `max_json_bytes`.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veil.api.errors import error_response
from veil.config import Settings

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_LIKE = ("application/json", "text/", "application/x-www-form-urlencoded")


def body_limit(settings: Settings, path: str, content_type: str) -> int:
    """The largest body this request may carry (bytes)."""
    if path.rstrip("/").endswith("/images/files"):
        return settings.max_json_image_batch_bytes
    if not content_type or content_type.startswith(_JSON_LIKE):
        return settings.max_json_bytes
    return settings.max_request_bytes  # multipart, octet-stream, image/*: image uploads


class BodyTooLarge(HTTPException):
    """An HTTPException, not an ApiError: FastAPI turns any other exception raised while it reads a body into
    "There was an error parsing the body"; errors.py answers it as `RequestEntityTooLarge`."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"is {declared} bytes" if declared is not None else f"exceeds {limit} bytes"
        super().__init__(413, f"request body {size}; this route accepts at most {limit}")


class BodyLimit:
    """ASGI middleware enforcing `body_limit` by `Content-Length` and by counting the bytes streamed."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = body_limit(self.settings, scope["path"], headers.get("content-type", "").lower())
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            too_large = BodyTooLarge(limit, int(declared))
            await error_response(scope["path"], 413, "RequestEntityTooLarge", too_large.detail)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)  # answered 413 by the app's HTTPException handler
            return message

        await self.app(scope, counted_receive, send)
