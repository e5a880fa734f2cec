"""Images: the image with its tags and regions, the upload bodies (files, URLs, from predictions), the upload
summary and metadata updates."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from pydantic import field_validator

from veil.api.wire.base import JsonFloat, Wire
from veil.services.images import UploadOutcome
from veil.services.labels import MetadataOutcome
from veil.store import models


class ImageTagOut(Wire):
    tag_id: str
    tag_name: str
    created: datetime


class ImageRegionOut(Wire):
    region_id: str
    tag_name: str
    created: datetime
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageOut(Wire):
    id: str
    created: datetime
    width: int
    height: int
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    tags: list[ImageTagOut] | None = None
    regions: list[ImageRegionOut] | None = None
    metadata: dict[str, str] | None = None


class ImageCreateResultOut(Wire):
    source_url: str
    status: str
    image: ImageOut | None = None
    # Veil addition: why an image was refused (Custom Vision gives only the status).
    message: str | None = None


class ImageCreateSummaryOut(Wire):
    is_batch_successful: bool
    images: list[ImageCreateResultOut]


class RegionIn(Wire):
    tag_id: str
    left: JsonFloat
    top: JsonFloat
    width: JsonFloat
    height: JsonFloat


class ImageFileCreateEntryIn(Wire):
    name: str | None = None
    contents: bytes
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None

    @field_validator("contents", mode="before")
    @classmethod
    def _base64(cls, value: object) -> bytes:
        # msrest serializes `bytearray` as base64 text; accept standard and URL-safe alphabets.
        if isinstance(value, bytes):
            return value
        if not isinstance(value, str):
            raise ValueError("contents must be base64 text")
        try:
            url_safe = "-" in value or "_" in value
            return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if url_safe else None)
        except (binascii.Error, ValueError):
            raise ValueError("contents is not valid base64") from None


class ImageFileCreateBatchIn(Wire):
    images: list[ImageFileCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageIdCreateEntryIn(Wire):
    id: str
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None


class ImageIdCreateBatchIn(Wire):
    images: list[ImageIdCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageUrlCreateEntryIn(Wire):
    url: str
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None


class ImageUrlCreateBatchIn(Wire):
    images: list[ImageUrlCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageMetadataUpdateEntryOut(Wire):
    image_id: str
    status: str
    metadata: dict[str, str] | None = None


class ImageMetadataUpdateSummaryOut(Wire):
    is_batch_successful: bool
    images: list[ImageMetadataUpdateEntryOut]


def image_data_url(base_url: str, image: models.Image, size: str = "original") -> str:
    url = f"{base_url.rstrip('/')}/veil/v1/projects/{image.project_id}/images/{image.id}/data"
    return url if size == "original" else f"{url}?size={size}"


def region_out(region: models.Region) -> ImageRegionOut:
    return ImageRegionOut(
        region_id=region.id,
        tag_name=region.tag.name,
        created=region.created,
        tag_id=region.tag_id,
        left=region.left,
        top=region.top,
        width=region.width,
        height=region.height,
    )


def image_out(image: models.Image, base_url: str) -> ImageOut:
    tags = [ImageTagOut(tag_id=t.tag_id, tag_name=t.tag.name, created=t.created) for t in image.tag_links]
    return ImageOut(
        id=image.id,
        created=image.created,
        width=image.width,
        height=image.height,
        resized_image_uri=image_data_url(base_url, image, "resized"),
        thumbnail_uri=image_data_url(base_url, image, "thumbnail"),
        original_image_uri=image_data_url(base_url, image),
        tags=tags or None,
        regions=[region_out(r) for r in image.regions] or None,
        metadata={k: str(v) for k, v in (image.meta or {}).items()} or None,
    )


def create_result_out(outcome: UploadOutcome, base_url: str) -> ImageCreateResultOut:
    return ImageCreateResultOut(
        source_url=outcome.source_name,
        status=outcome.status,
        image=image_out(outcome.image, base_url) if outcome.image is not None else None,
        message=outcome.reason or None,
    )


def metadata_summary_out(outcomes: list[MetadataOutcome]) -> ImageMetadataUpdateSummaryOut:
    return ImageMetadataUpdateSummaryOut(
        is_batch_successful=all(o.status == "OK" for o in outcomes),
        images=[
            ImageMetadataUpdateEntryOut(image_id=o.image_id, status=o.status, metadata=o.metadata) for o in outcomes
        ],
    )
