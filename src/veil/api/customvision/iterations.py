"""Iterations: train (creates one), list, get, rename, delete, performance (overall and per image), publish
and unpublish."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Response

from veil.api.deps import BaseUrl, Ctx, TagIds, TrainingKey
from veil.api.wire.iterations import (
    ImagePerformanceOut,
    IterationOut,
    IterationPerformanceOut,
    IterationUpdateIn,
    TrainingParametersIn,
    image_performance_out,
    iteration_out,
    performance_out,
)
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import iterations as iteration_service
from veil.services import training as training_service
from veil.store.records import IterationRecord

router = APIRouter(tags=["iterations"])

TRAINING_TYPES = Literal["Regular", "Advanced"]


@router.post("/projects/{projectId}/train", response_model=IterationOut)
def train_project(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.train)],
    trainingType: TRAINING_TYPES = "Regular",
    reservedBudgetInHours: int = Query(0, ge=0),
    forceTrain: bool = False,
    notificationEmailAddress: str | None = None,
    backbone: str | None = Query(
        None,
        description=(
            "Veil extension: efficientnet-lite0, -lite1 or -lite2; yolox-nano (detection: COCO-pretrained "
            "detector, the detection default; privacy=dp detection defaults to efficientnet-lite0) (default: the "
            "project's domain's)"
        ),
    ),
    parameters: TrainingParametersIn | None = Body(None),
    privacy: str | None = Query(None, description="Veil extension: dp = differentially private training"),
    epsilon: float | None = Query(None, description="Veil extension, with privacy=dp: the ε to spend (e.g. 8)"),
    delta: str = Query("auto", description="Veil extension, with privacy=dp: δ below 1/N, or auto = 1/(10·N)"),
) -> IterationOut:
    options = training_service.TrainOptions(
        training_type=trainingType,
        reserved_budget_in_hours=reservedBudgetInHours,
        force_train=forceTrain,
        selected_tags=list(parameters.selected_tags or []) if parameters else [],
        backbone=backbone,
        privacy=privacy,
        epsilon=epsilon,
        delta=delta,
    )
    return iteration_out(training_service.start_training(ctx, principal, projectId, options))


@router.get("/projects/{projectId}/iterations", response_model=list[IterationOut])
def get_iterations(
    projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.iterations_read)]
) -> list[IterationOut]:
    return [iteration_out(i) for i in iteration_service.list_iterations(ctx, projectId)]


@router.get("/projects/{projectId}/iterations/{iterationId}", response_model=IterationOut)
def get_iteration(
    projectId: str, iterationId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.iterations_read)]
) -> IterationOut:
    return iteration_out(iteration_service.read_iteration(ctx, projectId, iterationId))


@router.patch("/projects/{projectId}/iterations/{iterationId}", response_model=IterationOut)
def update_iteration(
    projectId: str,
    iterationId: str,
    body: IterationUpdateIn,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.train)],
) -> IterationOut:
    if body.name is None:
        return iteration_out(iteration_service.read_iteration(ctx, projectId, iterationId))
    return iteration_out(iteration_service.rename_iteration(ctx, principal, projectId, iterationId, body.name))


@router.delete("/projects/{projectId}/iterations/{iterationId}", status_code=204)
def delete_iteration(
    projectId: str, iterationId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.train)]
) -> Response:
    iteration_service.delete_iteration(ctx, principal, projectId, iterationId)
    return Response(status_code=204)


@router.get("/projects/{projectId}/iterations/{iterationId}/performance", response_model=IterationPerformanceOut)
def get_iteration_performance(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    _: Annotated[Principal, TrainingKey(P.iterations_read)],
    threshold: float = 0.5,
    overlapThreshold: float = 0.3,
) -> IterationPerformanceOut:
    iteration, result = iteration_service.iteration_performance(
        ctx, projectId, iterationId, threshold, overlapThreshold
    )
    return performance_out(result, IterationRecord.of(iteration).tag_ids_by_name())


@router.get(
    "/projects/{projectId}/iterations/{iterationId}/performance/images", response_model=list[ImagePerformanceOut]
)
def get_image_performances(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.iterations_read)],
    tag_ids: TagIds,
    orderBy: Literal["Newest", "Oldest"] = "Newest",
    take: int = Query(50, ge=0, le=256),
    skip: int = Query(0, ge=0),
) -> list[ImagePerformanceOut]:
    views, _total = iteration_service.performance_images(ctx, projectId, iterationId, tag_ids, orderBy, take, skip)
    iteration = iteration_service.read_iteration(ctx, projectId, iterationId)
    names = IterationRecord.of(iteration).tag_ids_by_name()
    return [image_performance_out(view, base_url, names) for view in views]


@router.get("/projects/{projectId}/iterations/{iterationId}/performance/images/count", response_model=int)
def get_image_performance_count(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    _: Annotated[Principal, TrainingKey(P.iterations_read)],
    tag_ids: TagIds,
) -> int:
    _views, total = iteration_service.performance_images(ctx, projectId, iterationId, tag_ids, take=0)
    return total


@router.post("/projects/{projectId}/iterations/{iterationId}/publish", response_model=bool)
def publish_iteration(
    projectId: str,
    iterationId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.publish)],
    publishName: str = Query(...),
    predictionId: str | None = Query(None),
    overwrite: bool = False,
) -> bool:
    iteration_service.publish(ctx, principal, projectId, iterationId, publishName, predictionId, overwrite)
    return True


@router.delete("/projects/{projectId}/iterations/{iterationId}/publish", status_code=204)
def unpublish_iteration(
    projectId: str, iterationId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.publish)]
) -> Response:
    iteration_service.unpublish(ctx, principal, projectId, iterationId)
    return Response(status_code=204)
