"""Custom Vision Prediction routes (mounted under `/customvision/v3.0/prediction` and `/v3.1/prediction`).

`.../image` stores the image and result (sealed, expiring with the project's retention, unless the project's
privacy policy forbids storing predictions); `.../image/nostore` writes nothing anywhere. The `.../url` routes
fetch only when the operator enabled URL fetching for an allow-list of hosts. Auth: `Prediction-Key`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from veil.api.deps import Ctx, OneImage, PredictionKey
from veil.api.wire.predictions import ImagePredictionOut, ImageUrlIn, image_prediction_out
from veil.security.auth import Principal
from veil.services import predictions as prediction_service
from veil.services import url_fetch
from veil.services.context import AppContext

router = APIRouter(tags=["prediction"])

TASKS = ("classify", "detect")


async def _predict(
    ctx: AppContext, principal: Principal, project_id: str, task: str, name: str, data: bytes, store: bool,
    application: str | None,
) -> ImagePredictionOut:  # fmt: skip
    request = prediction_service.PredictRequest(
        project_id=project_id, task=task, data=data, published_name=name, store=store, application=application
    )
    outcome = await run_in_threadpool(prediction_service.predict, ctx, principal, request)
    return image_prediction_out(outcome)


def _image_route(task: str, store: bool) -> Callable[..., Awaitable[ImagePredictionOut]]:
    async def route(
        projectId: str,
        publishedName: str,
        ctx: Ctx,
        principal: Annotated[Principal, PredictionKey()],
        data: OneImage,
        application: str | None = None,
    ) -> ImagePredictionOut:
        return await _predict(ctx, principal, projectId, task, publishedName, data, store, application)

    route.__doc__ = f"{task.capitalize()} an image with a published iteration; " + (
        "the image and result are kept until the project's retention ends." if store else "nothing is stored."
    )
    return route


def _url_route(task: str, store: bool) -> Callable[..., Awaitable[ImagePredictionOut]]:
    async def route(
        projectId: str,
        publishedName: str,
        body: ImageUrlIn,
        ctx: Ctx,
        principal: Annotated[Principal, PredictionKey()],
        application: str | None = None,
    ) -> ImagePredictionOut:
        fetcher = url_fetch.required_fetcher(ctx.settings, f"{task}/.../url")
        data = await run_in_threadpool(fetcher.fetch, body.url)
        return await _predict(ctx, principal, projectId, task, publishedName, data, store, application)

    route.__doc__ = f"{task.capitalize()} the image at a URL (only when the operator enabled URL fetching)."
    return route


for _task in TASKS:
    for _suffix, _store in (("", True), ("/nostore", False)):
        router.add_api_route(
            f"/{{projectId}}/{_task}/iterations/{{publishedName}}/image{_suffix}",
            _image_route(_task, _store),
            methods=["POST"],
            response_model=ImagePredictionOut,
            name=f"{_task}_image{'_nostore' if not _store else ''}",
        )
        router.add_api_route(
            f"/{{projectId}}/{_task}/iterations/{{publishedName}}/url{_suffix}",
            _url_route(_task, _store),
            methods=["POST"],
            response_model=ImagePredictionOut,
            name=f"{_task}_url{'_nostore' if not _store else ''}",
        )
