"""Predictions: run a published (or quick-test) iteration on an image; store it only when asked and allowed.

    >>> outcome = predict(ctx, actor, PredictRequest(project_id, "classify", data, published_name="prod"))
    >>> outcome.predictions[0].tag_name, outcome.predictions[0].probability

`store=False` (the `.../nostore` routes) writes nothing anywhere: no image, no row, no audit event. With
`store=True` the re-encoded image is sealed with the project's key and the result kept until the project's
retention (`PrivacyPolicy.retention_days`) runs out — unless the policy forbids storing predictions at all.
Models are decrypted in memory only and cached per iteration.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Histogram
from sqlalchemy import select

from veil.images.ingest import ImageRejected, RejectStatus, decode_rgb
from veil.privacy.policy import PrivacyPolicy
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.errors import InvalidInput, NotFound, ServiceError
from veil.services.ingest import KeptImage, ingest_policy, keep_image
from veil.services.iterations import get_iteration
from veil.services.models import MODELS
from veil.services.privacy import privacy_policy
from veil.services.projects import get_project, is_detection
from veil.services.vault import Vault
from veil.store.models import Iteration, Prediction, Project, new_id, utcnow
from veil.store.records import COMPLETED, IterationRecord

if TYPE_CHECKING:  # onnxruntime models are loaded where used
    from veil.vision.runtime import ExportedModel

DETECTION_THRESHOLD = 0.05  # like Custom Vision, low-confidence boxes are returned; callers filter
MODEL_SECONDS = Histogram(
    "veil_prediction_model_seconds",
    "Time the model itself takes on one prediction image (decode and I/O excluded).",
    ["task"],
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5),
)

REJECT_CODES = {
    RejectStatus.bad_format: "BadRequestImageFormat",
    RejectStatus.size: "BadRequestImageSizeBytes",
    RejectStatus.dimensions: "BadRequestImageDimensions",
}


@dataclass(frozen=True)
class PredictRequest:
    project_id: str
    task: str  # classify | detect
    data: bytes
    published_name: str | None = None
    iteration_id: str | None = None  # quick test: an iteration instead of a publish name
    store: bool = False
    application: str | None = None


@dataclass(frozen=True)
class PredictedTag:
    tag_id: str
    tag_name: str
    probability: float
    box: tuple[float, float, float, float] | None = None  # normalized left, top, width, height
    tag_type: str = "Regular"  # or "Negative" (Custom Vision reports the negative tag's probability too)


@dataclass(frozen=True)
class PredictionOutcome:
    id: str
    project_id: str
    iteration_id: str
    created: datetime
    predictions: list[PredictedTag]
    stored: bool


_PROJECT, _ITERATION = Project.__table__, Iteration.__table__


class PublishedIterations:
    """The (project, iteration) a publish name stands for, per process, checked against the database on every
    call: one indexed query reads both rows' `modified` stamps (and the publish name's current holder), and the
    ORM objects are reloaded whenever either changed. An unpublish, a re-publish, a project update or deletion
    therefore takes effect on every replica from the next request on — there is nothing to invalidate."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[tuple[object, ...], Project, Iteration]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _stamp(project: Project, iteration: Iteration) -> tuple[object, ...]:
        return (project.modified, iteration.id, iteration.modified)

    def get(self, ctx: AppContext, request: PredictRequest) -> tuple[Project, Iteration]:
        assert request.published_name is not None
        key = (request.project_id, request.published_name)
        p, i = _PROJECT.c, _ITERATION.c
        query = (
            select(p.modified, p.deleting, i.id, i.modified)
            .select_from(
                _PROJECT.outerjoin(_ITERATION, (i.project_id == p.id) & (i.publish_name == request.published_name))
            )
            .where(p.id == request.project_id)
        )
        with ctx.db.read_connection() as connection:
            row = connection.execute(query).first()
        if row is not None and not row[1] and row[2] is not None:  # the project lives, the name is published
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] == (row[0], row[2], row[3]):
                    self._entries.move_to_end(key)
                    return entry[1], entry[2]
        project, iteration = _find_iteration(ctx, request)  # the errors, or the current rows
        with self._lock:
            self._entries[key] = (self._stamp(project, iteration), project, iteration)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return project, iteration


PUBLISHED = PublishedIterations()


def _find_iteration(ctx: AppContext, request: PredictRequest) -> tuple[Project, Iteration]:
    # A read-only session: concurrent predictions never queue for SQLite's write lock.
    with ctx.db.read_session() as session:
        project = get_project(session, request.project_id)
        if request.iteration_id:
            iteration = get_iteration(session, project.id, request.iteration_id)
        elif request.published_name:
            found = session.scalars(
                select(Iteration).where(
                    Iteration.project_id == project.id, Iteration.publish_name == request.published_name
                )
            ).first()
            if found is None:
                raise NotFound(
                    f"no iteration of project {project.id} is published as {request.published_name!r}",
                    code="NotFoundIteration",
                )
            iteration = found
        else:
            found = session.scalars(
                select(Iteration)
                .where(Iteration.project_id == project.id, Iteration.status == COMPLETED)
                .order_by(Iteration.trained_at.desc())
            ).first()
            if found is None:
                raise NotFound("the project has no trained iteration yet", code="NotFoundProjectDefaultIteration")
            iteration = found
        if iteration.status != COMPLETED or not iteration.model_blob_id:
            raise InvalidInput(
                f"iteration {iteration.id} is not trained (status {iteration.status})",
                code="BadRequestIterationIsNotTrained",
            )
        session.expunge_all()  # detached with their loaded columns (the read session rolls back on exit)
        return project, iteration


def _check_task(project: Project, task: str) -> None:
    wanted = "detect" if is_detection(project) else "classify"
    if task != wanted:
        raise InvalidInput(
            f"project {project.id} is {'an object detection' if wanted == 'detect' else 'a classification'} "
            f"project: use the {wanted} route",
            code="BadRequestInvalidPublishTarget",
        )


def decode_for_prediction(ctx: AppContext, data: bytes) -> np.ndarray:
    """Safe decode with the upload limits: upright RGB pixels for the model (nothing is kept)."""
    if not data:
        raise InvalidInput("the request has no image", code="BadRequestImageStream")
    try:
        return decode_rgb(data, ctx.limits)
    except ImageRejected as rejected:
        raise ServiceError(rejected.reason, code=REJECT_CODES.get(rejected.status, "BadRequestImageFormat")) from None


def run_model(model: ExportedModel, iteration: Iteration, rgb: np.ndarray) -> list[PredictedTag]:
    record = IterationRecord.of(iteration)
    ids = record.tag_ids_by_name()
    if model.info.task == "detect":
        detections = model.detect(rgb, threshold=DETECTION_THRESHOLD)
        height, width = rgb.shape[:2]
        names = detections.data.get("class_name", [])
        found = []
        confidences = detections.confidence if detections.confidence is not None else np.ones(len(detections))
        for (x0, y0, x1, y1), confidence, name in zip(detections.xyxy, confidences, names, strict=True):
            box = (float(x0) / width, float(y0) / height, float(x1 - x0) / width, float(y1 - y0) / height)
            found.append(PredictedTag(ids.get(str(name), ""), str(name), float(confidence), box))
        return sorted(found, key=lambda tag: -tag.probability)
    types = record.tag_types_by_name()
    return [
        PredictedTag(ids.get(p.tag, ""), p.tag, p.probability, tag_type=types.get(p.tag, "Regular"))
        for p in model.classify(rgb)
    ]


def quick_test(
    ctx: AppContext, actor: Principal, project_id: str, data: bytes, iteration_id: str | None, store: bool
) -> PredictionOutcome:
    """Run an iteration (default: the newest trained one) on an image with the project's own task."""
    with ctx.db.read_session() as session:
        task = "detect" if is_detection(get_project(session, project_id)) else "classify"
    return predict(ctx, actor, PredictRequest(project_id, task, data, iteration_id=iteration_id, store=store))


def predict(ctx: AppContext, actor: Principal, request: PredictRequest) -> PredictionOutcome:
    if request.published_name and not request.iteration_id:
        project, iteration = PUBLISHED.get(ctx, request)
    else:
        project, iteration = _find_iteration(ctx, request)
    _check_task(project, request.task)
    rgb = decode_for_prediction(ctx, request.data)
    model = MODELS.get(ctx, project, iteration)
    with MODEL_SECONDS.labels(request.task).time():
        predictions = run_model(model, iteration, rgb)
    outcome = PredictionOutcome(
        id=new_id(),
        project_id=project.id,
        iteration_id=iteration.id,
        created=utcnow(),
        predictions=predictions,
        stored=False,
    )
    policy = privacy_policy(project) if request.store else None
    if policy is not None and policy.store_predictions and policy.retention_days > 0:
        with ctx.db.read_session() as session:
            ingest = ingest_policy(ctx, session, project)
        # The kept copy goes through the one ingest path (the project's anonymization); the model saw the original.
        kept = keep_image(ctx, project, ingest, request.data, owner_id=outcome.id)  # deleting it shreds the blob
        _store(ctx, actor, project, outcome, kept, request.application, policy)
        outcome = PredictionOutcome(**{**outcome.__dict__, "stored": True})
    return outcome


def _store(
    ctx: AppContext,
    actor: Principal,
    project: Project,
    outcome: PredictionOutcome,
    kept: KeptImage,
    application: str | None,
    policy: PrivacyPolicy,
) -> None:
    with ctx.db.session() as session:
        session.add(
            Prediction(
                id=outcome.id,
                project_id=project.id,
                iteration_id=outcome.iteration_id,
                application=application,
                image_blob_id=kept.blob_id,
                content_type=kept.content_type,
                width=kept.width,
                height=kept.height,
                results=[_result_json(tag) for tag in outcome.predictions],
                created=outcome.created,
                expires_at=outcome.created + timedelta(days=policy.retention_days),
            )
        )
        audit.record(session, actor, "prediction.store", [project.id, outcome.id])


def _result_json(tag: PredictedTag) -> dict[str, object]:
    result: dict[str, object] = {
        "tagId": tag.tag_id,
        "tagName": tag.tag_name,
        "probability": tag.probability,
        "tagType": tag.tag_type,
    }
    if tag.box is not None:
        result["boundingBox"] = dict(zip(("left", "top", "width", "height"), tag.box, strict=True))
    return result


def stored_tags(prediction: Prediction) -> list[PredictedTag]:
    tags = []
    for result in prediction.results or []:
        box = result.get("boundingBox")
        tags.append(
            PredictedTag(
                tag_id=str(result.get("tagId", "")),
                tag_name=str(result.get("tagName", "")),
                probability=float(result.get("probability", 0.0)),
                box=(box["left"], box["top"], box["width"], box["height"]) if box else None,
                tag_type=str(result.get("tagType", "Regular")),
            )
        )
    return tags


@dataclass(frozen=True)
class TagThreshold:
    tag_id: str
    min_threshold: float = 0.0
    max_threshold: float = 1.0


@dataclass(frozen=True)
class PredictionQuery:
    """Custom Vision's `PredictionQueryToken` as a typed query; `continuation`: offset of the next page."""

    iteration_id: str | None = None
    application: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    tags: tuple[TagThreshold, ...] = ()
    order_by: str = "Newest"
    max_count: int = 50
    continuation: str | None = None


MAX_QUERY_COUNT = 256
MAX_DELETE_IDS = 64


def _matches_tags(prediction: Prediction, thresholds: tuple[TagThreshold, ...]) -> bool:
    """Kept when, for every tag filter, some result of that tag lies within its probability range."""
    for wanted in thresholds:
        probabilities = [
            float(r.get("probability", 0.0)) for r in prediction.results or [] if r.get("tagId") == wanted.tag_id
        ]
        if not any(wanted.min_threshold <= p <= wanted.max_threshold for p in probabilities):
            return False
    return True


def query_predictions(ctx: AppContext, project_id: str, query: PredictionQuery) -> tuple[list[Prediction], str | None]:
    """Stored predictions matching `query`, a page at a time; returns the page and the next continuation."""
    if not 0 < query.max_count <= MAX_QUERY_COUNT:
        raise InvalidInput(f"maxCount must be 1..{MAX_QUERY_COUNT}", code="BadRequestPredictionResultsExceededCount")
    try:
        offset = int(query.continuation or 0)
    except ValueError:
        raise InvalidInput("continuation is not one this server issued", code="BadRequestInvalid") from None
    with ctx.db.session() as session:
        get_project(session, project_id)
        statement = select(Prediction).where(Prediction.project_id == project_id)
        if query.iteration_id:
            statement = statement.where(Prediction.iteration_id == query.iteration_id)
        if query.application:
            statement = statement.where(Prediction.application == query.application)
        if query.start_time:
            statement = statement.where(Prediction.created >= query.start_time)
        if query.end_time:
            statement = statement.where(Prediction.created <= query.end_time)
        newest_first = query.order_by != "Oldest"
        statement = statement.order_by(Prediction.created.desc() if newest_first else Prediction.created, Prediction.id)
        matching = [p for p in session.scalars(statement) if _matches_tags(p, query.tags)]
    page = matching[offset : offset + query.max_count]
    following = offset + len(page)
    return page, (str(following) if following < len(matching) else None)


def iteration_domains(ctx: AppContext, project_id: str) -> dict[str, str]:
    """Each iteration's domain id: a stored prediction reports the domain its iteration was trained on."""
    with ctx.db.read_session() as session:
        rows = session.execute(select(Iteration.id, Iteration.domain_id).where(Iteration.project_id == project_id))
        return {iteration_id: domain_id for iteration_id, domain_id in rows if domain_id}


def delete_predictions(ctx: AppContext, actor: Principal, project_id: str, ids: list[str]) -> int:
    """Delete stored predictions (rows and sealed images); returns how many existed."""
    if not ids:
        raise InvalidInput("ids: give at least one prediction id", code="BadRequestPredictionIdsMissing")
    if len(ids) > MAX_DELETE_IDS:
        raise InvalidInput(
            f"at most {MAX_DELETE_IDS} prediction ids per call", code="BadRequestPredictionIdsExceededCount"
        )
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        rows = list(
            session.scalars(select(Prediction).where(Prediction.project_id == project_id, Prediction.id.in_(ids)))
        )
        blob_ids = [row.image_blob_id for row in rows if row.image_blob_id]
        for row in rows:
            session.delete(row)
        audit.record(session, actor, "prediction.delete", [project_id, *[row.id for row in rows]])
    vault = Vault(ctx)
    for blob_id in blob_ids:
        vault.delete(project, blob_id)
    return len(rows)


def stored_image(ctx: AppContext, actor: Principal, project_id: str, prediction_id: str) -> tuple[bytes, str]:
    """The kept image of a stored prediction (decrypted in memory; the read is audited)."""
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        row = session.get(Prediction, prediction_id)
        if row is None or row.project_id != project_id or not row.image_blob_id:
            raise NotFound(f"stored prediction {prediction_id} not found", code="NotFound")
        audit.record(session, actor, "prediction.image.read", [project_id, prediction_id])
        blob_id, content_type = row.image_blob_id, row.content_type or "image/jpeg"
    return Vault(ctx).get(project, blob_id), content_type
