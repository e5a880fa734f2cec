"""Custom Vision Training routes (mounted under `/customvision/v3.3/training` and `/v3.4-preview/training`).

Thin: parse, authorize (`Training-Key` + role), call a service, shape the Custom Vision response.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from veil.api import schemas
from veil.api.deps import csv_list, get_ctx, read_image_parts, training
from veil.api.errors import ApiError
from veil.security.auth import Permission, Principal
from veil.services import images as image_service
from veil.services import labels
from veil.services import projects as project_service
from veil.services import tags as tag_service
from veil.services.domains import DOMAINS, find_domain
from veil.services.images import BatchOutcome, Upload
from veil.store import models

router = APIRouter()
P = Permission

# A refused image's status → the error code of a request in which every image was refused.
_REFUSAL_CODES = {
    "ErrorImageFormat": "BadRequestImageFormat",
    "ErrorImageSize": "BadRequestImageSizeBytes",
    "ErrorImageDimensions": "BadRequestImageDimensions",
    image_service.POLICY_REFUSED: image_service.PolicyNotApplicable.code,
}


# --- domains ---------------------------------------------------------------------------------------------


@router.get("/domains", response_model=list[schemas.DomainOut])
def get_domains(_: Principal = Depends(training(P.projects_read))) -> list[schemas.DomainOut]:
    return [schemas.domain_out(d) for d in DOMAINS]


@router.get("/domains/{domainId}", response_model=schemas.DomainOut)
def get_domain(domainId: str, _: Principal = Depends(training(P.projects_read))) -> schemas.DomainOut:
    domain = find_domain(domainId)
    if domain is None:
        raise ApiError(404, "NotFoundDomain", f"no domain with id {domainId}")
    return schemas.domain_out(domain)


# --- projects --------------------------------------------------------------------------------------------


@router.post("/projects", response_model=schemas.ProjectOut)
def create_project(
    request: Request,
    name: str = Query(...),
    description: str = Query(""),
    domainId: str | None = Query(None),
    classificationType: str | None = Query(None),
    principal: Principal = Depends(training(P.projects_create)),
) -> schemas.ProjectOut:
    ctx = get_ctx(request)
    platforms = csv_list(request, "targetExportPlatforms")
    with ctx.db.session() as session:
        project = project_service.create_project(
            ctx, session, principal, name, description, domainId, classificationType, platforms
        )
        return schemas.project_out(project)


@router.get("/projects", response_model=list[schemas.ProjectOut])
def list_projects(
    request: Request, principal: Principal = Depends(training(P.projects_read))
) -> list[schemas.ProjectOut]:
    with get_ctx(request).db.read_session() as session:
        return [schemas.project_out(p) for p in project_service.visible_projects(session, principal)]


@router.get("/projects/{projectId}", response_model=schemas.ProjectOut)
def get_project(
    request: Request, projectId: str, _: Principal = Depends(training(P.projects_read))
) -> schemas.ProjectOut:
    with get_ctx(request).db.read_session() as session:
        return schemas.project_out(project_service.get_project(session, projectId))


@router.delete("/projects/{projectId}", status_code=204)
def delete_project(
    request: Request, projectId: str, principal: Principal = Depends(training(P.projects_write))
) -> Response:
    project_service.delete_project(get_ctx(request), principal, projectId)
    return Response(status_code=204)


# --- tags ------------------------------------------------------------------------------------------------


@router.post("/projects/{projectId}/tags", response_model=schemas.TagOut)
def create_tag(
    request: Request,
    projectId: str,
    name: str = Query(...),
    description: str = Query(""),
    type: str = Query("Regular"),
    principal: Principal = Depends(training(P.tags_write)),
) -> schemas.TagOut:
    with get_ctx(request).db.session() as session:
        return schemas.tag_out(tag_service.create_tag(session, principal, projectId, name, description, type))


@router.get("/projects/{projectId}/tags", response_model=list[schemas.TagOut])
def list_tags(request: Request, projectId: str, _: Principal = Depends(training(P.tags_read))) -> list[schemas.TagOut]:
    with get_ctx(request).db.read_session() as session:
        counts = tag_service.image_counts(session, projectId)
        return [schemas.tag_out(t, counts.get(t.id, 0)) for t in tag_service.list_tags(session, projectId)]


@router.get("/projects/{projectId}/tags/{tagId}", response_model=schemas.TagOut)
def get_tag(
    request: Request, projectId: str, tagId: str, _: Principal = Depends(training(P.tags_read))
) -> schemas.TagOut:
    with get_ctx(request).db.read_session() as session:
        project_service.get_project(session, projectId)
        tag = tag_service.get_tag(session, projectId, tagId)
        return schemas.tag_out(tag, tag_service.image_counts(session, projectId).get(tag.id, 0))


# --- images ----------------------------------------------------------------------------------------------


@router.post("/projects/{projectId}/images", response_model=schemas.ImageCreateSummaryOut)
async def create_images_from_data(
    request: Request, projectId: str, principal: Principal = Depends(training(P.images_write))
) -> JSONResponse:
    ctx = get_ctx(request)
    parts = await read_image_parts(request, ctx.settings.max_images_per_batch)
    uploads = [Upload(data=p.data, source_name=p.name) for p in parts]
    tag_ids = csv_list(request, "tagIds")
    outcome = await run_in_threadpool(image_service.add_images, ctx, principal, projectId, uploads, tag_ids)
    return batch_response(outcome, str(request.base_url))


def batch_response(outcome: BatchOutcome, base_url: str) -> JSONResponse:
    """200 when every image was stored, 207 when some were, 400 (with the reasons) when none was."""
    summary = schemas.ImageCreateSummaryOut(
        is_batch_successful=outcome.all_ok,
        images=[schemas.create_result_out(r, base_url) for r in outcome.results],
    )
    body = summary.model_dump(mode="json")
    if outcome.any_ok:
        return JSONResponse(body, status_code=200 if outcome.all_ok else 207)
    first = outcome.results[0]
    reasons = "; ".join(f"{r.source_name or f'image {i + 1}'}: {r.reason}" for i, r in enumerate(outcome.results))
    code = _REFUSAL_CODES.get(first.status, "BadRequestImageBatch")
    return JSONResponse({"code": code, "message": f"no image was stored ({reasons})", **body}, status_code=400)


TaggingStatusQuery = Literal["All", "Tagged", "Untagged"]


@router.get("/projects/{projectId}/images", response_model=list[schemas.ImageOut])
def get_images(
    request: Request,
    projectId: str,
    taggingStatus: TaggingStatusQuery = Query("All"),
    orderBy: Literal["Newest", "Oldest"] = Query("Newest"),
    take: int = Query(50, ge=0, le=256),
    skip: int = Query(0, ge=0),
    metadata_filter: str | None = Query(None, alias="$filter", description="e.g. key1 eq 'a' and key2 ne 'b'"),
    _: Principal = Depends(training(P.images_read)),
) -> list[schemas.ImageOut]:
    if metadata_filter:
        base_url = str(request.base_url)
        with get_ctx(request).db.read_session() as session:
            matching = _metadata_matches(request, session, projectId, taggingStatus, orderBy, metadata_filter)
            return [schemas.image_out(i, base_url) for i in matching[skip : skip + take]]
    return _image_page(request, projectId, taggingStatus, orderBy, take, skip)


@router.get("/projects/{projectId}/images/count", response_model=int)
def get_image_count(
    request: Request,
    projectId: str,
    taggingStatus: TaggingStatusQuery = Query("All"),
    metadata_filter: str | None = Query(None, alias="$filter"),
    _: Principal = Depends(training(P.images_read)),
) -> int:
    with get_ctx(request).db.read_session() as session:
        if metadata_filter:
            return len(_metadata_matches(request, session, projectId, taggingStatus, "Newest", metadata_filter))
        return image_service.count_images(session, projectId, taggingStatus, csv_list(request, "tagIds"))


def _metadata_matches(
    request: Request,
    session: Session,
    project_id: str,
    status: TaggingStatusQuery,
    order_by: Literal["Newest", "Oldest"],
    expression: str,
) -> list[models.Image]:
    """Every image passing the other filters and the metadata `$filter`, in order (pages applied after)."""
    tag_ids, everything, skip = csv_list(request, "tagIds"), [], 0
    while True:
        page = image_service.list_images(session, project_id, status, tag_ids, order_by, image_service.MAX_TAKE, skip)
        everything.extend(page)
        if len(page) < image_service.MAX_TAKE:
            return labels.filter_by_metadata(everything, expression)
        skip += len(page)


@router.get("/projects/{projectId}/images/tagged", response_model=list[schemas.ImageOut])
def get_tagged_images(
    request: Request,
    projectId: str,
    orderBy: Literal["Newest", "Oldest"] = Query("Newest"),
    take: int = Query(50, ge=0, le=256),
    skip: int = Query(0, ge=0),
    _: Principal = Depends(training(P.images_read)),
) -> list[schemas.ImageOut]:
    return _image_page(request, projectId, "Tagged", orderBy, take, skip)


@router.get("/projects/{projectId}/images/untagged", response_model=list[schemas.ImageOut])
def get_untagged_images(
    request: Request,
    projectId: str,
    orderBy: Literal["Newest", "Oldest"] = Query("Newest"),
    take: int = Query(50, ge=0, le=256),
    skip: int = Query(0, ge=0),
    _: Principal = Depends(training(P.images_read)),
) -> list[schemas.ImageOut]:
    return _image_page(request, projectId, "Untagged", orderBy, take, skip)


@router.get("/projects/{projectId}/images/tagged/count", response_model=int)
def get_tagged_image_count(request: Request, projectId: str, _: Principal = Depends(training(P.images_read))) -> int:
    with get_ctx(request).db.read_session() as session:
        return image_service.count_images(session, projectId, "Tagged", csv_list(request, "tagIds"))


@router.get("/projects/{projectId}/images/untagged/count", response_model=int)
def get_untagged_image_count(request: Request, projectId: str, _: Principal = Depends(training(P.images_read))) -> int:
    with get_ctx(request).db.read_session() as session:
        return image_service.count_images(session, projectId, "Untagged")


@router.get("/projects/{projectId}/images/id", response_model=list[schemas.ImageOut])
def get_images_by_ids(
    request: Request, projectId: str, _: Principal = Depends(training(P.images_read))
) -> list[schemas.ImageOut]:
    ids = csv_list(request, "imageIds")
    if len(ids) > 256:
        raise ApiError(400, "BadRequestImageBatch", "at most 256 imageIds per request")
    base_url = str(request.base_url)
    with get_ctx(request).db.read_session() as session:
        return [schemas.image_out(i, base_url) for i in image_service.images_by_ids(session, projectId, ids)]


@router.delete("/projects/{projectId}/images", status_code=204)
def delete_images(
    request: Request,
    projectId: str,
    allImages: bool = Query(False),
    principal: Principal = Depends(training(P.images_write)),
) -> Response:
    ids = csv_list(request, "imageIds")
    if len(ids) > 256:
        raise ApiError(400, "BadRequestImageBatch", "at most 256 imageIds per request")
    image_service.delete_images(get_ctx(request), principal, projectId, ids, allImages)
    return Response(status_code=204)


def _image_page(
    request: Request,
    project_id: str,
    status: TaggingStatusQuery,
    order_by: Literal["Newest", "Oldest"],
    take: int,
    skip: int,
) -> list[schemas.ImageOut]:
    base_url = str(request.base_url)
    tag_ids = csv_list(request, "tagIds")
    with get_ctx(request).db.read_session() as session:
        page = image_service.list_images(session, project_id, status, tag_ids, order_by, take, skip)
        return [schemas.image_out(i, base_url) for i in page]
