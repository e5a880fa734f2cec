"""Authentication dependencies: which key is calling, and may its role do this on this project?

Training routes read `Training-Key`, prediction routes `Prediction-Key` (Custom Vision's headers); Veil's own
routes accept either. A missing/unknown key is 401; a valid key whose role or project scope forbids it is 403
(and an audit event).

    @router.get("/projects/{projectId}/tags")
    def list_tags(principal: Principal = Depends(training(Permission.tags_read))): ...
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from veil.api.errors import ApiError
from veil.security import audit
from veil.security.auth import Forbidden, Permission, Principal, authenticate, authorize
from veil.services.context import AppContext

TRAINING_HEADER = "Training-Key"
PREDICTION_HEADER = "Prediction-Key"


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def _principal(request: Request, headers: tuple[str, ...], permission: Permission | None) -> Principal:
    ctx = get_ctx(request)
    presented = next((request.headers[h] for h in headers if request.headers.get(h)), None)
    project_id = request.path_params.get("projectId")
    with ctx.db.read_session() as session:
        principal = authenticate(session, presented)
    if permission is None:
        return principal
    try:
        authorize(principal, permission, project_id)
    except Forbidden:
        with ctx.db.session() as session:
            audit.record(session, principal, permission.value, [project_id] if project_id else [], "denied")
        raise
    return principal


@dataclass(frozen=True)
class RequireKey:
    """A dependency: the caller's key (from the first of `headers` present) must grant `permission`
    (None: any valid key, for routes about the key itself)."""

    permission: Permission | None
    headers: tuple[str, ...]

    def __call__(self, request: Request) -> Principal:
        return _principal(request, self.headers, self.permission)


def training(permission: Permission) -> RequireKey:
    """Dependency for Custom Vision Training routes (`Training-Key`)."""
    return RequireKey(permission, (TRAINING_HEADER,))


def prediction(permission: Permission = Permission.predict) -> RequireKey:
    """Dependency for Custom Vision Prediction routes (`Prediction-Key`)."""
    return RequireKey(permission, (PREDICTION_HEADER,))


def veil_key(permission: Permission | None) -> RequireKey:
    """Dependency for Veil's own `/veil/v1` routes (either header)."""
    return RequireKey(permission, (TRAINING_HEADER, PREDICTION_HEADER))


# --- request bodies holding images ---------------------------------------------------------------------


class _InMemoryMultiPartParser(MultiPartParser):
    # Starlette spools parts over 1 MB to a temporary FILE; Veil never lets raw image bytes touch the disk.
    spool_max_size = 1 << 40

    def on_part_end(self) -> None:
        # msrest (the Custom Vision SDK) sends image bytes as a form field without a filename: keep such a
        # field as its raw bytes instead of letting Starlette decode it as text.
        if self._current_part.file is None:
            self.items.append((self._current_part.field_name, bytes(self._current_part.data)))  # type: ignore[arg-type]
            return
        super().on_part_end()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "BadRequestImageSizeBytes", f"request body is {declared} bytes; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "BadRequestImageSizeBytes", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class ImagePart:
    name: str
    data: bytes


async def read_image_parts(request: Request, max_files: int) -> list[ImagePart]:
    """Images of an upload: each file part of a multipart body, or the whole body (octet-stream, image/*)."""
    settings = get_ctx(request).settings
    body = await read_body(request, settings.max_request_bytes)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _multipart_files(request, body, max_files, settings.max_request_bytes)
    if content_type.startswith(("application/json", "text/", "application/x-www-form-urlencoded")):
        raise ApiError(
            415,
            "BadRequestImageFormat",
            f"Content-Type {content_type!r} cannot carry an image; "
            "send application/octet-stream or multipart/form-data",
        )
    return [ImagePart(name="", data=body)]


async def _multipart_files(request: Request, body: bytes, max_files: int, limit: int) -> list[ImagePart]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    parser = _InMemoryMultiPartParser(request.headers, stream(), max_files=max_files, max_part_size=limit)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "BadRequestImageBatch", f"malformed multipart body: {exc.message}") from None
    parts = []
    for _field, value in form.multi_items():
        if isinstance(value, StarletteUploadFile):
            parts.append(ImagePart(name=value.filename or "", data=await value.read()))
            await value.close()
        elif isinstance(value, bytes) and value:
            parts.append(ImagePart(name="", data=value))
    if not parts:
        raise ApiError(400, "BadRequestImageBatch", "the multipart body holds no file part")
    return parts


def csv_list(request: Request, name: str) -> list[str]:
    """A Custom Vision array query parameter: `tagIds=a,b` (msrest's csv) or repeated `tagIds=a&tagIds=b`."""
    return [item.strip() for raw in request.query_params.getlist(name) for item in raw.split(",") if item.strip()]
