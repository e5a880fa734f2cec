"""Iterations: list, read, rename, delete (shredding their artifacts), publish and unpublish, and what training
measured (performance at any threshold, per-image results, PR and training curves, the privacy report).

Starting and cancelling a training is `services.training`; exports of an iteration are `services.exports`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from veil.jobs import queue
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.errors import Conflict, InvalidInput, NotFound
from veil.services.projects import get_project
from veil.services.vault import Vault
from veil.store.models import Export, Image, Iteration, Project, Tag, utcnow
from veil.store.records import COMPLETED, TRAINING, IterationRecord, PrivacyRecord, PrivacyRequestRecord

if TYPE_CHECKING:
    from veil.vision.metrics import Evaluation, ImageResult, Performance


def get_iteration(session: Session, project_id: str, iteration_id: str) -> Iteration:
    iteration = session.get(Iteration, iteration_id)
    if iteration is None or iteration.project_id != project_id:
        raise NotFound(f"iteration {iteration_id} not found in project {project_id}", code="NotFoundIteration")
    return iteration


def list_iterations(ctx: AppContext, project_id: str) -> list[Iteration]:
    with ctx.db.read_session() as session:
        get_project(session, project_id)
        query = select(Iteration).where(Iteration.project_id == project_id).order_by(Iteration.created.desc())
        iterations = list(session.scalars(query))
        session.expunge_all()  # keep the loaded rows usable after the read session rolls back
        return iterations


def read_iteration(ctx: AppContext, project_id: str, iteration_id: str) -> Iteration:
    """One iteration (read-only: status polling never takes SQLite's write lock)."""
    with ctx.db.read_session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        session.expunge_all()
        return iteration


def rename_iteration(ctx: AppContext, actor: Principal, project_id: str, iteration_id: str, name: str) -> Iteration:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("an iteration name is 1 to 200 characters", code="BadRequestIterationName")
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        iteration.name = name
        audit.record(session, actor, "iteration.update", [project_id, iteration_id])
        return iteration


def delete_iteration(ctx: AppContext, actor: Principal, project_id: str, iteration_id: str) -> None:
    """Delete an iteration and its sealed artifacts; a published one must be unpublished first."""
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        if iteration.publish_name:
            raise InvalidInput("the iteration is published; unpublish it first", code="BadRequestIterationIsPublished")
        if iteration.status == TRAINING and iteration.job_id:
            queue.request_cancel_in(session, iteration.job_id)
        # A running export's zip would have no row to go to.
        queue.cancel_by_payload_in(session, "export", project_id, "iteration_id", iteration.id)
        blob_ids = _artifact_blob_ids(iteration)
        blob_ids += [b for b in session.scalars(select(Export.blob_id).where(Export.iteration_id == iteration.id)) if b]
        session.execute(delete(Export).where(Export.iteration_id == iteration.id))
        session.delete(iteration)
        audit.record(session, actor, "iteration.delete", [project_id, iteration_id])
    vault = Vault(ctx)
    for blob_id in blob_ids:
        vault.delete(project, blob_id)


def _artifact_blob_ids(iteration: Iteration) -> list[str]:
    model = [iteration.model_blob_id] if iteration.model_blob_id else []
    return [*model, *IterationRecord.of(iteration).artifact_blob_ids()]


def pr_curve(ctx: AppContext, project_id: str, iteration_id: str, tag_name: str) -> bytes:
    """The precision/recall curve PNG of one tag, drawn from the held-out evaluation at training time."""
    with ctx.db.read_session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        blob_id = IterationRecord.of(iteration).pr_curve_blob_ids.get(tag_name)
        if not blob_id:
            raise NotFound(f"iteration {iteration_id} has no PR curve for tag {tag_name!r}")
        return Vault(ctx).get(project, blob_id)


def training_curve(ctx: AppContext, project_id: str, iteration_id: str) -> bytes:
    """The training-curve PNG of an Advanced iteration (loss and validation score per epoch), decrypted."""
    with ctx.db.read_session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        blob_id = IterationRecord.of(iteration).training_curve_blob_id
        if not blob_id:
            why = (
                "only Advanced training draws one"
                if iteration.training_type != "Advanced"
                else f"it is {iteration.status}; the curve is stored when Advanced training completes"
            )
            raise NotFound(f"iteration {iteration_id} has no training curve: {why}")
        return Vault(ctx).get(project, blob_id)


@dataclass(frozen=True)
class IterationPrivacy:
    """An iteration's privacy report: the budget asked for, what DP spent and the membership-inference audit."""

    iteration_id: str
    requested: PrivacyRequestRecord | None
    report: PrivacyRecord


def iteration_privacy(ctx: AppContext, project_id: str, iteration_id: str) -> IterationPrivacy:
    """What an iteration spent (ε, δ, mechanism; None if not private) and its membership-inference audit."""
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        record = IterationRecord.of(iteration)
        if iteration.status != COMPLETED:
            raise NotFound(f"iteration {iteration_id} has no privacy report: it is {iteration.status}")
        # rows trained before the report was its own field kept it only in the model card
        report = record.privacy or PrivacyRecord.model_validate(record.model_card.get("privacy") or {})
        return IterationPrivacy(iteration.id, record.privacy_request, report)


def load_evaluation(ctx: AppContext, project: Project, iteration: Iteration) -> Evaluation:
    """The held-out evaluation an iteration stored (decrypted in memory only)."""
    from veil.vision.metrics import Evaluation

    blob_id = IterationRecord.of(iteration).evaluation_blob_id
    if iteration.status != COMPLETED or not blob_id:
        raise InvalidInput(
            f"iteration {iteration.id} is not trained (status {iteration.status})",
            code="BadRequestIterationIsNotTrained",
        )
    return Evaluation.from_dict(json.loads(Vault(ctx).get(project, blob_id)))


MAX_PUBLISH_NAME = 200


def publish(
    ctx: AppContext,
    actor: Principal,
    project_id: str,
    iteration_id: str,
    publish_name: str,
    prediction_resource_id: str | None,
    overwrite: bool,
) -> Iteration:
    name = (publish_name or "").strip()
    if not name or len(name) > MAX_PUBLISH_NAME or "/" in name:
        raise InvalidInput(
            f"publishName must be 1..{MAX_PUBLISH_NAME} characters without '/'",
            code="BadRequestInvalidPublishName",
        )
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        if iteration.status != COMPLETED:
            raise InvalidInput(
                f"iteration {iteration_id} is not trained (status {iteration.status})",
                code="BadRequestIterationIsNotTrained",
            )
        holder = session.scalars(
            select(Iteration).where(
                Iteration.project_id == project_id,
                Iteration.publish_name == name,
                Iteration.id != iteration_id,
            )
        ).first()
        if holder is not None:
            if not overwrite:
                raise Conflict(
                    f"{name!r} is already published by {holder.name}; unpublish it or pass overwrite=true",
                    code="BadRequestInvalidPublishName",
                )
            holder.publish_name, holder.published_at = None, None
        iteration.publish_name, iteration.published_at = name, utcnow()
        if prediction_resource_id:
            record = IterationRecord.of(iteration)
            record.model_copy(update={"prediction_resource_id": prediction_resource_id}).save_to(iteration)
        audit.record(session, actor, "iteration.publish", [project_id, iteration_id, name])
        return iteration


def unpublish(ctx: AppContext, actor: Principal, project_id: str, iteration_id: str) -> None:
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        if not iteration.publish_name:
            raise InvalidInput(f"iteration {iteration_id} is not published", code="BadRequestIterationNotPublished")
        iteration.publish_name, iteration.published_at = None, None
        audit.record(session, actor, "iteration.unpublish", [project_id, iteration_id])


def iteration_performance(
    ctx: AppContext, project_id: str, iteration_id: str, threshold: float, overlap_threshold: float
) -> tuple[Iteration, Performance]:
    """Custom Vision's performance numbers, recomputed from the held-out evaluation at this threshold."""
    for name, value in (("threshold", threshold), ("overlapThreshold", overlap_threshold)):
        if not 0.0 <= value <= 1.0:
            raise InvalidInput(f"{name} must be between 0 and 1, got {value}")
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
    from veil.vision.metrics import performance

    evaluation = load_evaluation(ctx, project, iteration)
    return iteration, performance(evaluation, threshold, overlap_threshold)


@dataclass(frozen=True)
class ImagePerformanceView:
    """A held-out image with what the iteration predicted for it."""

    image: Image
    result: ImageResult


def performance_images(
    ctx: AppContext,
    project_id: str,
    iteration_id: str,
    tag_ids: list[str] | None = None,
    order_by: str = "Newest",
    take: int = 50,
    skip: int = 0,
) -> tuple[list[ImagePerformanceView], int]:
    """Held-out images of an iteration (optionally only those whose ground truth has one of `tag_ids`)."""
    if not 0 <= take <= 256 or skip < 0:
        raise InvalidInput("take must be 0..256 and skip ≥ 0")
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        names = {tag.id: tag.name for tag in session.scalars(select(Tag).where(Tag.project_id == project_id))}
    evaluation = load_evaluation(ctx, project, iteration)
    wanted = {names[t] for t in tag_ids or [] if t in names}
    results = [
        r for r in evaluation.images if not wanted or wanted & (set(r.true_labels) | {box.tag for box in r.true_boxes})
    ]
    with ctx.db.session() as session:
        rows = session.scalars(
            select(Image)
            .options(selectinload(Image.tag_links), selectinload(Image.regions))
            .where(Image.project_id == project_id, Image.id.in_([r.key for r in results]))
        )
        images = {image.id: image for image in rows}
    views = [ImagePerformanceView(images[r.key], r) for r in results if r.key in images]
    views.sort(key=lambda v: v.image.created, reverse=order_by != "Oldest")
    return views[skip : skip + take], len(views)
