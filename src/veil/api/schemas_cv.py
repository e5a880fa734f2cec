"""Wire shapes of the full Custom Vision surface (Training v3.3 / Prediction v3.1) beyond the foundation's.

Bodies the SDK sends (`*In`) and answers it deserializes (`*Out`), camelCase via `Wire`; conversions from the
services' typed values are explicit functions at the bottom; boxes are normalized left/top/width/height.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from veil.api.schemas import ImageOut, ImageTagOut, Wire, image_out
from veil.services.exports import ExportView, ImagePerformanceView
from veil.services.labels import MetadataOutcome
from veil.services.prediction import PredictedTag, PredictionOutcome, stored_tags
from veil.store import models

if TYPE_CHECKING:
    from veil.vision.metrics import Performance

# --- bodies the SDK sends ---


class RegionIn(Wire):
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageFileCreateEntryIn(Wire):
    name: str | None = None
    contents: bytes
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None

    @field_validator("contents", mode="before")
    @classmethod
    def _base64(cls, value: object) -> bytes:
        # msrest serializes `bytearray` as base64 text; accept standard and URL-safe alphabets.
        if isinstance(value, bytes):
            return value
        if not isinstance(value, str):
            raise ValueError("contents must be base64 text")
        try:
            url_safe = "-" in value or "_" in value
            return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if url_safe else None)
        except (binascii.Error, ValueError):
            raise ValueError("contents is not valid base64") from None


class ImageFileCreateBatchIn(Wire):
    images: list[ImageFileCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageIdCreateEntryIn(Wire):
    id: str
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None


class ImageIdCreateBatchIn(Wire):
    images: list[ImageIdCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageUrlCreateEntryIn(Wire):
    url: str
    tag_ids: list[str] | None = None
    regions: list[RegionIn] | None = None


class ImageUrlCreateBatchIn(Wire):
    images: list[ImageUrlCreateEntryIn]
    tag_ids: list[str] | None = None
    metadata: dict[str, str] | None = None


class ImageTagCreateEntry(Wire):
    image_id: str
    tag_id: str


class ImageTagCreateBatchIn(Wire):
    tags: list[ImageTagCreateEntry]


class ImageRegionCreateEntry(Wire):
    image_id: str
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageRegionCreateBatchIn(Wire):
    regions: list[ImageRegionCreateEntry]


class TrainingParametersIn(Wire):
    selected_tags: list[str] | None = None


class ProjectSettingsIn(Wire):
    domain_id: str | None = None
    classification_type: str | None = None
    target_export_platforms: list[str] | None = None
    use_negative_set: bool | None = None
    detection_parameters: str | None = None


class ProjectUpdateIn(Wire):
    name: str | None = None
    description: str | None = None
    settings: ProjectSettingsIn | None = None


class TagUpdateIn(Wire):
    name: str | None = None
    description: str | None = None
    type: str | None = None


class IterationUpdateIn(Wire):
    name: str | None = None


class ImageUrlIn(Wire):
    url: str


class PredictionQueryTagWire(Wire):
    id: str
    min_threshold: float = 0.0
    max_threshold: float = 1.0


class PredictionQueryTokenWire(Wire):
    session: str | None = None
    continuation: str | None = None
    max_count: int | None = None
    order_by: str | None = None
    tags: list[PredictionQueryTagWire] | None = None
    iteration_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    application: str | None = None


# --- answers ---


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


class BoundingBoxOut(Wire):
    left: float
    top: float
    width: float
    height: float


class PredictionOut(Wire):
    probability: float
    tag_id: str
    tag_name: str
    bounding_box: BoundingBoxOut | None = None
    tag_type: str = "Regular"


class ImagePredictionOut(Wire):
    id: str
    project: str
    iteration: str
    created: datetime
    predictions: list[PredictionOut]


class StoredImagePredictionOut(ImagePredictionOut):
    resized_image_uri: str | None = None
    thumbnail_uri: str | None = None
    original_image_uri: str | None = None
    domain: str | None = None


class PredictionQueryResultOut(Wire):
    token: PredictionQueryTokenWire
    results: list[StoredImagePredictionOut]


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


class ExportOut(Wire):
    platform: str
    status: str
    download_uri: str | None = None
    flavor: str | None = None
    newer_version_available: bool = False


class ProjectExportOut(Wire):
    iteration_count: int
    image_count: int
    tag_count: int
    region_count: int
    estimated_import_time_in_ms: int = Field(alias="estimatedImportTimeInMS")
    token: str


class ImageTagCreateSummaryOut(Wire):
    created: list[ImageTagCreateEntry]
    duplicated: list[ImageTagCreateEntry]
    exceeded: list[ImageTagCreateEntry]


class ImageRegionCreateResultOut(Wire):
    image_id: str
    region_id: str
    tag_name: str
    created: datetime
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageRegionCreateSummaryOut(Wire):
    created: list[ImageRegionCreateResultOut]
    duplicated: list[ImageRegionCreateEntry]
    exceeded: list[ImageRegionCreateEntry]


class ImageMetadataUpdateEntryOut(Wire):
    image_id: str
    status: str
    metadata: dict[str, str] | None = None


class ImageMetadataUpdateSummaryOut(Wire):
    is_batch_successful: bool
    images: list[ImageMetadataUpdateEntryOut]


class JobOut(Wire):
    """Veil addition: the training job behind an iteration (progress, ETA, cancel state)."""

    id: str
    kind: str
    status: str
    stage: str
    percent: float
    eta_seconds: float | None
    error: str | None
    cancel_requested: bool
    created: datetime
    started_at: datetime | None
    finished_at: datetime | None


# --- conversions ---


def iteration_out(iteration: models.Iteration) -> IterationOut:
    return IterationOut(
        id=iteration.id,
        name=iteration.name,
        status=iteration.status,
        created=iteration.created,
        last_modified=iteration.modified,
        trained_at=iteration.trained_at,
        project_id=iteration.project_id,
        exportable=iteration.exportable and iteration.status == "Completed",
        exportable_to=["ONNX"] if iteration.status == "Completed" else [],
        domain_id=iteration.domain_id,
        classification_type=iteration.classification_type,
        training_type=iteration.training_type,
        reserved_budget_in_hours=iteration.reserved_budget_hours,
        training_time_in_minutes=iteration.training_time_minutes,
        publish_name=iteration.publish_name,
        original_publish_resource_id=(iteration.metrics or {}).get("prediction_resource_id"),
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


def prediction_out(tag: PredictedTag) -> PredictionOut:
    box = BoundingBoxOut(left=tag.box[0], top=tag.box[1], width=tag.box[2], height=tag.box[3]) if tag.box else None
    return PredictionOut(
        probability=tag.probability, tag_id=tag.tag_id, tag_name=tag.tag_name, bounding_box=box, tag_type=tag.tag_type
    )


def image_prediction_out(outcome: PredictionOutcome) -> ImagePredictionOut:
    return ImagePredictionOut(
        id=outcome.id,
        project=outcome.project_id,
        iteration=outcome.iteration_id,
        created=outcome.created,
        predictions=[prediction_out(tag) for tag in outcome.predictions],
    )


def stored_prediction_out(row: models.Prediction, base_url: str) -> StoredImagePredictionOut:
    image_url = f"{base_url.rstrip('/')}/veil/v1/projects/{row.project_id}/predictions/{row.id}/image"
    return StoredImagePredictionOut(
        id=row.id,
        project=row.project_id,
        iteration=row.iteration_id or "",
        created=row.created,
        predictions=[prediction_out(tag) for tag in stored_tags(row)],
        original_image_uri=image_url if row.image_blob_id else None,
        resized_image_uri=image_url if row.image_blob_id else None,
        thumbnail_uri=image_url if row.image_blob_id else None,
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


def export_download_url(base_url: str, project_id: str, export_id: str) -> str:
    return f"{base_url.rstrip('/')}/veil/v1/projects/{project_id}/exports/{export_id}/download"


def export_out(view: ExportView, base_url: str, project_id: str) -> ExportOut:
    download = export_download_url(base_url, project_id, view.id) if view.status == "Done" else None
    return ExportOut(platform=view.platform, status=view.status, download_uri=download, flavor=view.flavor or None)


def metadata_summary_out(outcomes: list[MetadataOutcome]) -> ImageMetadataUpdateSummaryOut:
    return ImageMetadataUpdateSummaryOut(
        is_batch_successful=all(o.status == "OK" for o in outcomes),
        images=[
            ImageMetadataUpdateEntryOut(image_id=o.image_id, status=o.status, metadata=o.metadata) for o in outcomes
        ],
    )
