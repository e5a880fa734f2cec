"""Training images: upload (raw/multipart data, base64 files, URLs, stored predictions), list, count, get by
id, metadata, delete.

Every upload answers like Custom Vision: 200 when every image was stored (or was already there: `OKDuplicate`),
else 207 with each image's status and reason — a refused entry never costs the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from veil.api.deps import BaseUrl, Ctx, ImageIds, ImageUpload, TagIds, TrainingKey
from veil.api.errors import ApiError
from veil.api.wire.images import (
    ImageCreateSummaryOut,
    ImageFileCreateBatchIn,
    ImageIdCreateBatchIn,
    ImageMetadataUpdateSummaryOut,
    ImageOut,
    ImageUrlCreateBatchIn,
    RegionIn,
    create_result_out,
    image_out,
    metadata_summary_out,
)
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import images as image_service
from veil.services import labels, url_fetch
from veil.services.images import MAX_SKIP, MAX_TAKE, BatchOutcome, FromPrediction, Upload

router = APIRouter(tags=["images"])

TaggingStatusQuery = Literal["All", "Tagged", "Untagged"]
OrderBy = Literal["Newest", "Oldest"]
MAX_IDS = 256
# Custom Vision's Multi-Status: some images were refused, each with its status and message.
PARTIAL: dict[int | str, dict[str, Any]] = {
    207: {"model": ImageCreateSummaryOut, "description": "Some images refused: each one's status says why"}
}


def batch_response(outcome: BatchOutcome, base_url: str) -> JSONResponse:
    """200 when nothing was refused, else 207 (Multi-Status) with each image's status, as Custom Vision."""
    summary = ImageCreateSummaryOut(
        is_batch_successful=outcome.all_ok,
        images=[create_result_out(r, base_url) for r in outcome.results],
    )
    return JSONResponse(summary.model_dump(mode="json"), status_code=200 if outcome.all_ok else 207)


def _regions(regions: Sequence[RegionIn] | None) -> list[image_service.RegionIn]:
    return [image_service.RegionIn(r.tag_id, r.left, r.top, r.width, r.height) for r in regions or []]


def _check_ids(ids: list[str]) -> None:
    if len(ids) > MAX_IDS:
        raise ApiError(400, "BadRequestImageBatch", f"at most {MAX_IDS} imageIds per request")


# --- uploads ---------------------------------------------------------------------------------------------


@router.post("/projects/{projectId}/images", response_model=ImageCreateSummaryOut, responses=PARTIAL)
async def create_images_from_data(
    projectId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
    tag_ids: TagIds,
    parts: ImageUpload,
) -> JSONResponse:
    uploads = [Upload(data=p.data, source_name=p.name) for p in parts]
    outcome = await run_in_threadpool(image_service.add_images, ctx, principal, projectId, uploads, tag_ids)
    return batch_response(outcome, base_url)


@router.post("/projects/{projectId}/images/files", response_model=ImageCreateSummaryOut, responses=PARTIAL)
def create_images_from_files(
    projectId: str,
    batch: ImageFileCreateBatchIn,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
) -> JSONResponse:
    uploads = [
        Upload(
            data=entry.contents,
            source_name=entry.name or "",
            tag_ids=entry.tag_ids or [],
            regions=_regions(entry.regions),
            metadata=dict(batch.metadata or {}),
        )
        for entry in batch.images
    ]
    return batch_response(image_service.add_images(ctx, principal, projectId, uploads, batch.tag_ids or []), base_url)


@router.post("/projects/{projectId}/images/urls", response_model=ImageCreateSummaryOut, responses=PARTIAL)
def create_images_from_urls(
    projectId: str,
    batch: ImageUrlCreateBatchIn,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
) -> JSONResponse:
    fetcher = url_fetch.required_fetcher(ctx.settings, "POST images/urls")
    uploads = [
        url_fetch.fetched_upload(fetcher, entry.url, entry.tag_ids or [], _regions(entry.regions), batch.metadata)
        for entry in batch.images
    ]
    good = [u for u in uploads if isinstance(u, Upload)]
    refused = [u for u in uploads if not isinstance(u, Upload)]
    outcome = image_service.add_images(ctx, principal, projectId, good, batch.tag_ids or []) if good else None
    return batch_response(BatchOutcome([*(outcome.results if outcome else []), *refused]), base_url)


@router.post("/projects/{projectId}/images/predictions", response_model=ImageCreateSummaryOut, responses=PARTIAL)
def create_images_from_predictions(
    projectId: str,
    batch: ImageIdCreateBatchIn,
    response: Response,
    ctx: Ctx,
    base_url: BaseUrl,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
) -> ImageCreateSummaryOut:
    entries = [
        FromPrediction(e.id, [*(batch.tag_ids or []), *(e.tag_ids or [])], _regions(e.regions)) for e in batch.images
    ]
    outcome = image_service.add_images_from_predictions(ctx, principal, projectId, entries, batch.metadata or {})
    if not outcome.all_ok:
        response.status_code = 207  # Custom Vision answers 207 even when none was promoted
    return ImageCreateSummaryOut(
        is_batch_successful=outcome.all_ok, images=[create_result_out(r, base_url) for r in outcome.results]
    )


# --- reading ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageParams:
    """The paging query parameters every image listing takes (`orderBy`, `take`, `skip`)."""

    order_by: OrderBy
    take: int
    skip: int


def _page_params(
    orderBy: OrderBy = Query("Newest"),
    take: int = Query(50, ge=0, le=MAX_TAKE, description=f"at most {MAX_TAKE}, as Custom Vision"),
    skip: int = Query(0, ge=0, le=MAX_SKIP, description="SQL's OFFSET: a signed 64-bit integer"),
) -> PageParams:
    return PageParams(orderBy, take, skip)


Page = Annotated[PageParams, Depends(_page_params)]
MetadataFilter = Annotated[
    str | None,
    Query(
        alias="$filter",
        max_length=labels.MAX_FILTER_CHARS,
        description=f"e.g. key1 eq 'a' and key2 ne 'b': at most {labels.MAX_FILTER_CLAUSES} clauses, joined by "
        "and / or (no parentheses); the scan stops with 400 past VEIL_FILTER_TIME_BUDGET_S (2 s)",
    ),
]


def _image_page(
    ctx: Ctx, base_url: str, project_id: str, status: TaggingStatusQuery, tag_ids: list[str], page: PageParams
) -> list[ImageOut]:
    with ctx.db.read_session() as session:
        images = image_service.list_images(session, project_id, status, tag_ids, page.order_by, page.take, page.skip)
        return [image_out(i, base_url) for i in images]


@router.get("/projects/{projectId}/images", response_model=list[ImageOut])
def get_images(
    projectId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.images_read)],
    tag_ids: TagIds,
    page: Page,
    taggingStatus: TaggingStatusQuery = Query("All"),
    metadata_filter: MetadataFilter = None,
) -> list[ImageOut]:
    if metadata_filter:
        with ctx.db.read_session() as session:
            matching = labels.images_matching_metadata(
                session, projectId, taggingStatus, tag_ids, page.order_by, metadata_filter,
                enough=page.skip + page.take, time_budget_s=ctx.settings.filter_time_budget_s,
            )  # fmt: skip
            return [image_out(i, base_url) for i in matching[page.skip : page.skip + page.take]]
    return _image_page(ctx, base_url, projectId, taggingStatus, tag_ids, page)


@router.get("/projects/{projectId}/images/count", response_model=int)
def get_image_count(
    projectId: str,
    ctx: Ctx,
    _: Annotated[Principal, TrainingKey(P.images_read)],
    tag_ids: TagIds,
    taggingStatus: TaggingStatusQuery = Query("All"),
    metadata_filter: MetadataFilter = None,
) -> int:
    with ctx.db.read_session() as session:
        if metadata_filter:
            matching = labels.images_matching_metadata(
                session, projectId, taggingStatus, tag_ids, "Newest", metadata_filter,
                time_budget_s=ctx.settings.filter_time_budget_s,
            )  # fmt: skip
            return len(matching)
        return image_service.count_images(session, projectId, taggingStatus, tag_ids)


@router.get("/projects/{projectId}/images/tagged", response_model=list[ImageOut])
def get_tagged_images(
    projectId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.images_read)],
    tag_ids: TagIds,
    page: Page,
) -> list[ImageOut]:
    return _image_page(ctx, base_url, projectId, "Tagged", tag_ids, page)


@router.get("/projects/{projectId}/images/untagged", response_model=list[ImageOut])
def get_untagged_images(
    projectId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.images_read)],
    tag_ids: TagIds,
    page: Page,
) -> list[ImageOut]:
    return _image_page(ctx, base_url, projectId, "Untagged", tag_ids, page)


@router.get("/projects/{projectId}/images/tagged/count", response_model=int)
def get_tagged_image_count(
    projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.images_read)], tag_ids: TagIds
) -> int:
    with ctx.db.read_session() as session:
        return image_service.count_images(session, projectId, "Tagged", tag_ids)


@router.get("/projects/{projectId}/images/untagged/count", response_model=int)
def get_untagged_image_count(projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.images_read)]) -> int:
    with ctx.db.read_session() as session:
        return image_service.count_images(session, projectId, "Untagged")


@router.get("/projects/{projectId}/images/id", response_model=list[ImageOut])
def get_images_by_ids(
    projectId: str, ctx: Ctx, base_url: BaseUrl, _: Annotated[Principal, TrainingKey(P.images_read)], ids: ImageIds
) -> list[ImageOut]:
    _check_ids(ids)
    with ctx.db.read_session() as session:
        return [image_out(i, base_url) for i in image_service.images_by_ids(session, projectId, ids)]


# --- changing --------------------------------------------------------------------------------------------


@router.post(
    "/projects/{projectId}/images/metadata",
    response_model=ImageMetadataUpdateSummaryOut,
    responses={207: {"model": ImageMetadataUpdateSummaryOut, "description": "Some images not updated"}},
)
def update_image_metadata(
    projectId: str,
    response: Response,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
    ids: ImageIds,
    metadata: dict[str, str] = Body(...),
) -> ImageMetadataUpdateSummaryOut:
    with ctx.db.session() as session:
        outcomes = labels.update_metadata(session, principal, projectId, ids, metadata)
    summary = metadata_summary_out(outcomes)
    if not summary.is_batch_successful:
        response.status_code = 207
    return summary


@router.delete("/projects/{projectId}/images", status_code=204)
def delete_images(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.images_write)],
    ids: ImageIds,
    allImages: bool = Query(False),
) -> Response:
    _check_ids(ids)
    image_service.delete_images(ctx, principal, projectId, ids, allImages)
    return Response(status_code=204)
