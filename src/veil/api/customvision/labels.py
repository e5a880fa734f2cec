"""Labels on training images: image tags (`/images/tags`) and regions (`/images/regions`), added and removed
in batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from veil.api.deps import Ctx, ImageIds, RegionIds, TagIds, TrainingKey
from veil.api.wire.labels import (
    ImageRegionCreateBatchIn,
    ImageRegionCreateEntry,
    ImageRegionCreateResultOut,
    ImageRegionCreateSummaryOut,
    ImageTagCreateBatchIn,
    ImageTagCreateEntry,
    ImageTagCreateSummaryOut,
)
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import labels
from veil.services.images import RegionIn
from veil.services.tags import list_tags

router = APIRouter(tags=["images"])


@router.post(
    "/projects/{projectId}/images/regions",
    response_model=ImageRegionCreateSummaryOut,
    responses={207: {"model": ImageRegionCreateSummaryOut, "description": "Some regions duplicated or over the limit"}},
)
def create_image_regions(
    projectId: str,
    batch: ImageRegionCreateBatchIn,
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.regions_write)],
) -> ImageRegionCreateSummaryOut:
    placements = [
        labels.RegionPlacement(r.image_id, RegionIn(r.tag_id, r.left, r.top, r.width, r.height)) for r in batch.regions
    ]
    with ctx.db.session() as session:
        summary = labels.add_regions(session, principal, projectId, placements)
        names = {tag.id: tag.name for tag in list_tags(session, projectId)}
        created = [
            ImageRegionCreateResultOut(
                image_id=r.image_id,
                region_id=r.id,
                tag_name=names.get(r.tag_id, ""),
                created=r.created,
                tag_id=r.tag_id,
                left=r.left,
                top=r.top,
                width=r.width,
                height=r.height,
            )
            for r in summary.created
        ]

    def entry(p: labels.RegionPlacement) -> ImageRegionCreateEntry:
        r = p.region
        return ImageRegionCreateEntry(
            image_id=p.image_id, tag_id=r.tag_id, left=r.left, top=r.top, width=r.width, height=r.height
        )

    if summary.duplicated or summary.exceeded:
        response.status_code = 207
    return ImageRegionCreateSummaryOut(
        created=created,
        duplicated=[entry(p) for p in summary.duplicated],
        exceeded=[entry(p) for p in summary.exceeded],
    )


@router.delete("/projects/{projectId}/images/regions", status_code=204)
def delete_image_regions(
    projectId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.regions_write)], region_ids: RegionIds
) -> Response:
    with ctx.db.session() as session:
        labels.remove_regions(session, principal, projectId, region_ids)
    return Response(status_code=204)


@router.post("/projects/{projectId}/images/tags", response_model=ImageTagCreateSummaryOut)
def create_image_tags(
    projectId: str,
    batch: ImageTagCreateBatchIn,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
) -> ImageTagCreateSummaryOut:
    pairs = [labels.ImageTagPair(t.image_id, t.tag_id) for t in batch.tags]
    with ctx.db.session() as session:
        summary = labels.add_image_tags(session, principal, projectId, pairs)

    def entries(items: list[labels.ImageTagPair]) -> list[ImageTagCreateEntry]:
        return [ImageTagCreateEntry(image_id=p.image_id, tag_id=p.tag_id) for p in items]

    return ImageTagCreateSummaryOut(
        created=entries(summary.created),
        duplicated=entries(summary.duplicated),
        exceeded=entries(summary.exceeded),
    )


@router.delete("/projects/{projectId}/images/tags", status_code=204)
def delete_image_tags(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
    image_ids: ImageIds,
    tag_ids: TagIds,
) -> Response:
    with ctx.db.session() as session:
        labels.remove_image_tags(session, principal, projectId, image_ids, tag_ids)
    return Response(status_code=204)
