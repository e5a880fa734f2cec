"""Training: start a training (validated at once, queued as a job), cancel it, follow its job, and the job
handler itself (reading, renaming, publishing and measuring iterations is `services.iterations`).

    >>> iteration = start_training(ctx, actor, project_id, TrainOptions(training_type="Regular"))
    >>> # the worker's child runs TRAINING_JOB.run(...): samples → veil.vision.train → sealed artifacts

What a trained iteration keeps (all blobs sealed with the project's key): the ONNX model, the held-out
evaluation (per-image predictions and ground truth, so performance is recomputed at any threshold on request),
PR-curve PNGs, and in its `IterationRecord` the label order with tag ids, the evaluation method, the model card.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from veil.jobs import queue
from veil.jobs.handlers import JobCancelled, JobContext
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.domains import find_domain
from veil.services.errors import InvalidInput, NotFound, ServiceError
from veil.services.iterations import get_iteration, read_iteration
from veil.services.privacy import privacy_policy
from veil.services.projects import get_project, is_detection, task_of
from veil.services.vault import Vault
from veil.store.models import Image, ImageTag, Iteration, Project, Region, Tag, new_id, utcnow
from veil.store.records import (
    COMPLETED,
    FAILED,
    TRAINING,
    IterationRecord,
    LabelRecord,
    PrivacyRecord,
    PrivacyRequestRecord,
)
from veil.vision.variants import DEFAULT_PRIVATE_DETECTION_BACKBONE, backbone_named

if TYPE_CHECKING:
    pass

log = logging.getLogger("veil.training")

MIN_IMAGES_CLASSIFICATION = 5
MIN_IMAGES_DETECTION = 15


class TrainingNotNeeded(ServiceError):
    code = "BadRequestTrainingNotNeeded"


class NotEnoughImagesPerTag(ServiceError):
    """Too few labelled images: Custom Vision's training-validation code for the project's kind."""

    code = "BadRequestTrainingValidationFailed"


# Custom Vision's code per task when a project does not have enough labelled images to train.
VALIDATION_CODES = {
    "classify": "BadRequestMultiClassClassificationTrainingValidationFailed",
    "multilabel": "BadRequestMultiLabelClassificationTrainingValidationFailed",
    "detect": "BadRequestDetectionTrainingValidationFailed",
}


class TrainingAlreadyInProgress(ServiceError):
    code = "BadRequestTrainingAlreadyInProgress"


@dataclass(frozen=True)
class TrainOptions:
    training_type: str = "Regular"  # Regular | Advanced
    reserved_budget_in_hours: int = 0
    force_train: bool = False
    selected_tags: list[str] = field(default_factory=list)  # tag ids; empty: all
    backbone: str | None = None  # Veil extension: efficientnet-lite0|1|2, yolox-nano (detection); None: default
    privacy: str | None = None  # Veil extension: "dp" = differentially private training; None: not private
    epsilon: float | None = None  # with privacy="dp": the ε to spend
    delta: str = "auto"  # with privacy="dp": a number below 1/N, or auto = 1/(10·N)


@dataclass(frozen=True)
class DatasetImage:
    """One training image as the job sees it: ids only, pixels read from the vault on demand."""

    image_id: str
    blob_id: str
    tag_names: tuple[str, ...]
    boxes: tuple[tuple[str, float, float, float, float], ...]  # (tag name, left, top, width, height)


def _selected_tags(session: Session, project: Project, selected: list[str]) -> list[Tag]:
    tags = list(session.scalars(select(Tag).where(Tag.project_id == project.id).order_by(Tag.created)))
    if not selected:
        return tags
    known = {tag.id: tag for tag in tags}
    unknown = [tag_id for tag_id in selected if tag_id not in known]
    if unknown:
        raise InvalidInput(f"selectedTags names unknown tag ids: {', '.join(unknown)}", code="BadRequestInvalidIds")
    return [known[tag_id] for tag_id in selected]


def dataset(session: Session, project: Project, tags: list[Tag]) -> list[DatasetImage]:
    """The images that carry at least one of `tags` (as a tag link, or for detection as a region)."""
    names = {tag.id: tag.name for tag in tags}
    links: dict[str, list[str]] = {}
    for image_id, tag_id in session.execute(
        select(ImageTag.image_id, ImageTag.tag_id).join(Image).where(Image.project_id == project.id)
    ):
        if tag_id in names:
            links.setdefault(image_id, []).append(names[tag_id])
    boxes: dict[str, list[tuple[str, float, float, float, float]]] = {}
    if is_detection(project):
        rows = session.execute(
            select(Region.image_id, Region.tag_id, Region.left, Region.top, Region.width, Region.height)
            .join(Image)
            .where(Image.project_id == project.id)
        )
        for image_id, tag_id, left, top, width, height in rows:
            if tag_id in names:
                boxes.setdefault(image_id, []).append((names[tag_id], left, top, width, height))
    wanted = set(boxes) if is_detection(project) else set(links)
    images = session.scalars(select(Image).where(Image.project_id == project.id, Image.id.in_(wanted)))
    return [
        DatasetImage(
            image_id=image.id,
            blob_id=image.blob_id,
            tag_names=tuple(sorted(links.get(image.id, []))),
            boxes=tuple(sorted(boxes.get(image.id, []))),
        )
        for image in sorted(images, key=lambda image: image.id)
    ]


def _fingerprint(project: Project, items: list[DatasetImage], options: TrainOptions) -> str:
    """What a training depends on; equal fingerprints mean retraining would learn nothing new."""
    digest = hashlib.sha256()
    digest.update(f"{project.project_type}|{project.classification_type}|{project.domain_id}".encode())
    digest.update(f"|{options.training_type}|{sorted(options.selected_tags)}|{options.backbone}".encode())
    digest.update(f"|{options.privacy}|{options.epsilon}|{options.delta}".encode())
    for item in items:
        digest.update(repr((item.image_id, item.tag_names, item.boxes)).encode())
    return digest.hexdigest()


def _check_counts(project: Project, tags: list[Tag], items: list[DatasetImage]) -> None:
    try:
        _count_labels(project, tags, items)
    except NotEnoughImagesPerTag as refused:
        raise NotEnoughImagesPerTag(refused.message, code=VALIDATION_CODES.get(task_of(project))) from None


def _count_labels(project: Project, tags: list[Tag], items: list[DatasetImage]) -> None:
    detection = is_detection(project)
    required = MIN_IMAGES_DETECTION if detection else MIN_IMAGES_CLASSIFICATION
    counts: Counter[str] = Counter()
    for item in items:
        counts.update({box[0] for box in item.boxes} if detection else set(item.tag_names))
    regular = [tag for tag in tags if tag.type != "Negative"]
    if not regular:
        raise NotEnoughImagesPerTag("the project has no tags to train: create tags and tag images first")
    for tag in regular:
        if counts[tag.name] < required:
            kind = "object detection" if detection else "classification"
            raise NotEnoughImagesPerTag(
                f"tag {tag.name!r} has {counts[tag.name]} image(s); {kind} needs at least {required} images "
                f"per tag — add more images of it or leave it out with selectedTags"
            )
    labels = len(regular) + sum(1 for tag in tags if tag.type == "Negative" and counts[tag.name])
    if task_of(project) == "classify" and labels < 2:
        raise NotEnoughImagesPerTag(
            "a multiclass project needs at least two tags with images (or one tag and the Negative tag)"
        )


def start_training(ctx: AppContext, actor: Principal, project_id: str, options: TrainOptions) -> Iteration:
    """Validate like Custom Vision (synchronously, so the caller gets the error code), then queue the job."""
    if options.training_type not in ("Regular", "Advanced"):
        raise InvalidInput(f"trainingType must be Regular or Advanced, not {options.training_type!r}")
    try:
        backbone = backbone_named(options.backbone) if options.backbone else None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        network = _network(project, backbone, private=options.privacy == "dp")
        running = session.scalar(
            select(func.count())
            .select_from(Iteration)
            .where(Iteration.project_id == project_id, Iteration.status == TRAINING)
        )
        if running:
            raise TrainingAlreadyInProgress("a training of this project is already running; wait for it")
        tags = _selected_tags(session, project, options.selected_tags)
        items = dataset(session, project, tags)
        try:
            _check_counts(project, tags, items)
        except NotEnoughImagesPerTag as short:
            raise _forgotten_explained(session, project, short) from None
        privacy = privacy_request(options, task_of(project), len(items), network.backbone)
        if backbone is not None:
            try:
                backbone_named(backbone, task_of(project))  # yolox-nano trains detection projects only
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
        fingerprint = _fingerprint(project, items, options)
        previous = session.scalars(
            select(Iteration)
            .where(Iteration.project_id == project_id, Iteration.status == COMPLETED)
            .order_by(Iteration.created.desc())
        ).first()
        if previous is not None and IterationRecord.of(previous).fingerprint == fingerprint and not options.force_train:
            raise TrainingNotNeeded(
                "nothing changed since the last trained iteration: add or retag images, or pass forceTrain"
            )
        number = session.scalar(select(func.count()).select_from(Iteration).where(Iteration.project_id == project_id))
        iteration = Iteration(
            id=new_id(),
            project_id=project_id,
            name=f"Iteration {int(number or 0) + 1}",
            status=TRAINING,
            training_type=options.training_type,
            reserved_budget_hours=options.reserved_budget_in_hours,
            domain_id=project.domain_id,
            classification_type=None if is_detection(project) else project.classification_type,
            exportable=bool(network.exportable),
            selected_tags=[tag.id for tag in tags],
            metrics=IterationRecord(
                fingerprint=fingerprint, images=len(items), backbone=backbone, privacy_request=privacy
            ).model_dump(mode="json"),
        )
        session.add(iteration)
        session.flush()
        payload = {
            "project_id": project_id,
            "iteration_id": iteration.id,
            "backbone": network.backbone,
            "input_size": network.input_size,
            "privacy": privacy.model_dump() if privacy else None,
        }
        iteration.job_id = queue.enqueue_in(session, "train", project_id, payload)
        audit.record(session, actor, "iteration.train", [project_id, iteration.id])
        return iteration


def privacy_request(
    options: TrainOptions, task: str, images: int, backbone: str | None = None
) -> PrivacyRequestRecord | None:
    """The Veil extension `privacy=dp&epsilon=8&delta=auto` as the job's budget (None: not private); a bad request
    is `InvalidInput` (400) with one line, before anything is queued."""
    from veil.vision.dp import PrivacyBudget, PrivacyInputError

    if options.privacy in (None, "", "none"):
        if options.epsilon is not None:
            raise InvalidInput("epsilon needs privacy=dp")
        return None
    if options.privacy != "dp":
        raise InvalidInput(f"privacy must be dp (differential privacy) or none, not {options.privacy!r}")
    if options.epsilon is None:
        raise InvalidInput("privacy=dp needs epsilon, e.g. epsilon=8")
    try:
        delta = None if options.delta in ("", "auto") else float(options.delta)
    except ValueError:
        raise InvalidInput(f"delta must be a number or auto, not {options.delta!r}") from None
    budget = PrivacyBudget(options.epsilon, delta)
    try:
        budget.validate(task, options.training_type == "Advanced", images, backbone)
    except PrivacyInputError as exc:
        raise InvalidInput(str(exc)) from None
    return PrivacyRequestRecord(epsilon=budget.epsilon, delta=budget.delta)


@dataclass(frozen=True)
class _Network:
    backbone: str
    input_size: int | None  # None: the backbone's native side
    exportable: bool


def _network(project: Project, backbone: str | None, private: bool = False) -> _Network:
    """What trains: the project's domain's network (veil.vision.domains), unless the caller named a backbone
    (Veil's `backbone` extension), which then trains at its native side. Private detection without a named
    backbone trains DP detection's default (Lite0 FCOS) at the domain's side."""
    domain = find_domain(project.domain_id)
    if domain is None:
        raise InvalidInput(
            f"the project's domain {project.domain_id} is unknown; PATCH the project with one GET /domains lists",
            code="BadRequestProjectUnknownDomain",
        )
    if backbone:
        return _Network(backbone, None, domain.exportable)
    if private and domain.is_detection:
        return _Network(DEFAULT_PRIVATE_DETECTION_BACKBONE, domain.input_size, domain.exportable)
    return _Network(domain.backbone, domain.input_size, domain.exportable)


def cancel_training(ctx: AppContext, actor: Principal, project_id: str, iteration_id: str) -> Iteration:
    with ctx.db.session() as session:
        get_project(session, project_id)
        iteration = get_iteration(session, project_id, iteration_id)
        if iteration.status != TRAINING or not iteration.job_id:
            raise InvalidInput(f"iteration {iteration_id} is not training (status {iteration.status})")
        queue.request_cancel_in(session, iteration.job_id)
        audit.record(session, actor, "iteration.cancel", [project_id, iteration_id])
        return iteration


def training_job(ctx: AppContext, project_id: str, iteration_id: str) -> queue.JobView:
    """The job that trains (or trained) an iteration: status, stage, progress, ETA."""
    iteration = read_iteration(ctx, project_id, iteration_id)
    job = queue.find(ctx.db, iteration.job_id) if iteration.job_id else None
    if job is None:
        raise NotFound(f"iteration {iteration_id} has no training job (imported or removed)")
    return job


# --- the job (runs in the worker's spawned child process) ---------------------------------------------------


def _sample_loader(vault: Vault, project: Project, blob_id: str):  # type: ignore[no-untyped-def]
    def load() -> PILImage.Image:
        return PILImage.open(io.BytesIO(vault.get(project, blob_id)))

    return load


class TrainingJob:
    """Job kind `train`: payload `{project_id, iteration_id, backbone, input_size, privacy}`."""

    def run(self, job: JobContext) -> str | None:
        from veil.vision import data as vdata
        from veil.vision import train as vtrain

        ctx = AppContext.open(job.settings, migrate=False)
        try:
            started = time.monotonic()
            project, iteration, tags, items = self._load(ctx, job.payload)
            vault = Vault(ctx)
            samples = [
                vdata.Sample(
                    key=item.image_id,
                    image=_sample_loader(vault, project, item.blob_id),
                    labels=list(item.tag_names),
                    boxes=[
                        vdata.LabeledBox(tag, left, top, width, height) for tag, left, top, width, height in item.boxes
                    ],
                )
                for item in items
            ]
            negative = next((tag.name for tag in tags if tag.type == "Negative"), None)
            request = vtrain.TrainRequest(
                task=task_of(project),
                samples=samples,
                advanced=iteration.training_type == "Advanced",
                budget_minutes=_budget_minutes(iteration, job.settings.regular_training_minutes),
                selected_tags=[tag.name for tag in tags if tag.type != "Negative"],
                negative_tag=negative,
                backbone=job.payload.get("backbone"),
                privacy=_budget(job.payload.get("privacy")),
                input_size=job.payload.get("input_size"),
                max_steps=job.settings.training_max_steps,
            )

            def progress(update: Any) -> None:
                job.report(update.stage, update.percent, update.eta_seconds)

            def should_cancel() -> bool:
                return job.should_cancel()

            try:
                result = vtrain.train(request, progress=progress, should_cancel=should_cancel)
            except vtrain.TrainingCancelled as exc:
                raise JobCancelled(str(exc) or "cancelled by the user") from exc
            job.report("saving", 99.0, 0.0, True)
            used = [item.image_id for item in items]
            self._save(
                ctx, project, iteration.id, tags, result, time.monotonic() - started, used, request.budget_minutes
            )
            return f"trained {len(samples)} images"
        finally:
            ctx.close()

    def _load(
        self, ctx: AppContext, payload: dict[str, Any]
    ) -> tuple[Project, Iteration, list[Tag], list[DatasetImage]]:
        with ctx.db.session() as session:
            project = get_project(session, payload["project_id"])
            iteration = get_iteration(session, project.id, payload["iteration_id"])
            tags = _selected_tags(session, project, list(iteration.selected_tags or []))
            return project, iteration, tags, dataset(session, project, tags)

    def _save(
        self,
        ctx: AppContext,
        project: Project,
        iteration_id: str,
        tags: list[Tag],
        result: Any,
        seconds: float,
        used_image_ids: list[str],
        budget_minutes: float | None,
    ) -> None:
        vault = Vault(ctx)
        model_blob, evaluation_blob = new_id(), new_id()
        vault.put(project, model_blob, result.onnx, owner_id=iteration_id)
        vault.put(project, evaluation_blob, json.dumps(result.evaluation.to_dict()).encode(), owner_id=iteration_id)
        curves = {}
        for name, png in (getattr(result, "pr_curves", None) or {}).items():
            curves[name] = new_id()
            vault.put(project, curves[name], png, owner_id=iteration_id)
        training_curve = getattr(result, "training_curve", None)  # Advanced training only
        training_curve_blob = new_id() if training_curve else None
        if training_curve and training_curve_blob:
            vault.put(project, training_curve_blob, training_curve, owner_id=iteration_id)
        by_name = {tag.name: tag for tag in tags}
        with ctx.db.session() as session:
            iteration = get_iteration(session, project.id, iteration_id)
            session.refresh(iteration, with_for_update=True)
            if iteration.status != TRAINING:
                # Another attempt of this job (retried after its worker was cut off) got here first: one
                # iteration completes once; this attempt's blobs have no row and go with the orphan sweep.
                return
            IterationRecord.of(iteration).model_copy(
                update={
                    "labels": [
                        LabelRecord(id=by_name[label].id, name=label, type=by_name[label].type)
                        if label in by_name
                        else LabelRecord(name=label)
                        for label in result.labels
                    ],
                    "budget_minutes": budget_minutes,
                    "evaluation_blob_id": evaluation_blob,
                    "evaluation_method": getattr(result.evaluation, "method", ""),
                    "pr_curve_blob_ids": curves,
                    "training_curve_blob_id": training_curve_blob,
                    "model_card": _jsonable(asdict(result.model_card)),
                    "privacy": PrivacyRecord.model_validate(result.privacy.to_dict())
                    if getattr(result, "privacy", None)
                    else None,
                }
            ).save_to(iteration)
            iteration.model_blob_id = model_blob
            iteration.status, iteration.trained_at = COMPLETED, utcnow()
            iteration.training_time_minutes = max(1, round(seconds / 60))
            audit.record(session, None, "iteration.trained", [project.id, iteration_id])
            forgotten = _forget_training_images(session, project.id, iteration, used_image_ids)
        for blob_id in forgotten:  # their keys went with their rows (committed): the files are noise now
            ctx.blobs.delete(project.id, blob_id)
        if forgotten:
            ctx.db.checkpoint()

    def on_failure(self, job: JobContext, reason: str) -> None:
        ctx = AppContext.open(job.settings, migrate=False)
        try:
            with ctx.db.session() as session:
                iteration = session.get(Iteration, job.payload.get("iteration_id", ""))
                if iteration is None or iteration.status != TRAINING:
                    return
                iteration.status, iteration.error_reason = FAILED, reason[:4000]
                audit.record(session, None, "iteration.failed", [iteration.project_id, iteration.id], "failed")
        finally:
            ctx.close()


def _budget(requested: dict[str, Any] | None) -> Any:
    """The job payload's privacy request as the engine's `PrivacyBudget` (validated when it was queued)."""
    if not requested:
        return None
    from veil.vision.dp import PrivacyBudget

    return PrivacyBudget(float(requested["epsilon"]), requested.get("delta"))


def _budget_minutes(iteration: Iteration, regular_minutes: float | None) -> float | None:
    """Advanced: `reservedBudgetInHours`; Regular: the operator's setting. None: the engine's default."""
    if iteration.training_type == "Advanced":
        return iteration.reserved_budget_hours * 60.0 if iteration.reserved_budget_hours else None
    return regular_minutes


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return {}


TRAINING_JOB = TrainingJob()


def _forget_training_images(session: Session, project_id: str, iteration: Iteration, image_ids: list[str]) -> list[str]:
    """With the policy `forget_images_after_training`, shred the images an iteration has just trained on (their
    rows go, and with them, by trigger, their blob keys); the iteration keeps its model and metrics. Returns the
    blob ids whose files are left to remove."""
    project = get_project(session, project_id)
    if not privacy_policy(project).forget_images_after_training or not image_ids:
        return []
    doomed = list(session.execute(select(Image.id, Image.blob_id).where(
        Image.project_id == project_id, Image.id.in_(image_ids)
    )).tuples())  # fmt: skip
    session.execute(delete(Image).where(Image.id.in_([image_id for image_id, _ in doomed])))
    IterationRecord.of(iteration).model_copy(update={"images_forgotten": len(doomed)}).save_to(iteration)
    audit.record(session, None, "images.forget-after-training", [project_id, iteration.id], f"images:{len(doomed)}")
    return [blob_id for _, blob_id in doomed]


def _forgotten_explained(session: Session, project: Project, short: NotEnoughImagesPerTag) -> NotEnoughImagesPerTag:
    """Say why the images are missing when the project's policy shredded them after an earlier training."""
    if not privacy_policy(project).forget_images_after_training:
        return short
    last = session.scalars(
        select(Iteration)
        .where(Iteration.project_id == project.id, Iteration.status == COMPLETED)
        .order_by(Iteration.trained_at.desc())
    ).first()
    forgotten = IterationRecord.of(last).images_forgotten if last is not None else 0
    if last is None or not forgotten:
        return short
    return NotEnoughImagesPerTag(
        f"this project forgets its training images once an iteration has trained on them (privacy policy "
        f"forget_images_after_training): {last.name} shredded {forgotten} image(s) and "
        f"keeps only its model and metrics. Upload new images to train again ({short.message})",
        code=short.code,
    )
