"""Custom Vision Prediction routes (mounted under `/customvision/v3.0/prediction` and `/v3.1/prediction`).

`.../image` stores the image and result (sealed, expiring with the project's retention, unless the project's
privacy policy forbids storing predictions); `.../image/nostore` writes nothing anywhere. The `.../url` routes
fetch only when the operator enabled URL fetching for an allow-list of hosts. Auth: `Prediction-Key`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from veil.api.deps import get_ctx, prediction, read_image_parts
from veil.api.errors import ApiError
from veil.api.schemas_cv import ImagePredictionOut, ImageUrlIn, image_prediction_out
from veil.security.auth import Principal
from veil.services import prediction as prediction_service
from veil.services import url_fetch
from veil.services.context import AppContext

router = APIRouter()

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


def _image_route(task: str, store: bool):  # type: ignore[no-untyped-def]
    async def route(
        projectId: str,
        publishedName: str,
        request: Request,
        application: str | None = None,
        principal: Principal = Depends(prediction()),
        ctx: AppContext = Depends(get_ctx),
    ) -> ImagePredictionOut:
        parts = await read_image_parts(request, max_files=1)
        return await _predict(ctx, principal, projectId, task, publishedName, parts[0].data, store, application)

    route.__doc__ = f"{task.capitalize()} an image with a published iteration; " + (
        "the image and result are kept until the project's retention ends." if store else "nothing is stored."
    )
    return route


def _url_route(task: str, store: bool):  # type: ignore[no-untyped-def]
    async def route(
        projectId: str,
        publishedName: str,
        body: ImageUrlIn,
        application: str | None = None,
        principal: Principal = Depends(prediction()),
        ctx: AppContext = Depends(get_ctx),
    ) -> ImagePredictionOut:
        fetcher = url_fetch.UrlFetcher.from_settings(ctx.settings)
        if fetcher is None:
            raise ApiError(
                400,
                "BadRequestImageUrl",
                f"{task}/.../url: fetching images from URLs is disabled on this Veil server (SSRF risk); "
                "send the bytes to the .../image route, or ask the operator to set VEIL_URL_FETCH_HOSTS",
            )
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
