"""Tags."""

from __future__ import annotations

from veil.api.wire.base import Wire
from veil.store import models


class TagOut(Wire):
    id: str
    name: str
    description: str
    type: str
    image_count: int = 0


class TagUpdateIn(Wire):
    name: str | None = None
    description: str | None = None
    type: str | None = None


def tag_out(tag: models.Tag, image_count: int = 0) -> TagOut:
    return TagOut(id=tag.id, name=tag.name, description=tag.description, type=tag.type, image_count=image_count)
