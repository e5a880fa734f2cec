"""Veil's own `/veil/v1` additions to the Custom Vision surface: training progress and cancel, export
downloads (the `downloadUri` of `getExports`), kept prediction images, per-iteration PR curves and training
curve (Advanced training), and a store-nothing anonymize endpoint.

Authorized with either `Training-Key` or `Prediction-Key`; the key's role decides (export downloads need the
`models.read` permission a trainer or admin key has — never a public link).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from veil.api.deps import get_ctx, read_image_parts, veil_key
from veil.api.errors import ApiError
from veil.api.schemas_cv import IterationOut, JobOut, iteration_out
from veil.jobs import queue
from veil.security.auth import Permission, Principal
from veil.services import anonymize as anonymize_service
from veil.services import exports as export_service
from veil.services import prediction as prediction_service
from veil.services import training as training_service
from veil.services.context import AppContext
from veil.services.projects import get_project
from veil.services.vault import Vault

router = APIRouter(prefix="/veil/v1", tags=["veil"])
P = Permission


@router.get("/projects/{projectId}/iterations/{iterationId}/job", response_model=JobOut)
def training_progress(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(veil_key(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> JobOut:
    """The training job of an iteration: status, stage, percent done and ETA."""
    iteration = training_service.read_iteration(ctx, projectId, iterationId)
    job = queue.find(ctx.db, iteration.job_id) if iteration.job_id else None
    if job is None:
        raise ApiError(404, "NotFound", f"iteration {iterationId} has no training job (imported or removed)")
    return JobOut(
        id=job.id, kind=job.kind, status=job.status, stage=job.stage, percent=job.progress,
        eta_seconds=job.eta_seconds, error=job.error, cancel_requested=job.cancel_requested,
        created=job.created, started_at=job.started_at, finished_at=job.finished_at,
    )  # fmt: skip


@router.post("/projects/{projectId}/iterations/{iterationId}/cancel", response_model=IterationOut)
def cancel_training(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(veil_key(P.train)),
    ctx: AppContext = Depends(get_ctx),
) -> IterationOut:
    """Ask a running training to stop; the iteration becomes `Failed` with "cancelled" as its reason."""
    return iteration_out(training_service.cancel_training(ctx, principal, projectId, iterationId))


@router.get("/projects/{projectId}/exports/{exportId}/download", response_class=Response)
async def download_export(
    projectId: str,
    exportId: str,
    principal: Principal = Depends(veil_key(P.models_read)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    """The exported model bundle (zip: model.onnx, labels.txt, model_card.json/md), decrypted in memory."""
    data, filename = await run_in_threadpool(export_service.download_export, ctx, principal, projectId, exportId)
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get("/projects/{projectId}/predictions/{predictionId}/image", response_class=Response)
async def stored_prediction_image(
    projectId: str,
    predictionId: str,
    principal: Principal = Depends(veil_key(P.image_bytes)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    """The kept image of a stored prediction (until the project's retention deletes it)."""
    data, content_type = await run_in_threadpool(
        prediction_service.stored_image, ctx, principal, projectId, predictionId
    )
    return Response(content=data, media_type=content_type, headers={"Cache-Control": "no-store"})


@router.get("/projects/{projectId}/iterations/{iterationId}/prcurves/{tagName}", response_class=Response)
async def pr_curve(
    projectId: str,
    iterationId: str,
    tagName: str,
    principal: Principal = Depends(veil_key(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    """The precision/recall curve PNG of one tag, drawn from the held-out evaluation at training time."""

    def read() -> bytes:
        with ctx.db.session() as session:
            project = get_project(session, projectId)
            iteration = training_service.get_iteration(session, projectId, iterationId)
            blob_id = ((iteration.metrics or {}).get("pr_curve_blob_ids") or {}).get(tagName)
        if not blob_id:
            raise ApiError(404, "NotFound", f"iteration {iterationId} has no PR curve for tag {tagName!r}")
        return Vault(ctx).get(project, blob_id)

    return Response(content=await run_in_threadpool(read), media_type="image/png")


@router.get("/projects/{projectId}/iterations/{iterationId}/trainingcurve", response_class=Response)
async def training_curve(
    projectId: str,
    iterationId: str,
    principal: Principal = Depends(veil_key(P.iterations_read)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    """The training-curve PNG of an Advanced iteration (per epoch: training loss, validation score);
    404 for a Regular iteration, which draws none."""
    data = await run_in_threadpool(training_service.training_curve, ctx, projectId, iterationId)
    return Response(content=data, media_type="image/png")


@router.post("/anonymize", response_class=Response)
async def anonymize_image(
    request: Request,
    targets: str = "faces",
    method: str = "solid",
    principal: Principal = Depends(veil_key(P.predict)),
    ctx: AppContext = Depends(get_ctx),
) -> Response:
    """Hide faces (or other `targets`) in one image and return it; Veil stores nothing at all.

    Body: the image (octet-stream or multipart). `method`: solid, pixelate, blur or dp-pixelate. The answer is
    the anonymized image; `X-Veil-Hidden` says how many regions were obscured.
    """
    parts = await read_image_parts(request, max_files=1)
    wanted = tuple(t.strip() for t in targets.split(",") if t.strip())
    result = await run_in_threadpool(anonymize_service.anonymize, ctx, parts[0].data, wanted, method)
    return Response(
        content=result.data,
        media_type=result.content_type,
        headers={"X-Veil-Hidden": str(result.hidden), "Cache-Control": "no-store"},
    )
