"""Labels on images: image tags (`/images/tags`) and regions (`/images/regions`)."""

from __future__ import annotations

from datetime import datetime

from veil.api.wire.base import JsonFloat, Wire


class ImageTagCreateEntry(Wire):
    image_id: str
    tag_id: str


class ImageTagCreateBatchIn(Wire):
    tags: list[ImageTagCreateEntry]


class ImageTagCreateSummaryOut(Wire):
    created: list[ImageTagCreateEntry]
    duplicated: list[ImageTagCreateEntry]
    exceeded: list[ImageTagCreateEntry]


class ImageRegionCreateEntry(Wire):
    image_id: str
    tag_id: str
    left: JsonFloat
    top: JsonFloat
    width: JsonFloat
    height: JsonFloat


class ImageRegionCreateBatchIn(Wire):
    regions: list[ImageRegionCreateEntry]


class ImageRegionCreateResultOut(Wire):
    image_id: str
    region_id: str
    tag_name: str
    created: datetime
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageRegionCreateSummaryOut(Wire):
    created: list[ImageRegionCreateResultOut]
    duplicated: list[ImageRegionCreateEntry]
    exceeded: list[ImageRegionCreateEntry]
