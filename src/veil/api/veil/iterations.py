"""Veil's additions on an iteration: its training job (progress, ETA), cancel, PR curves and training curve."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import Ctx, VeilKey
from veil.api.wire.iterations import IterationOut, iteration_out
from veil.api.wire.jobs import JobOut, job_out
from veil.api.wire.privacy_report import IterationPrivacyOut, iteration_privacy_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import iterations as iteration_service
from veil.services import training as training_service

router = APIRouter()


@router.get("/projects/{projectId}/iterations/{iterationId}/job", response_model=JobOut)
def training_progress(
    projectId: str, iterationId: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.iterations_read)]
) -> JobOut:
    """The training job of an iteration: status, stage, percent done and ETA."""
    return job_out(training_service.training_job(ctx, projectId, iterationId))


@router.get("/projects/{projectId}/iterations/{iterationId}/privacy", response_model=IterationPrivacyOut)
def iteration_privacy(
    projectId: str, iterationId: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.iterations_read)]
) -> IterationPrivacyOut:
    """ε spent (if trained with privacy=dp), how (accountant, clipping norm, noise multiplier, sampling rate),
    and the membership-inference audit: attack AUC and TPR at 0.1 % / 1 % FPR with 95 % intervals, verdict."""
    return iteration_privacy_out(iteration_service.iteration_privacy(ctx, projectId, iterationId))


@router.post("/projects/{projectId}/iterations/{iterationId}/cancel", response_model=IterationOut)
def cancel_training(
    projectId: str, iterationId: str, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.train)]
) -> IterationOut:
    """Ask a running training to stop; the iteration becomes `Failed` with "cancelled" as its reason."""
    return iteration_out(training_service.cancel_training(ctx, principal, projectId, iterationId))


@router.get("/projects/{projectId}/iterations/{iterationId}/prcurves/{tagName}", response_class=Response)
async def pr_curve(
    projectId: str, iterationId: str, tagName: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.iterations_read)]
) -> Response:
    """The precision/recall curve PNG of one tag, drawn from the held-out evaluation at training time."""
    data = await run_in_threadpool(iteration_service.pr_curve, ctx, projectId, iterationId, tagName)
    return Response(content=data, media_type="image/png")


@router.get("/projects/{projectId}/iterations/{iterationId}/trainingcurve", response_class=Response)
async def training_curve(
    projectId: str, iterationId: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.iterations_read)]
) -> Response:
    """The training-curve PNG of an Advanced iteration (per epoch: training loss, validation score);
    404 for a Regular iteration, which draws none."""
    data = await run_in_threadpool(iteration_service.training_curve, ctx, projectId, iterationId)
    return Response(content=data, media_type="image/png")
