"""The smart labeler (`images/suggested`, `images/suggested/count`, `tagsandregions/suggestions`) and region
proposals (`images/{imageId}/regionproposals`), as the SDK calls them: all POST."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from veil.api.deps import BaseUrl, Ctx, ImageIds, TrainingKey
from veil.api.wire.suggestions import (
    ImageRegionProposalOut,
    SuggestedTagAndRegionOut,
    SuggestedTagAndRegionQueryOut,
    SuggestedTagAndRegionQueryTokenWire,
    TagFilterIn,
    proposals_out,
    query_in,
    stored_suggestion_out,
    suggestion_out,
    token_out,
)
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import region_proposals, suggestions

router = APIRouter(tags=["smart labeler"])


@router.post("/projects/{projectId}/tagsandregions/suggestions", response_model=list[SuggestedTagAndRegionOut])
async def suggest_tags_and_regions(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
    imageIds: ImageIds,
    iterationId: str | None = Query(None),
) -> list[SuggestedTagAndRegionOut]:
    found = await run_in_threadpool(suggestions.suggest, ctx, principal, projectId, iterationId, imageIds)
    return [suggestion_out(s) for s in found]


@router.post("/projects/{projectId}/images/suggested", response_model=SuggestedTagAndRegionQueryOut)
async def query_suggested_images(
    projectId: str,
    body: SuggestedTagAndRegionQueryTokenWire,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.images_write)],
    iterationId: str | None = Query(None),
) -> SuggestedTagAndRegionQueryOut:
    page = await run_in_threadpool(suggestions.query, ctx, projectId, iterationId, query_in(body))
    return SuggestedTagAndRegionQueryOut(
        token=token_out(page.query), results=[stored_suggestion_out(s, base_url, page.domain_id) for s in page.results]
    )


@router.post("/projects/{projectId}/images/suggested/count", response_model=dict[str, int])
async def query_suggested_image_count(
    projectId: str,
    body: TagFilterIn,
    ctx: Ctx,
    _: Annotated[Principal, TrainingKey(P.images_write)],
    iterationId: str | None = Query(None),
) -> dict[str, int]:
    return await run_in_threadpool(suggestions.count, ctx, projectId, iterationId, body.tag_ids or [], body.threshold)


@router.post("/projects/{projectId}/images/{imageId}/regionproposals", response_model=ImageRegionProposalOut)
async def get_image_region_proposals(
    projectId: str, imageId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.images_write)]
) -> ImageRegionProposalOut:
    return proposals_out(await run_in_threadpool(region_proposals.propose, ctx, projectId, imageId))
