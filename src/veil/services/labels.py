"""Labels on training images: image tags, regions, image metadata (and the `$filter` on it). Custom Vision's
rules hold: the Negative tag is alone on an image
and never in a detection project; regions are normalized boxes on detection projects only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from veil.security import audit
from veil.security.auth import Principal
from veil.services.errors import InvalidInput
from veil.services.images import MAX_TAGS_PER_IMAGE, RegionIn, TaggingStatus, list_images
from veil.services.projects import get_project
from veil.store.models import Image, ImageTag, Region, Tag, new_id

MAX_BATCH = 64
MAX_METADATA_ENTRIES = 10
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256


@dataclass(frozen=True)
class ImageTagPair:
    image_id: str
    tag_id: str


@dataclass(frozen=True)
class TagLinkSummary:
    created: list[ImageTagPair]
    duplicated: list[ImageTagPair]
    exceeded: list[ImageTagPair]


@dataclass(frozen=True)
class RegionPlacement:
    image_id: str
    region: RegionIn


@dataclass(frozen=True)
class RegionSummary:
    created: list[Region]
    duplicated: list[RegionPlacement]
    exceeded: list[RegionPlacement]


@dataclass(frozen=True)
class MetadataOutcome:
    image_id: str
    status: str  # OK | ErrorImageNotFound | ErrorLimitExceed
    metadata: dict[str, str] | None


def _images_of(session: Session, project_id: str, image_ids: Sequence[str]) -> dict[str, Image]:
    rows = session.scalars(select(Image).where(Image.project_id == project_id, Image.id.in_(list(image_ids))))
    return {image.id: image for image in rows}


def _check_batch(count: int, what: str) -> None:
    if count == 0:
        raise InvalidInput(f"no {what} in the request", code="BadRequestImageBatch")
    if count > MAX_BATCH:
        raise InvalidInput(f"{count} {what} in one request; at most {MAX_BATCH}", code="BadRequestExceededBatchSize")


def add_image_tags(
    session: Session, actor: Principal, project_id: str, pairs: Sequence[ImageTagPair]
) -> TagLinkSummary:
    get_project(session, project_id)
    _check_batch(len(pairs), "image tags")
    images = _images_of(session, project_id, [p.image_id for p in pairs])
    tags = {t.id: t for t in session.scalars(select(Tag).where(Tag.project_id == project_id))}
    missing = [p for p in pairs if p.image_id not in images or p.tag_id not in tags]
    if missing:
        raise InvalidInput(
            f"unknown image or tag ids: {', '.join(f'{p.image_id}/{p.tag_id}' for p in missing)}",
            code="BadRequestInvalidIds",
        )
    current: dict[str, set[str]] = {}
    for image_id, tag_id in session.execute(
        select(ImageTag.image_id, ImageTag.tag_id).where(ImageTag.image_id.in_(list(images)))
    ):
        current.setdefault(image_id, set()).add(tag_id)
    created, duplicated, exceeded = [], [], []
    for pair in pairs:
        on_image = current.setdefault(pair.image_id, set())
        if pair.tag_id in on_image:
            duplicated.append(pair)
            continue
        if len(on_image) >= MAX_TAGS_PER_IMAGE:
            exceeded.append(pair)
            continue
        negative_involved = tags[pair.tag_id].type == "Negative" or any(tags[t].type == "Negative" for t in on_image)
        if on_image and negative_involved:
            raise InvalidInput(
                f"image {pair.image_id}: the Negative tag cannot be with other tags",
                code="BadRequestNegativeAndRegularTagOnSameImage",
            )
        session.add(ImageTag(image_id=pair.image_id, tag_id=pair.tag_id))
        on_image.add(pair.tag_id)
        created.append(pair)
    audit.record(session, actor, "images.tag", [project_id, *(p.image_id for p in created)])
    return TagLinkSummary(created, duplicated, exceeded)


def remove_image_tags(
    session: Session, actor: Principal, project_id: str, image_ids: Sequence[str], tag_ids: Sequence[str]
) -> None:
    get_project(session, project_id)
    if not image_ids or not tag_ids:
        raise InvalidInput("give imageIds and tagIds", code="BadRequestInvalidIds")
    images = _images_of(session, project_id, image_ids)
    session.execute(delete(ImageTag).where(ImageTag.image_id.in_(list(images)), ImageTag.tag_id.in_(list(tag_ids))))
    audit.record(session, actor, "images.untag", [project_id, *images])


def add_regions(
    session: Session, actor: Principal, project_id: str, placements: Sequence[RegionPlacement]
) -> RegionSummary:
    project = get_project(session, project_id)
    if project.project_type != "ObjectDetection":
        raise InvalidInput("regions belong to object detection projects", code="BadRequestImageRegions")
    _check_batch(len(placements), "regions")
    images = _images_of(session, project_id, [p.image_id for p in placements])
    tags = set(session.scalars(select(Tag.id).where(Tag.project_id == project_id)))
    missing = [p for p in placements if p.image_id not in images or p.region.tag_id not in tags]
    if missing:
        raise InvalidInput(
            f"unknown image or tag ids: {', '.join(f'{p.image_id}/{p.region.tag_id}' for p in missing)}",
            code="BadRequestInvalidIds",
        )
    existing: dict[str, list[Region]] = {}
    for region in session.scalars(select(Region).where(Region.image_id.in_(list(images)))):
        existing.setdefault(region.image_id, []).append(region)
    created, duplicated, exceeded = [], [], []
    for placement in placements:
        placement.region.check()
        on_image = existing.setdefault(placement.image_id, [])
        if any(_same_box(r, placement.region) for r in on_image):
            duplicated.append(placement)
            continue
        if len(on_image) >= 200:
            exceeded.append(placement)
            continue
        r = placement.region
        row = Region(
            id=new_id(),
            image_id=placement.image_id,
            tag_id=r.tag_id,
            left=r.left,
            top=r.top,
            width=r.width,
            height=r.height,
        )
        session.add(row)
        on_image.append(row)
        created.append(row)
    session.flush()
    audit.record(session, actor, "regions.create", [project_id, *(r.id for r in created)])
    return RegionSummary(created, duplicated, exceeded)


def _same_box(row: Region, region: RegionIn, tolerance: float = 1e-6) -> bool:
    values = (
        (row.left, region.left),
        (row.top, region.top),
        (row.width, region.width),
        (row.height, region.height),
    )
    return row.tag_id == region.tag_id and all(abs(a - b) <= tolerance for a, b in values)


def remove_regions(session: Session, actor: Principal, project_id: str, region_ids: Sequence[str]) -> None:
    get_project(session, project_id)
    if not region_ids:
        raise InvalidInput("give regionIds", code="BadRequestInvalidIds")
    owned = select(Image.id).where(Image.project_id == project_id)
    session.execute(delete(Region).where(Region.id.in_(list(region_ids)), Region.image_id.in_(owned)))
    audit.record(session, actor, "regions.delete", [project_id, *region_ids])


def update_metadata(
    session: Session, actor: Principal, project_id: str, image_ids: Sequence[str], metadata: dict[str, str]
) -> list[MetadataOutcome]:
    """Merge key/value metadata into images (Custom Vision: at most 10 pairs per image)."""
    get_project(session, project_id)
    _check_batch(len(image_ids), "image ids")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY or key.startswith("veil."):
            raise InvalidInput(
                f"metadata key {key!r} is empty, too long or reserved", code="BadRequestImageMetadataKey"
            )
        if len(str(value)) > MAX_METADATA_VALUE:
            raise InvalidInput(f"metadata value of {key!r} is too long", code="BadRequestImageMetadataValue")
    images = _images_of(session, project_id, image_ids)
    outcomes = []
    for image_id in image_ids:
        image = images.get(image_id)
        if image is None:
            outcomes.append(MetadataOutcome(image_id, "ErrorImageNotFound", None))
            continue
        merged = {**(image.meta or {}), **{k: str(v) for k, v in metadata.items()}}
        if len([k for k in merged if not k.startswith("veil.")]) > MAX_METADATA_ENTRIES:
            outcomes.append(MetadataOutcome(image_id, "ErrorLimitExceed", user_metadata(image)))
            continue
        image.meta = merged
        outcomes.append(MetadataOutcome(image_id, "OK", user_metadata(image)))
    audit.record(session, actor, "images.metadata", [project_id, *images])
    return outcomes


def user_metadata(image: Image) -> dict[str, str]:
    """The key/values a user set (Veil's own `veil.*` ingest facts are reported too: they are not secrets)."""
    return {str(k): str(v) for k, v in (image.meta or {}).items()}


_CLAUSE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s+(eq|ne)\s+'((?:[^']|'')*)'\s*$", re.IGNORECASE)


MAX_FILTER_CHARS = 2000
MAX_FILTER_CLAUSES = 32


def metadata_filter(expression: str) -> Callable[[dict[str, str]], bool]:
    """Custom Vision's `$filter` on image metadata: `key eq 'v'`, `key ne 'v'`, joined by `and` / `or`
    (`and` binds tighter; no parentheses, so the depth is 1). Raises `InvalidInput` naming the part it cannot
    read, or the bound it passes (a filter is tested against every image of the project: its size is bounded)."""
    if len(expression) > MAX_FILTER_CHARS:
        raise InvalidInput(
            f"$filter is {len(expression)} characters; at most {MAX_FILTER_CHARS}", code="BadRequestInvalid"
        )
    clause_count = len(re.findall(r"\s(?:eq|ne)\s", expression, flags=re.IGNORECASE))
    if clause_count > MAX_FILTER_CLAUSES:
        raise InvalidInput(
            f"$filter has {clause_count} clauses; at most {MAX_FILTER_CLAUSES}", code="BadRequestInvalid"
        )
    alternatives: list[list[tuple[str, bool, str]]] = []
    for alternative in re.split(r"\s+or\s+", expression.strip(), flags=re.IGNORECASE):
        clauses = []
        for part in re.split(r"\s+and\s+", alternative, flags=re.IGNORECASE):
            match = _CLAUSE.match(part)
            if match is None:
                raise InvalidInput(
                    f"$filter: cannot read {part.strip()!r}; write key eq 'value' or key ne 'value', "
                    "joined by and / or",
                    code="BadRequestInvalid",
                )
            clauses.append((match[1], match[2].lower() == "eq", match[3].replace("''", "'")))
        alternatives.append(clauses)

    def matches(metadata: dict[str, str]) -> bool:
        return any(all((metadata.get(k) == v) == equal for k, equal, v in c) for c in alternatives)

    return matches


FILTER_SCAN_PAGE = 64  # images read and tested between two looks at the clock


def images_matching_metadata(
    session: Session,
    project_id: str,
    status: TaggingStatus,
    tag_ids: Sequence[str],
    order_by: Literal["Newest", "Oldest"],
    expression: str,
    enough: int | None = None,
    time_budget_s: float = 2.0,
) -> list[Image]:
    """The images passing the other filters and the metadata `$filter`, in order (pages applied after): all of
    them, or the first `enough`. The scan is bounded in time: past `time_budget_s` seconds it stops with
    `InvalidInput` saying how far it got (the clock is read after each page of `FILTER_SCAN_PAGE` images)."""
    keep = metadata_filter(expression)
    deadline = time.monotonic() + time_budget_s
    matching: list[Image] = []
    scanned = 0
    while enough is None or len(matching) < enough:
        if scanned and time.monotonic() > deadline:
            raise InvalidInput(
                f"$filter ran over its {time_budget_s:g} s budget after {scanned} images; narrow it with "
                "tagIds or taggingStatus, or ask for fewer images (skip + take)",
                code="BadRequestInvalid",
            )
        page = list_images(session, project_id, status, tag_ids, order_by, FILTER_SCAN_PAGE, scanned)
        scanned += len(page)
        matching.extend(image for image in page if keep(user_metadata(image)))
        if len(page) < FILTER_SCAN_PAGE:
            break
    return matching
