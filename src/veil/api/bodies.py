"""Request bodies that carry images: read within the size limit, in memory only (never spooled to disk).

An upload is either a multipart form (each file part, or a field without a filename as msrest sends it) or the
whole body (`application/octet-stream`, `image/*`). `deps.ImageUpload` / `deps.OneImage` hand them to routes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from veil.api.errors import ApiError


@dataclass(frozen=True)
class ImagePart:
    name: str
    data: bytes


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


async def read_image_parts(request: Request, max_files: int, limit: int) -> list[ImagePart]:
    """Images of an upload: each file part of a multipart body, or the whole body (octet-stream, image/*)."""
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("multipart/form-data"):
        return await _multipart_files(request, body, max_files, limit)
    if content_type.startswith(("application/json", "text/", "application/x-www-form-urlencoded")):
        raise ApiError(
            415,
            "BadRequestImageFormat",
            f"Content-Type {content_type!r} cannot carry an image; "
            "send application/octet-stream or multipart/form-data",
        )
    if not body:  # the OpenAPI document says the body is required: an empty one is refused, not a 0-byte image
        raise ApiError(400, "BadRequestImageStream", "the request has no image (empty body)")
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
