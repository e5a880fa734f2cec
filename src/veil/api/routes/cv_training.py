"""Custom Vision Training routes beyond the foundation's: labelling, training, iterations, performance,
publishing, exports, stored predictions, quick test — and 501 answers for what Veil does not implement.

Mounted under `/customvision/v3.3/training` and `/customvision/v3.4-preview/training`. Routes are thin: parse,
authorize (`Training-Key`), call a service, shape the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from veil.api.deps import csv_list, get_ctx, read_image_parts, training
from veil.api.errors import ApiError
from veil.api.routes.training import batch_response
from veil.api.schemas import (
    ImageCreateResultOut,
    ImageCreateSummaryOut,
    ProjectOut,
    TagOut,
    image_out,
    project_out,
    tag_out,
)
from veil.api.schemas_cv import (
    ExportOut,
    ImageFileCreateBatchIn,
    ImageIdCreateBatchIn,
    ImageMetadataUpdateSummaryOut,
    ImagePerformanceOut,
    ImagePredictionOut,
    ImageRegionCreateBatchIn,
    ImageRegionCreateEntry,
    ImageRegionCreateResultOut,
    ImageRegionCreateSummaryOut,
    ImageTagCreateBatchIn,
    ImageTagCreateEntry,
    ImageTagCreateSummaryOut,
    ImageUrlCreateBatchIn,
    ImageUrlIn,
    IterationOut,
    IterationPerformanceOut,
    IterationUpdateIn,
    PredictionQueryResultOut,
    PredictionQueryTokenWire,
    ProjectExportOut,
    ProjectUpdateIn,
    StoredImagePredictionOut,
    TagUpdateIn,
    TrainingParametersIn,
    export_out,
    image_performance_out,
    image_prediction_out,
    iteration_out,
    metadata_summary_out,
    performance_out,
    stored_prediction_out,
)
from veil.api.schemas_cv import (
    RegionIn as WireRegion,
)
from veil.security.auth import Permission, Principal
from veil.services import exports as export_service
from veil.services import labels, portability
from veil.services import prediction as prediction_service
from veil.services import training as training_service
from veil.services.context import AppContext
from veil.services.images import (
    BatchOutcome,
    RegionIn,
    Upload,
    add_images,
)
from veil.services.projects import get_project, update_project
from veil.services.tags import image_counts, list_tags, resolve_tags

router = APIRouter()
P = Permission

TRAINING_TYPES = Literal["Regular", "Advanced"]


def _base(request: Request) -> str:
    return str(request.base_url)


def _summary(outcome: BatchOutcome, request: Request) -> JSONResponse:
    """Like every upload route: 200 all stored, 207 some, 400 none (with each image's reason)."""
    return batch_response(outcome, _base(request))


def _tag_ids_by_name(iteration_metrics: dict[str, Any]) -> dict[str, str]:
    return {label["name"]: label["id"] for label in iteration_metrics.get("labels", [])}


# --- projects -----------------------------------------------------------------------------------------------


@router.patch("/projects/{projectId}", response_model=ProjectOut, response_model_by_alias=True, tags=["projects"])
def update_project_route(
    projectId: str,
    body: ProjectUpdateIn,
    principal: Principal = Depends(training(P.projects_write)),
    ctx: AppContext = Depends(get_ctx),
) -> ProjectOut:
    settings = body.settings
    with ctx.db.session() as session:
        project = get_project(session, projectId)
        changes: dict[str, object] = {}
        if settings is not None:
            portability.check_settings_change(project, settings.domain_id, settings.classification_type)
            if settings.target_export_platforms is not None:
                changes["targetExportPlatforms"] = settings.target_export_platforms
            if settings.use_negative_set is not None:
                changes["useNegativeSet"] = settings.use_negative_set
            portability.apply_domain_change(project, settings.domain_id, settings.classification_type)
        project = update_project(session, principal, projectId, body.name, body.description, changes or None)
        return project_out(project)


@router.get("/projects/{projectId}/export", response_model=ProjectExportOut, tags=["projects"])
def export_project(
    projectId: str,
    principal: Principal = Depends(training(P.projects_write)),
    ctx: AppContext = Depends(get_ctx),
) -> ProjectExportOut:
    summary = portability.export_project(ctx, principal, projectId)
    return ProjectExportOut.model_validate(
        {
            "iterationCount": summary.iterations,
            "imageCount": summary.images,
            "tagCount": summary.tags,
            "regionCount": summary.regions,
            "estimatedImportTimeInMS": summary.estimated_import_ms,
            "token": summary.token,
        }
    )


@router.post("/projects/import", response_model=ProjectOut, tags=["projects"])
def import_project(
    token: str = Query(...),
    name: str | None = Query(None),
    principal: Principal = Depends(training(P.projects_create)),
    ctx: AppContext = Depends(get_ctx),
) -> ProjectOut:
    return project_out(portability.import_project(ctx, principal, token, name))


# --- tags ---------------------------------------------------------------------------------------------------


@router.patch("/projects/{projectId}/tags/{tagId}", response_model=TagOut, tags=["tags"])
def update_tag_route(
    projectId: str,
    tagId: str,
    body: TagUpdateIn,
    principal: Principal = Depends(training(P.tags_write)),
    ctx: AppContext = Depends(get_ctx),
) -> TagOut:
    with ctx.db.session() as session:
        tag = labels.update_tag(session, principal, projectId, tagId, body.name, body.description, body.type)
        return tag_out(tag, image_counts(session, projectId).get(tag.id, 0))


@router.delete("/projects/{projectId}/tags/{tagId}", status_code=204, tags=["tags"])
def delete_tag_route(
    projectId: str,
    tagId: str,
    principal: Principal = Depends(training(P.tags_write)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    with ctx.db.session() as session:
        labels.delete_tag(session, principal, projectId, tagId)
    return Response(status_code=204)


# --- images ---


def _regions(regions: Sequence[WireRegion] | None) -> list[RegionIn]:
    return [RegionIn(r.tag_id, r.left, r.top, r.width, r.height) for r in regions or []]


@router.post("/projects/{projectId}/images/files", response_model=ImageCreateSummaryOut, tags=["images"])
def create_images_from_files(
    projectId: str,
    batch: ImageFileCreateBatchIn,
    request: Request,
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
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
    return _summary(add_images(ctx, principal, projectId, uploads, batch.tag_ids or []), request)


@router.post("/projects/{projectId}/images/metadata", response_model=ImageMetadataUpdateSummaryOut, tags=["images"])
def update_image_metadata(
    projectId: str,
    request: Request,
    response: Response,
    metadata: dict[str, str] = Body(...),
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
) -> ImageMetadataUpdateSummaryOut:
    with ctx.db.session() as session:
        outcomes = labels.update_metadata(session, principal, projectId, csv_list(request, "imageIds"), metadata)
    summary = metadata_summary_out(outcomes)
    if not summary.is_batch_successful:
        response.status_code = 207
    return summary


@router.post("/projects/{projectId}/images/predictions", response_model=ImageCreateSummaryOut, tags=["images"])
def create_images_from_predictions(
    projectId: str,
    batch: ImageIdCreateBatchIn,
    request: Request,
    response: Response,
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
) -> ImageCreateSummaryOut:
    entries = [(e.id, [*(batch.tag_ids or []), *(e.tag_ids or [])], _regions(e.regions)) for e in batch.images]
    with ctx.db.session() as session:
        for _, tag_ids, regions in entries:
            resolve_tags(session, projectId, [*tag_ids, *(r.tag_id for r in regions)])
    outcomes = labels.images_from_predictions(ctx, principal, projectId, entries)
    results = [
        ImageCreateResultOut(
            source_url=prediction_id,
            status=status,
            image=image_out(image, _base(request)) if image is not None else None,
        )
        for prediction_id, status, image in outcomes
    ]
    ok = all(r.status == "OK" for r in results)
    if not ok:
        response.status_code = 207
    return ImageCreateSummaryOut(is_batch_successful=ok, images=results)


@router.post("/projects/{projectId}/images/regions", response_model=ImageRegionCreateSummaryOut, tags=["images"])
def create_image_regions(
    projectId: str,
    batch: ImageRegionCreateBatchIn,
    response: Response,
    principal: Principal = Depends(training(P.regions_write)),
    ctx: AppContext = Depends(get_ctx),
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


@router.delete("/projects/{projectId}/images/regions", status_code=204, tags=["images"])
def delete_image_regions(
    projectId: str,
    request: Request,
    principal: Principal = Depends(training(P.regions_write)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    with ctx.db.session() as session:
        labels.remove_regions(session, principal, projectId, csv_list(request, "regionIds"))
    return Response(status_code=204)


@router.post("/projects/{projectId}/images/tags", response_model=ImageTagCreateSummaryOut, tags=["images"])
def create_image_tags(
    projectId: str,
    batch: ImageTagCreateBatchIn,
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
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


@router.delete("/projects/{projectId}/images/tags", status_code=204, tags=["images"])
def delete_image_tags(
    projectId: str,
    request: Request,
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    with ctx.db.session() as session:
        labels.remove_image_tags(
            session, principal, projectId, csv_list(request, "imageIds"), csv_list(request, "tagIds")
        )
    return Response(status_code=204)


# --- training and iterations --------------------------------------------------------------------------------


@router.post("/projects/{projectId}/train", response_model=IterationOut, tags=["training"])
def train_project(
    projectId: str,
    trainingType: TRAINING_TYPES = "Regular",
    reservedBudgetInHours: int = Query(0, ge=0),
    forceTrain: bool = False,
    notificationEmailAddress: str | None = None,
    backbone: str | None = Query(
        None, description="Veil extension: efficientnet-lite0, -lite1 or -lite2 (default: the task's choice)"
    ),
    parameters: TrainingParametersIn | None = Body(None),
    principal: Principal = Depends(training(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> IterationOut:
    options = training_service.TrainOptions(
        training_type=trainingType,
        reserved_budget_in_hours=reservedBudgetInHours,
        force_train=forceTrain,
        selected_tags=list(parameters.selected_tags or []) if parameters else [],
        backbone=backbone,
    )
    return iteration_out(training_service.start_training(ctx, principal, projectId, options))


@router.get("/projects/{projectId}/iterations", response_model=list[IterationOut], tags=["iterations"])
def get_iterations(
    projectId: str,
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> list[IterationOut]:
    return [iteration_out(i) for i in training_service.list_iterations(ctx, projectId)]


@router.get("/projects/{projectId}/iterations/{iterationId}", response_model=IterationOut, tags=["iterations"])
def get_iteration(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> IterationOut:
    return iteration_out(training_service.read_iteration(ctx, projectId, iterationId))


@router.patch("/projects/{projectId}/iterations/{iterationId}", response_model=IterationOut, tags=["iterations"])
def update_iteration(
    projectId: str,
    iterationId: str,
    body: IterationUpdateIn,
    principal: Principal = Depends(training(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> IterationOut:
    if body.name is None:
        return iteration_out(training_service.read_iteration(ctx, projectId, iterationId))
    return iteration_out(training_service.rename_iteration(ctx, principal, projectId, iterationId, body.name))


@router.delete("/projects/{projectId}/iterations/{iterationId}", status_code=204, tags=["iterations"])
def delete_iteration(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(training(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    training_service.delete_iteration(ctx, principal, projectId, iterationId)
    return Response(status_code=204)


@router.get(
    "/projects/{projectId}/iterations/{iterationId}/performance",
    response_model=IterationPerformanceOut,
    tags=["iterations"],
)
def get_iteration_performance(
    projectId: str,
    iterationId: str,
    threshold: float = 0.5,
    overlapThreshold: float = 0.3,
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> IterationPerformanceOut:
    iteration, result = export_service.iteration_performance(ctx, projectId, iterationId, threshold, overlapThreshold)
    return performance_out(result, _tag_ids_by_name(iteration.metrics or {}))


@router.get(
    "/projects/{projectId}/iterations/{iterationId}/performance/images",
    response_model=list[ImagePerformanceOut],
    tags=["iterations"],
)
def get_image_performances(
    projectId: str,
    iterationId: str,
    request: Request,
    orderBy: Literal["Newest", "Oldest"] = "Newest",
    take: int = Query(50, ge=0, le=256),
    skip: int = Query(0, ge=0),
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> list[ImagePerformanceOut]:
    views, _total = export_service.performance_images(
        ctx, projectId, iterationId, csv_list(request, "tagIds"), orderBy, take, skip
    )
    iteration = training_service.read_iteration(ctx, projectId, iterationId)
    tag_ids = _tag_ids_by_name(iteration.metrics or {})
    return [image_performance_out(view, _base(request), tag_ids) for view in views]


@router.get(
    "/projects/{projectId}/iterations/{iterationId}/performance/images/count",
    response_model=int,
    tags=["iterations"],
)
def get_image_performance_count(
    projectId: str,
    iterationId: str,
    request: Request,
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> int:
    _views, total = export_service.performance_images(ctx, projectId, iterationId, csv_list(request, "tagIds"), take=0)
    return total


@router.post("/projects/{projectId}/iterations/{iterationId}/publish", response_model=bool, tags=["iterations"])
def publish_iteration(
    projectId: str,
    iterationId: str,
    publishName: str = Query(...),
    predictionId: str | None = Query(None),
    overwrite: bool = False,
    principal: Principal = Depends(training(P.publish)),
    ctx: AppContext = Depends(get_ctx),
) -> bool:
    portability.publish(ctx, principal, projectId, iterationId, publishName, predictionId, overwrite)
    return True


@router.delete("/projects/{projectId}/iterations/{iterationId}/publish", status_code=204, tags=["iterations"])
def unpublish_iteration(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(training(P.publish)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    portability.unpublish(ctx, principal, projectId, iterationId)
    return Response(status_code=204)


@router.get("/projects/{projectId}/iterations/{iterationId}/export", response_model=list[ExportOut], tags=["exports"])
def get_exports(
    projectId: str,
    iterationId: str,
    request: Request,
    principal: Principal = Depends(training(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> list[ExportOut]:
    return [export_out(v, _base(request), projectId) for v in export_service.list_exports(ctx, projectId, iterationId)]


@router.post("/projects/{projectId}/iterations/{iterationId}/export", response_model=ExportOut, tags=["exports"])
def export_iteration(
    projectId: str,
    iterationId: str,
    request: Request,
    platform: str = Query(...),
    flavor: str | None = None,
    principal: Principal = Depends(training(P.export)),
    ctx: AppContext = Depends(get_ctx),
) -> ExportOut:
    view = export_service.export_iteration(ctx, principal, projectId, iterationId, platform, flavor)
    return export_out(view, _base(request), projectId)


# --- stored predictions and quick test ----------------------------------------------------------------------


@router.post("/projects/{projectId}/predictions/query", response_model=PredictionQueryResultOut, tags=["predictions"])
def query_predictions(
    projectId: str,
    request: Request,
    token: PredictionQueryTokenWire = Body(...),
    principal: Principal = Depends(training(P.predictions_read)),
    ctx: AppContext = Depends(get_ctx),
) -> PredictionQueryResultOut:
    query = prediction_service.PredictionQuery(
        iteration_id=token.iteration_id,
        application=token.application,
        start_time=token.start_time,
        end_time=token.end_time,
        tags=tuple(prediction_service.TagThreshold(t.id, t.min_threshold, t.max_threshold) for t in token.tags or []),
        order_by=token.order_by or "Newest",
        max_count=token.max_count or 50,
        continuation=token.continuation,
    )
    rows, continuation = prediction_service.query_predictions(ctx, projectId, query)
    next_token = token.model_copy(update={"continuation": continuation})
    results: list[StoredImagePredictionOut] = [stored_prediction_out(row, _base(request)) for row in rows]
    return PredictionQueryResultOut(token=next_token, results=results)


@router.delete("/projects/{projectId}/predictions", status_code=204, tags=["predictions"])
def delete_prediction(
    projectId: str,
    request: Request,
    principal: Principal = Depends(training(P.predictions_write)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    prediction_service.delete_predictions(ctx, principal, projectId, csv_list(request, "ids"))
    return Response(status_code=204)


@router.post("/projects/{projectId}/quicktest/image", response_model=ImagePredictionOut, tags=["predictions"])
async def quick_test_image(
    projectId: str,
    request: Request,
    iterationId: str | None = None,
    store: bool = True,
    principal: Principal = Depends(training(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> ImagePredictionOut:
    parts = await read_image_parts(request, max_files=1)
    with ctx.db.session() as session:
        project = get_project(session, projectId)
        task = "detect" if project.project_type == "ObjectDetection" else "classify"
    outcome = await _run_prediction(
        ctx, principal,
        prediction_service.PredictRequest(
            projectId, task, parts[0].data, iteration_id=iterationId, store=store
        ),
    )  # fmt: skip
    return image_prediction_out(outcome)


async def _run_prediction(
    ctx: AppContext, principal: Principal, request: prediction_service.PredictRequest
) -> prediction_service.PredictionOutcome:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(prediction_service.predict, ctx, principal, request)


# --- URL routes (off unless the operator enables them) and routes Veil does not implement ------------------


def _urls_disabled(route: str) -> ApiError:
    return ApiError(
        400,
        "BadRequestImageUrl",
        f"{route}: fetching images from URLs is disabled on this Veil server (a server fetching arbitrary "
        "URLs is an SSRF risk); upload the image bytes instead, or ask the operator to enable URL fetching "
        "for an allow-list of hosts (VEIL_URL_FETCH_HOSTS)",
    )


@router.post("/projects/{projectId}/images/urls", response_model=ImageCreateSummaryOut, tags=["images"])
def create_images_from_urls(
    projectId: str,
    batch: ImageUrlCreateBatchIn,
    request: Request,
    principal: Principal = Depends(training(P.images_write)),
    ctx: AppContext = Depends(get_ctx),
) -> JSONResponse:
    from veil.services import url_fetch

    fetcher = url_fetch.UrlFetcher.from_settings(ctx.settings)
    if fetcher is None:
        raise _urls_disabled("POST images/urls")
    uploads = [
        url_fetch.fetched_upload(fetcher, entry.url, entry.tag_ids or [], _regions(entry.regions), batch.metadata)
        for entry in batch.images
    ]
    good = [u for u in uploads if isinstance(u, Upload)]
    refused = [u for u in uploads if not isinstance(u, Upload)]
    outcome = add_images(ctx, principal, projectId, good, batch.tag_ids or []) if good else None
    results = [*(outcome.results if outcome else []), *refused]
    return _summary(BatchOutcome(results), request)


@router.post("/projects/{projectId}/quicktest/url", response_model=ImagePredictionOut, tags=["predictions"])
async def quick_test_image_url(
    projectId: str,
    body: ImageUrlIn,
    iterationId: str | None = None,
    store: bool = True,
    principal: Principal = Depends(training(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> ImagePredictionOut:
    from veil.services import url_fetch

    fetcher = url_fetch.UrlFetcher.from_settings(ctx.settings)
    if fetcher is None:
        raise _urls_disabled("POST quicktest/url")
    data = fetcher.fetch(body.url)
    with ctx.db.session() as session:
        project = get_project(session, projectId)
        task = "detect" if project.project_type == "ObjectDetection" else "classify"
    outcome = await _run_prediction(
        ctx,
        principal,
        prediction_service.PredictRequest(projectId, task, data, iteration_id=iterationId, store=store),
    )
    return image_prediction_out(outcome)


NOT_IMPLEMENTED: tuple[tuple[str, str, str], ...] = (
    ("GET", "/projects/{projectId}/artifacts", "Azure blob-storage artifacts have no Veil equivalent"),
    ("GET", "/projects/{projectId}/images/{imageId}/regionproposals", "region proposals are not implemented"),
    ("POST", "/projects/{projectId}/images/suggested", "the smart labeler is not implemented"),
    ("POST", "/projects/{projectId}/images/suggested/count", "the smart labeler is not implemented"),
    ("POST", "/projects/{projectId}/tagsandregions/suggestions", "the smart labeler is not implemented"),
)


def not_implemented(method: str, path: str, why: str):  # type: ignore[no-untyped-def]
    async def route(request: Request) -> Response:
        raise ApiError(
            501,
            "BadRequestNotSupported",
            f"{method} {path} is not implemented by Veil ({why}); see docs/CUSTOM_VISION_COMPAT.md",
        )

    return route


for _method, _path, _why in NOT_IMPLEMENTED:
    _name = "not_implemented_" + "_".join(p for p in _path.split("/") if p and not p.startswith("{"))
    router.add_api_route(_path, not_implemented(_method, _path, _why), methods=[_method], name=_name,
                         tags=["not implemented"], status_code=501)  # fmt: skip
