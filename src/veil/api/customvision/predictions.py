"""Stored predictions and quick test (Training API): query, delete, quick-test an image or a URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import BaseUrl, Ctx, OneImage, PredictionIds, TrainingKey
from veil.api.wire.predictions import (
    ImagePredictionOut,
    ImageUrlIn,
    PredictionQueryResultOut,
    PredictionQueryTokenWire,
    image_prediction_out,
    stored_prediction_out,
)
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import predictions as prediction_service
from veil.services import url_fetch

router = APIRouter(tags=["predictions"])


@router.post("/projects/{projectId}/predictions/query", response_model=PredictionQueryResultOut)
def query_predictions(
    projectId: str,
    ctx: Ctx,
    base_url: BaseUrl,
    _: Annotated[Principal, TrainingKey(P.predictions_read)],
    token: PredictionQueryTokenWire = Body(...),
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
    domains = prediction_service.iteration_domains(ctx, projectId)
    next_token = token.model_copy(update={"continuation": continuation})
    results = [stored_prediction_out(row, base_url, domains.get(row.iteration_id or "")) for row in rows]
    return PredictionQueryResultOut(token=next_token, results=results)


@router.delete("/projects/{projectId}/predictions", status_code=204)
def delete_prediction(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.predictions_write)],
    ids: PredictionIds,
) -> Response:
    prediction_service.delete_predictions(ctx, principal, projectId, ids)
    return Response(status_code=204)


@router.post("/projects/{projectId}/quicktest/image", response_model=ImagePredictionOut)
async def quick_test_image(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.train)],
    data: OneImage,
    iterationId: str | None = None,
    store: bool = True,
) -> ImagePredictionOut:
    outcome = await run_in_threadpool(
        prediction_service.quick_test, ctx, principal, projectId, data, iterationId, store
    )
    return image_prediction_out(outcome)


@router.post("/projects/{projectId}/quicktest/url", response_model=ImagePredictionOut)
async def quick_test_image_url(
    projectId: str,
    body: ImageUrlIn,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.train)],
    iterationId: str | None = None,
    store: bool = True,
) -> ImagePredictionOut:
    fetcher = url_fetch.required_fetcher(ctx.settings, "POST quicktest/url")
    data = await run_in_threadpool(fetcher.fetch, body.url)
    outcome = await run_in_threadpool(
        prediction_service.quick_test, ctx, principal, projectId, data, iterationId, store
    )
    return image_prediction_out(outcome)
