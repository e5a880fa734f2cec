"""Exports of a trained iteration (Custom Vision's `export` / `getExports`), run as jobs, and their download.

    >>> view = start_export(ctx, actor, project_id, iteration_id, "TensorFlow", "TensorFlowLite")
    >>> view.status                                     # "Exporting": a job of kind `export` is queued
    >>> # the worker's child runs EXPORT_JOB.run(...): the stored ONNX → veil.vision.exports → a sealed zip
    >>> list_exports(ctx, project_id, iteration_id)    # Exporting (with the job's stage and percent) | Done | Failed

The formats are Azure's platform/flavor names (`veil.vision.export_formats`; docs/EXPORTS.md). As on Azure, only
an iteration of a compact domain exports to them; Veil's native ONNX (platform `ONNX`, flavor `Veil`: the bundle
`veil predict` and the edge load, with the model card) is an extension every trained iteration exports. An export
zip is sealed under its own key and owned by its iteration: deleting the iteration (or the project) shreds it.
A running export can be cancelled (Veil extension); it then reads `Failed` with the reason, as a failed one does.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from veil.jobs import queue
from veil.jobs.handlers import JobCancelled, JobContext
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.domains import find_domain
from veil.services.errors import InvalidInput, NotFound
from veil.services.iterations import get_iteration
from veil.services.projects import get_project
from veil.services.vault import Vault
from veil.store.models import Export, Image, Iteration, new_id
from veil.store.records import COMPLETED, TRAINING, IterationRecord
from veil.vision.export_formats import ExportFormat, UnsupportedExport, archive_name, find_format

if TYPE_CHECKING:  # vision is imported where used: the API starts even while a model library is missing
    import numpy as np

    from veil.vision.export import ModelCard

EXPORTING, DONE, FAILED = "Exporting", "Done", "Failed"
JOB_KIND = "export"
VEIL_FLAVOR = "Veil"
CALIBRATION_IMAGES = 64  # the project's own images an int8 export calibrates on
# Rough conversion times on 2 cores (docs/EXPORTS.md), to move the percent while a converter runs.
_EXPECTED_SECONDS = {"TensorFlow": 40.0, "CoreML": 25.0, "OpenVino": 10.0}


@dataclass(frozen=True)
class ExportView:
    id: str
    iteration_id: str
    platform: str
    flavor: str
    status: str
    error: str | None
    job_id: str | None = None
    stage: str = ""
    percent: float | None = None  # of the running job; None once it is settled


def _view(export: Export, job: queue.JobView | None = None) -> ExportView:
    running = job is not None and export.status == EXPORTING
    return ExportView(
        export.id,
        export.iteration_id,
        export.platform,
        export.flavor,
        export.status,
        export.error_reason,
        job.id if job is not None else None,
        job.stage if running and job is not None else "",
        job.progress if running and job is not None else None,
    )


def _jobs_of(session: Session, project_id: str, export_ids: list[str]) -> dict[str, queue.JobView]:
    """The newest job of each export (the job's payload names its export; no column ties them)."""
    return queue.newest_by_payload_in(session, JOB_KIND, project_id, "export_id", export_ids)


def _format_for(iteration: Iteration, platform: str, flavor: str | None) -> ExportFormat:
    """The format asked for, refused with the SDK's codes: not built/unknown (`BadRequestNotSupported`), not
    exportable from this iteration's domain (`BadRequestExportValidationFailed`)."""
    domain = find_domain(iteration.domain_id or "")
    task = domain.task if domain is not None else None
    try:
        fmt = find_format(platform, flavor, task)
    except UnsupportedExport as exc:
        raise InvalidInput(f"cannot export {platform}/{flavor or '-'}: {exc}", code="BadRequestNotSupported") from None
    if fmt.flavor != VEIL_FLAVOR and (domain is None or not domain.exportable):
        name = f"{domain.name} ({domain.type})" if domain is not None else "unknown"
        raise InvalidInput(
            f"iteration {iteration.name!r} was trained on domain {name}, which does not export (as on Azure, only "
            "compact domains do): train it on a compact domain, or export Veil's own ONNX (platform ONNX, flavor Veil)",
            code="BadRequestExportValidationFailed",
        )
    return fmt


def _trained(iteration: Iteration) -> None:
    if iteration.status == TRAINING:
        raise InvalidInput(f"iteration {iteration.name!r} is still training", code="BadRequestExportWhileTraining")
    if iteration.status != COMPLETED or not iteration.model_blob_id:
        raise InvalidInput(
            f"iteration {iteration.id} is not trained (status {iteration.status})",
            code="BadRequestIterationIsNotTrained",
        )


def start_export(
    ctx: AppContext,
    actor: Principal,
    project_id: str,
    iteration_id: str,
    platform: str,
    flavor: str | None,
    run_here: str | None = None,
) -> ExportView:
    """Queue the export of an iteration to `platform`/`flavor` (again, if it was exported before: the new zip
    replaces the old one when it is done). Answers at once with status `Exporting`. With `run_here` (a worker
    identity, `host:pid`), the job is created already claimed by that process, which then runs it itself."""
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        _trained(iteration)
        fmt = _format_for(iteration, platform, flavor)
        # The row keeps the names the caller used (Azure echoes them), in the SDK's letter case.
        stored_platform, stored_flavor = fmt.platform, _stored_flavor(fmt, flavor)
        export = session.scalars(
            select(Export).where(
                Export.iteration_id == iteration_id,
                Export.platform == stored_platform,
                Export.flavor == stored_flavor,
            )
        ).first()
        if export is not None and export.status == EXPORTING:
            job = _jobs_of(session, project_id, [export.id]).get(export.id)
            if job is not None and job.status not in queue.FINAL_STATUSES:
                raise InvalidInput(
                    f"{fmt.title} export of iteration {iteration.name!r} is already running; poll GET .../export",
                    code="BadRequestExportAlreadyInProgress",
                )
        export = export or Export(
            id=new_id(), project_id=project_id, iteration_id=iteration_id, platform=stored_platform,
            flavor=stored_flavor, blob_id=None,
        )  # fmt: skip
        export.status, export.error_reason = EXPORTING, None
        session.add(export)
        session.flush()
        payload = {"project_id": project_id, "iteration_id": iteration_id, "export_id": export.id}
        queue.enqueue_in(session, JOB_KIND, project_id, payload, claimed_by=run_here)
        audit.record(session, actor, "iteration.export", [project_id, iteration_id, export.id])
        return _view(export, _jobs_of(session, project_id, [export.id])[export.id])


def _stored_flavor(fmt: ExportFormat, asked: str | None) -> str:
    if asked and asked.strip().upper() in ("ONNX10", "ONNX12") and fmt.platform == "ONNX":
        return asked.strip().upper()
    return fmt.flavor or ""


def list_exports(ctx: AppContext, project_id: str, iteration_id: str) -> list[ExportView]:
    with ctx.db.session() as session:
        get_project(session, project_id)
        get_iteration(session, project_id, iteration_id)
        rows = list(session.scalars(select(Export).where(Export.iteration_id == iteration_id).order_by(Export.created)))
        jobs = _jobs_of(session, project_id, [row.id for row in rows])
        return [_view(row, jobs.get(row.id)) for row in rows]


def get_export(ctx: AppContext, project_id: str, export_id: str) -> ExportView:
    with ctx.db.session() as session:
        get_project(session, project_id)
        export = _export_row(session, project_id, export_id)
        return _view(export, _jobs_of(session, project_id, [export.id]).get(export.id))


def _export_row(session: Session, project_id: str, export_id: str) -> Export:
    export = session.get(Export, export_id)
    if export is None or export.project_id != project_id:
        raise NotFound(f"export {export_id} not found in project {project_id}", code="NotFound")
    return export


def export_job(ctx: AppContext, project_id: str, export_id: str) -> queue.JobView:
    """The job that builds (or built) an export: status, stage, percent, error."""
    view = get_export(ctx, project_id, export_id)
    job = queue.find(ctx.db, view.job_id) if view.job_id else None
    if job is None:
        raise NotFound(f"export {export_id} has no job (removed after it finished)")
    return job


def cancel_export(ctx: AppContext, actor: Principal, project_id: str, export_id: str) -> ExportView:
    """Stop a running export (Veil extension): it reads `Failed`, "cancelled by the user"; a previous zip of the
    same format is gone too (it was replaced when the export started again)."""
    with ctx.db.session() as session:
        get_project(session, project_id)
        export = _export_row(session, project_id, export_id)
        job = _jobs_of(session, project_id, [export.id]).get(export.id)
        if export.status != EXPORTING or job is None or job.status in queue.FINAL_STATUSES:
            raise InvalidInput(f"export {export_id} is not running (status {export.status})")
        row = queue.request_cancel_in(session, job.id)
        if row is not None and row.status == "cancelled":  # still queued: no handler will run to settle it
            export.status, export.error_reason = FAILED, "cancelled by the user before it started"
        audit.record(session, actor, "iteration.export.cancel", [project_id, export.iteration_id, export_id])
        session.flush()
        return _view(export, job)


def download_export(ctx: AppContext, actor: Principal, project_id: str, export_id: str) -> tuple[bytes, str]:
    """The export's zip (decrypted in memory) and a file name; the read is audited."""
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        export = session.get(Export, export_id)
        if export is None or export.project_id != project_id or not export.blob_id or export.status != DONE:
            raise NotFound(f"export {export_id} not found in project {project_id} (or not done)", code="NotFound")
        iteration = get_iteration(session, project_id, export.iteration_id)
        audit.record(session, actor, "model.download", [project_id, export.iteration_id, export_id])
        blob_id, name = export.blob_id, f"{project.name}-{iteration.name}".replace(" ", "_")
        suffix = _file_suffix(export)
    safe = "".join(c for c in name if c.isalnum() or c in "-_.")[:100] or "model"
    return Vault(ctx).get(project, blob_id), f"{safe}-{suffix}"


def _file_suffix(export: Export) -> str:
    if export.platform == "ONNX" and export.flavor == VEIL_FLAVOR:
        return "veil.onnx.zip"  # the name `veil export` always wrote
    try:
        return archive_name(find_format(export.platform, export.flavor))
    except UnsupportedExport:  # a converter uninstalled since: the zip is still the one made then
        return f"{export.platform.lower()}.zip"


def find_iteration(ctx: AppContext, project_id: str, reference: str | None) -> str:
    """The id of a project's iteration named by id, name or publish name; without a reference, the newest
    trained one. NotFound says what exists when nothing matches."""
    with ctx.db.session() as session:
        get_project(session, project_id)
        iterations = list(
            session.scalars(
                select(Iteration).where(Iteration.project_id == project_id).order_by(Iteration.created.desc())
            )
        )
        if reference is None:
            trained = [i for i in iterations if i.status == COMPLETED]
            if not trained:
                raise NotFound(f"project {project_id} has no trained iteration yet", code="NotFoundIteration")
            return trained[0].id
        for iteration in iterations:
            if reference in (iteration.id, iteration.name, iteration.publish_name):
                return iteration.id
        names = ", ".join(f"{i.name!r}" for i in iterations) or "none"
        raise NotFound(f"no iteration {reference!r} in project {project_id} (iterations: {names})")


# --- the job (runs in the worker's spawned child process, or in `veil export`'s own process) -------------------


def _model_card(iteration: Iteration, labels: list[str]) -> ModelCard:
    from veil.vision.export import ModelCard

    record = IterationRecord.of(iteration)
    stored = dict(record.model_card)
    try:
        return ModelCard(**stored)
    except TypeError:  # an iteration trained before model cards: describe what is known
        return ModelCard(
            name=iteration.name,
            task="",
            labels=labels,
            created_at=(iteration.trained_at or iteration.created).isoformat(),
            veil_version="",
            image_counts={},
            total_images=record.images,
            evaluation_method=record.evaluation_method,
            metrics={},
        )


def _calibration(ctx: AppContext, vault: Vault, project_id: str) -> list[np.ndarray]:
    """Up to 64 of the project's own images (RGB uint8), for int8 quantization; the newest first."""
    import numpy as np
    from PIL import Image as PILImage

    with ctx.db.session() as session:
        project = get_project(session, project_id)
        blobs = list(
            session.scalars(
                select(Image.blob_id)
                .where(Image.project_id == project_id)
                .order_by(Image.created.desc())
                .limit(CALIBRATION_IMAGES)
            )
        )
    images = []
    for blob_id in blobs:
        with PILImage.open(io.BytesIO(vault.get(project, blob_id))) as image:
            images.append(np.asarray(image.convert("RGB")))
    return images


def _run_cancellable(work: Callable[[], Any], job: JobContext, stage: str, start: float, expected_s: float) -> Any:
    """Run a converter (which cannot be interrupted) in a thread while polling the job's cancel flag and moving
    its percent from `start` towards 95 over about `expected_s`. On cancel the job stops at once; the converter
    thread dies with the job's process."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the job's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="veil-export-convert", daemon=True)
    began = time.monotonic()
    thread.start()
    while thread.is_alive():
        thread.join(0.25)
        if job.should_cancel():
            raise JobCancelled("cancelled by the user")
        elapsed = time.monotonic() - began
        done = 1.0 - 0.5 ** (elapsed / max(expected_s, 1.0))  # half way at the expected time, never 100 %
        job.report(stage, start + (95.0 - start) * done, max(expected_s - elapsed, 0.0) or None)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@dataclass(frozen=True)
class _Work:
    project_id: str
    iteration_id: str
    export_id: str
    platform: str
    flavor: str
    model_blob_id: str
    labels: list[str]
    tag_ids: dict[str, str]
    card: Any


class ExportJob:
    """Job kind `export`: payload `{project_id, iteration_id, export_id}`; the export row names the format."""

    def run(self, job: JobContext) -> str | None:
        ctx = AppContext.open(job.settings, migrate=False)
        try:
            return build_export(ctx, job)
        finally:
            ctx.close()

    def on_failure(self, job: JobContext, reason: str) -> None:
        ctx = AppContext.open(job.settings, migrate=False)
        try:
            fail_export(ctx, job.payload.get("export_id", ""), reason)
        finally:
            ctx.close()


def fail_export(ctx: AppContext, export_id: str, reason: str) -> None:
    with ctx.db.session() as session:
        export = session.get(Export, export_id)
        if export is None or export.status != EXPORTING:
            return
        export.status, export.error_reason = FAILED, reason[:4000]
        audit.record(session, None, "iteration.export.failed", [export.project_id, export.iteration_id, export.id],
                     "failed")  # fmt: skip


def build_export(ctx: AppContext, job: JobContext) -> str:
    """Convert the iteration's stored ONNX to the export's format, seal the zip, mark the export `Done`."""
    work = _load_work(ctx, job.payload)
    vault = Vault(ctx)
    with ctx.db.session() as session:
        project = get_project(session, work.project_id)
    job.report("reading the model", 5.0, None, True)
    onnx_bytes = vault.get(project, work.model_blob_id)
    fmt = find_format(work.platform, work.flavor)
    if job.should_cancel():
        raise JobCancelled("cancelled by the user")
    if fmt.flavor == VEIL_FLAVOR:
        from veil.vision.export import make_bundle

        data = make_bundle(onnx_bytes, work.card)
    else:
        from veil.vision.exports import ExportOptions, export_model

        calibration: list[np.ndarray] = []
        if fmt.flavor == "TensorFlowLiteInt8":
            job.report("reading calibration images", 10.0, None, True)
            calibration = _calibration(ctx, vault, work.project_id)
        options = ExportOptions(calibration=calibration, tag_ids=work.tag_ids)
        card = {"model_card.json": work.card.to_json(), "model_card.md": work.card.to_markdown()}
        artifact = _run_cancellable(
            lambda: export_model(onnx_bytes, fmt.platform, fmt.flavor, options=options, extra_files=card),
            job,
            f"converting to {fmt.title}",
            15.0,
            _EXPECTED_SECONDS.get(fmt.platform, 3.0),
        )
        data = artifact.data
    job.report("sealing", 96.0, 0.0, True)
    blob_id = new_id()
    vault.put(project, blob_id, data, owner_id=work.iteration_id)  # shredded with the iteration
    old_blob: str | None = None
    with ctx.db.session() as session:
        export = session.get(Export, work.export_id)
        if export is None:  # the iteration (or the export) was deleted meanwhile
            old_blob = blob_id
        else:
            session.refresh(export, with_for_update=True)
            old_blob, export.blob_id = export.blob_id, blob_id
            export.status, export.error_reason = DONE, None
            audit.record(session, None, "iteration.exported", [work.project_id, work.iteration_id, export.id])
    if old_blob:
        vault.delete(project, old_blob)
    return f"exported {fmt.key} ({len(data) / 1e6:.1f} MB)"


def _load_work(ctx: AppContext, payload: dict[str, Any]) -> _Work:
    with ctx.db.session() as session:
        export = _export_row(session, payload["project_id"], payload["export_id"])
        iteration = get_iteration(session, export.project_id, export.iteration_id)
        _trained(iteration)
        record = IterationRecord.of(iteration)
        labels = [label.name for label in record.labels]
        assert iteration.model_blob_id is not None
        return _Work(
            project_id=export.project_id,
            iteration_id=iteration.id,
            export_id=export.id,
            platform=export.platform,
            flavor=export.flavor,
            model_blob_id=iteration.model_blob_id,
            labels=labels,
            tag_ids={label.name: label.id for label in record.labels if label.id},
            card=_model_card(iteration, labels),
        )


EXPORT_JOB = ExportJob()


# --- in process: `veil export` on a data directory -------------------------------------------------------------


def export_now(
    ctx: AppContext,
    actor: Principal,
    project_id: str,
    iteration_reference: str | None,
    platform: str = "ONNX",
    flavor: str | None = VEIL_FLAVOR,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[bytes, str]:
    """Export an iteration in this process (no worker needed) and return the zip's bytes and file name — what
    `veil export` writes. The export is a job like any other, held by this process (progress and heartbeat in
    its row; if the process dies, a worker runs it again), and `getExports` lists it."""
    from veil.jobs.worker import worker_identity

    identity = worker_identity()
    iteration_id = find_iteration(ctx, project_id, iteration_reference)
    view = start_export(ctx, actor, project_id, iteration_id, platform, flavor, run_here=identity)
    job_id = view.job_id
    assert job_id is not None

    written = {"progress": 0.0, "cancel": 0.0}

    def due(what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now - written[what] < every_s:
            return False
        written[what] = now
        return True

    def report(stage: str, percent: float, eta_seconds: float | None = None, force: bool = False) -> None:
        if progress is not None:
            progress(stage, percent)
        if force or due("progress", 1.0):
            queue.heartbeat(ctx.db, job_id, identity)
            queue.report_progress(ctx.db, job_id, stage, percent, eta_seconds)

    def should_cancel() -> bool:
        return due("cancel", 1.0) and queue.cancel_requested(ctx.db, job_id)

    payload = {"project_id": project_id, "iteration_id": iteration_id, "export_id": view.id}
    job = JobContext(ctx.settings, job_id, JOB_KIND, payload, report, should_cancel)
    try:
        message = build_export(ctx, job)
    except BaseException as exc:
        cancelled = isinstance(exc, (KeyboardInterrupt, JobCancelled))
        reason = "cancelled by the user" if cancelled else f"{type(exc).__name__}: {exc}"
        fail_export(ctx, view.id, reason)
        queue.finish(ctx.db, job_id, "cancelled" if cancelled else "failed", message=reason)
        raise
    queue.finish(ctx.db, job_id, "succeeded", message=message)
    return download_export(ctx, actor, project_id, view.id)
