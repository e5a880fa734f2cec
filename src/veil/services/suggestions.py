"""The smart labeler: a trained iteration's predictions for untagged images, to accept as labels in bulk.

Custom Vision's contract (SDK `suggest_tags_and_regions`, `query_suggested_images`, `query_suggested_image_count`):

- `suggest(ids)` runs the iteration over up to 64 named images and keeps the result (a `Suggestion` row).
- `query(tag_ids, threshold, ...)` ranks the project's untagged images whose suggestion gives one of `tag_ids` at least
  `threshold`, by the prediction's uncertainty (entropy), a page at a time (`session` + `continuation`).
- `count(tag_ids, threshold)` says, per tag, how many untagged images it is suggested for.

Suggestions are computed once per (iteration, image) and kept: the model does not run again when a user changes the
threshold or pages. Images are decrypted in memory only. A suggestion's `id` is its image's id, so a client tags the
image it sees with `create_image_tags` / `create_image_regions`.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.errors import InvalidInput
from veil.services.iterations import get_iteration
from veil.services.models import MODELS
from veil.services.predictions import PredictedTag, run_model
from veil.services.projects import get_project, is_detection
from veil.services.vault import Vault
from veil.store.models import Image, ImageTag, Iteration, Project, Region, Suggestion
from veil.store.records import COMPLETED

DEFAULT_THRESHOLD = 0.5  # Custom Vision's default probability threshold (performance, quick test)
MAX_IMAGES_PER_CALL = 64  # as Azure's tagsandregions/suggestions
DEFAULT_PAGE = 50
MAX_PAGE = 256
SORTS = ("UncertaintyAscending", "UncertaintyDescending")


@dataclass(frozen=True)
class SuggestedImage:
    image: Image
    iteration_id: str
    created: datetime
    predictions: list[PredictedTag]
    uncertainty: float


@dataclass(frozen=True)
class SuggestionQuery:
    tag_ids: tuple[str, ...] = ()  # empty: every tag
    threshold: float | None = None
    session: str | None = None
    continuation: str | None = None
    max_count: int | None = None
    sort_by: str | None = None


@dataclass(frozen=True)
class SuggestionPage:
    results: list[SuggestedImage]
    query: SuggestionQuery  # the token for the next page (continuation None: no more)
    domain_id: str | None = None  # the iteration's domain (Custom Vision reports it with each result)


def uncertainty(predictions: Sequence[PredictedTag], detection: bool, multilabel: bool) -> float:
    """Entropy of the prediction in [0, 1]: 0 when the model is sure, 1 when it cannot tell.

    Multiclass: the distribution's entropy over log(n). Multilabel and detection: the mean binary entropy of each
    tag's (or box's) probability — a box the model half-believes is as uncertain as a tag it half-believes."""
    probabilities = np.clip([p.probability for p in predictions], 1e-12, 1 - 1e-12)
    if len(probabilities) == 0:
        return 0.0
    if detection or multilabel:
        binary = -(probabilities * np.log2(probabilities) + (1 - probabilities) * np.log2(1 - probabilities))
        return float(np.mean(binary))
    if len(probabilities) == 1:
        return 0.0
    distribution = probabilities / probabilities.sum()
    return float(-(distribution * np.log(distribution)).sum() / math.log(len(distribution)))


def suggest(
    ctx: AppContext, actor: Principal, project_id: str, iteration_id: str | None, image_ids: Sequence[str]
) -> list[SuggestedImage]:
    """Run the iteration over the named images (kept as their suggestions) and return them in the asked order."""
    ids = list(dict.fromkeys(image_ids))
    if not ids:
        raise InvalidInput("imageIds names no image", code="BadRequestInvalidIds")
    if len(ids) > MAX_IMAGES_PER_CALL:
        raise InvalidInput(
            f"{len(ids)} images in one call; at most {MAX_IMAGES_PER_CALL}", code="BadRequestExceededBatchSize"
        )
    project, iteration = _trained_iteration(ctx, project_id, iteration_id)
    with ctx.db.read_session() as session:
        images = {
            i.id: i for i in session.scalars(select(Image).where(Image.project_id == project_id, Image.id.in_(ids)))
        }
        session.expunge_all()
    unknown = [i for i in ids if i not in images]
    if unknown:
        raise InvalidInput(f"no image {', '.join(unknown)} in project {project_id}", code="BadRequestInvalidIds")
    found = _ensure(ctx, project, iteration, [images[i] for i in ids])
    return [found[i] for i in ids]


def query(ctx: AppContext, project_id: str, iteration_id: str | None, request: SuggestionQuery) -> SuggestionPage:
    """One page of untagged images whose suggestion gives a requested tag at least the threshold."""
    threshold = _threshold(request.threshold)
    take = request.max_count or DEFAULT_PAGE
    if not 1 <= take <= MAX_PAGE:
        raise InvalidInput(f"maxCount must be 1..{MAX_PAGE}", code="BadRequestPredictionInvalidQueryParameters")
    if request.sort_by and request.sort_by not in SORTS:
        raise InvalidInput(
            f"sortBy must be one of {', '.join(SORTS)}", code="BadRequestPredictionInvalidQueryParameters"
        )
    project, iteration = _trained_iteration(ctx, project_id, iteration_id)
    tag_ids = _known_tags(ctx, project_id, request.tag_ids)
    matching = [s for s in _untagged_suggestions(ctx, project, iteration) if _matches(s, tag_ids, threshold)]
    matching.sort(key=lambda s: (s.uncertainty, s.image.id), reverse=request.sort_by == "UncertaintyDescending")
    start = _offset(request, iteration.id)
    page = [_above(s, threshold) for s in matching[start : start + take]]
    following = start + take if start + take < len(matching) else None
    token = SuggestionQuery(
        tag_ids=tuple(tag_ids),
        threshold=threshold,
        session=_session_token(iteration.id),
        continuation=str(following) if following is not None else None,
        max_count=take,
        sort_by=request.sort_by,
    )
    return SuggestionPage(page, token, iteration.domain_id)


def count(
    ctx: AppContext, project_id: str, iteration_id: str | None, tag_ids: Sequence[str], threshold: float | None
) -> dict[str, int]:
    """Per requested tag (every tag when none is named): how many untagged images it is suggested for."""
    level = _threshold(threshold)
    project, iteration = _trained_iteration(ctx, project_id, iteration_id)
    wanted = _known_tags(ctx, project_id, tuple(tag_ids))
    counts = dict.fromkeys(wanted, 0)
    for suggestion in _untagged_suggestions(ctx, project, iteration):
        for tag_id in {p.tag_id for p in suggestion.predictions if p.probability >= level and p.tag_id in counts}:
            counts[tag_id] += 1
    return counts


# --- helpers ---


def _threshold(value: float | None) -> float:
    level = DEFAULT_THRESHOLD if value is None else float(value)
    if not 0.0 <= level <= 1.0:
        raise InvalidInput("threshold must be between 0 and 1", code="BadRequestPredictionInvalidQueryParameters")
    return level


def _trained_iteration(ctx: AppContext, project_id: str, iteration_id: str | None) -> tuple[Project, Iteration]:
    with ctx.db.read_session() as session:
        project = get_project(session, project_id)
        if iteration_id:
            iteration = get_iteration(session, project_id, iteration_id)
        else:
            latest = session.scalars(
                select(Iteration)
                .where(Iteration.project_id == project_id, Iteration.status == COMPLETED)
                .order_by(Iteration.trained_at.desc())
            ).first()
            if latest is None:
                raise InvalidInput(
                    "the project has no trained iteration to suggest with: train one first",
                    code="BadRequestIterationIsNotTrained",
                )
            iteration = latest
        if iteration.status != COMPLETED or not iteration.model_blob_id:
            raise InvalidInput(
                f"iteration {iteration.id} is not trained (status {iteration.status})",
                code="BadRequestIterationIsNotTrained",
            )
        session.expunge_all()
        return project, iteration


def _known_tags(ctx: AppContext, project_id: str, tag_ids: tuple[str, ...]) -> list[str]:
    from veil.store.models import Tag

    with ctx.db.read_session() as session:
        tags = [t.id for t in session.scalars(select(Tag).where(Tag.project_id == project_id).order_by(Tag.created))]
    unknown = [t for t in tag_ids if t not in tags]
    if unknown:
        raise InvalidInput(f"tag {', '.join(unknown)} is not in project {project_id}", code="BadRequestInvalidIds")
    return list(dict.fromkeys(tag_ids)) if tag_ids else tags


def _untagged(session: Session, project_id: str) -> list[Image]:
    tagged = exists().where(ImageTag.image_id == Image.id) | exists().where(Region.image_id == Image.id)
    return list(session.scalars(select(Image).where(Image.project_id == project_id, ~tagged)))


def _untagged_suggestions(ctx: AppContext, project: Project, iteration: Iteration) -> list[SuggestedImage]:
    with ctx.db.read_session() as session:
        images = _untagged(session, project.id)
        session.expunge_all()
    return list(_ensure(ctx, project, iteration, images).values())


def _ensure(ctx: AppContext, project: Project, iteration: Iteration, images: list[Image]) -> dict[str, SuggestedImage]:
    """The iteration's suggestion for each image: the kept one, else computed now (and kept)."""
    with ctx.db.read_session() as session:
        kept = {
            s.image_id: s
            for s in session.scalars(
                select(Suggestion).where(
                    Suggestion.iteration_id == iteration.id, Suggestion.image_id.in_([i.id for i in images])
                )
            )
        }
        session.expunge_all()
    missing = [i for i in images if i.id not in kept]
    if missing:
        kept.update(_compute(ctx, project, iteration, missing))
    return {i.id: _view(i, kept[i.id]) for i in images}


def _compute(ctx: AppContext, project: Project, iteration: Iteration, images: list[Image]) -> dict[str, Suggestion]:
    model = MODELS.get(ctx, project, iteration)
    vault = Vault(ctx)
    detection, multilabel = is_detection(project), project.classification_type == "Multilabel"
    made = {}
    for image in images:
        with PILImage.open(io.BytesIO(vault.get(project, image.blob_id))) as decoded:
            rgb = np.asarray(decoded.convert("RGB"))
        predictions = run_model(model, iteration, rgb)
        made[image.id] = Suggestion(
            iteration_id=iteration.id,
            image_id=image.id,
            predictions=[_to_json(p) for p in predictions],
            uncertainty=uncertainty(predictions, detection, multilabel),
        )
    with ctx.db.session() as session:
        for suggestion in made.values():
            session.merge(suggestion)  # another request may have computed the same one meanwhile
    with ctx.db.read_session() as session:
        fresh = {
            s.image_id: s
            for s in session.scalars(
                select(Suggestion).where(Suggestion.iteration_id == iteration.id, Suggestion.image_id.in_(list(made)))
            )
        }
        session.expunge_all()
    return fresh


def _to_json(p: PredictedTag) -> dict[str, object]:
    return {"tagId": p.tag_id, "tagName": p.tag_name, "probability": p.probability, "box": p.box, "tagType": p.tag_type}


def _view(image: Image, suggestion: Suggestion) -> SuggestedImage:
    predictions = [
        PredictedTag(
            str(p["tagId"]),
            str(p["tagName"]),
            float(p["probability"]),
            tuple(p["box"]) if p.get("box") else None,
            str(p.get("tagType") or "Regular"),
        )
        for p in suggestion.predictions
    ]
    return SuggestedImage(image, suggestion.iteration_id, suggestion.created, predictions, suggestion.uncertainty)


def _matches(suggestion: SuggestedImage, tag_ids: list[str], threshold: float) -> bool:
    return any(p.tag_id in tag_ids and p.probability >= threshold for p in suggestion.predictions)


def _above(suggestion: SuggestedImage, threshold: float) -> SuggestedImage:
    """What a user accepts: the suggested tags (or boxes) at the threshold, most probable first."""
    kept = sorted((p for p in suggestion.predictions if p.probability >= threshold), key=lambda p: -p.probability)
    return SuggestedImage(suggestion.image, suggestion.iteration_id, suggestion.created, kept, suggestion.uncertainty)


def _session_token(iteration_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"iteration": iteration_id}).encode()).decode()


def _offset(request: SuggestionQuery, iteration_id: str) -> int:
    if not request.continuation:
        return 0
    if request.session and request.session != _session_token(iteration_id):
        raise InvalidInput(
            "session belongs to another iteration's query", code="BadRequestPredictionInvalidQueryParameters"
        )
    if not request.continuation.isdigit():
        raise InvalidInput("continuation is not one this query gave", code="BadRequestPredictionInvalidQueryParameters")
    return int(request.continuation)
