"""Iterations: the iteration, its update and training bodies, its performance (overall and per image)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from veil.api.wire.base import Wire
from veil.api.wire.images import ImageOut, ImageTagOut, image_out
from veil.api.wire.predictions import BoundingBoxOut, PredictionOut
from veil.services.domains import iteration_export_platforms
from veil.services.iterations import ImagePerformanceView
from veil.store import models
from veil.store.records import IterationRecord

if TYPE_CHECKING:
    from veil.vision.metrics import Performance


class TrainingParametersIn(Wire):
    selected_tags: list[str] | None = None


class IterationUpdateIn(Wire):
    name: str | None = None


class IterationOut(Wire):
    id: str
    name: str
    status: str
    created: datetime
    last_modified: datetime
    trained_at: datetime | None = None
    project_id: str
    exportable: bool
    exportable_to: list[str] = Field(default_factory=list)
    domain_id: str | None = None
    classification_type: str | None = None
    training_type: str
    reserved_budget_in_hours: int
    training_time_in_minutes: int
    publish_name: str | None = None
    original_publish_resource_id: str | None = None
    training_error_details: str | None = None


class TagPerformanceOut(Wire):
    id: str
    name: str
    precision: float
    precision_std_deviation: float
    recall: float
    recall_std_deviation: float
    average_precision: float


class IterationPerformanceOut(Wire):
    per_tag_performance: list[TagPerformanceOut]
    precision: float
    precision_std_deviation: float
    recall: float
    recall_std_deviation: float
    average_precision: float


class ImagePerformanceOut(Wire):
    predictions: list[PredictionOut]
    id: str
    created: datetime
    width: int
    height: int
    image_uri: str
    thumbnail_uri: str
    tags: list[ImageTagOut] | None = None
    regions: list[dict[str, object]] | None = None


def iteration_out(iteration: models.Iteration) -> IterationOut:
    platforms = iteration_export_platforms(iteration.domain_id, iteration.status == "Completed")
    return IterationOut(
        id=iteration.id,
        name=iteration.name,
        status=iteration.status,
        created=iteration.created,
        last_modified=iteration.modified,
        trained_at=iteration.trained_at,
        project_id=iteration.project_id,
        exportable=bool(platforms),
        exportable_to=list(platforms),
        domain_id=iteration.domain_id,
        classification_type=iteration.classification_type,
        training_type=iteration.training_type,
        reserved_budget_in_hours=iteration.reserved_budget_hours,
        training_time_in_minutes=iteration.training_time_minutes,
        publish_name=iteration.publish_name,
        original_publish_resource_id=IterationRecord.of(iteration).prediction_resource_id,
        training_error_details=iteration.error_reason,
    )


def performance_out(result: Performance, tag_ids: dict[str, str]) -> IterationPerformanceOut:
    return IterationPerformanceOut(
        per_tag_performance=[
            TagPerformanceOut(
                id=tag_ids.get(tag.tag, ""),
                name=tag.tag,
                precision=tag.precision,
                precision_std_deviation=tag.precision_std,
                recall=tag.recall,
                recall_std_deviation=tag.recall_std,
                average_precision=tag.average_precision,
            )
            for tag in result.per_tag
        ],
        precision=result.precision,
        precision_std_deviation=result.precision_std,
        recall=result.recall,
        recall_std_deviation=result.recall_std,
        average_precision=result.mean_average_precision,
    )


def image_performance_out(view: ImagePerformanceView, base_url: str, tag_ids: dict[str, str]) -> ImagePerformanceOut:
    image: ImageOut = image_out(view.image, base_url)
    result = view.result
    if result.predicted_boxes:
        predictions = [
            PredictionOut(
                probability=box.probability,
                tag_id=tag_ids.get(box.tag, ""),
                tag_name=box.tag,
                bounding_box=BoundingBoxOut(left=box.left, top=box.top, width=box.width, height=box.height),
            )
            for box in sorted(result.predicted_boxes, key=lambda b: -b.probability)
        ]
    else:
        predictions = [
            PredictionOut(probability=p, tag_id=tag_ids.get(tag, ""), tag_name=tag)
            for tag, p in sorted(result.probabilities.items(), key=lambda item: -item[1])
        ]
    return ImagePerformanceOut(
        predictions=predictions,
        id=image.id,
        created=image.created,
        width=image.width,
        height=image.height,
        image_uri=image.original_image_uri,
        thumbnail_uri=image.thumbnail_uri,
        tags=image.tags,
        regions=[region.model_dump(by_alias=True) for region in image.regions or []] or None,
    )
