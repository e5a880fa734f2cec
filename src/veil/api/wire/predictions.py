"""Predictions: a prediction's answer, stored predictions and their query token, the URL body."""

from __future__ import annotations

from datetime import datetime

from veil.api.wire.base import JsonDateTime, JsonFloat, JsonInt, Wire
from veil.services.predictions import PredictedTag, PredictionOutcome, stored_tags
from veil.store import models


class ImageUrlIn(Wire):
    url: str


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


class PredictionQueryTagWire(Wire):
    id: str
    min_threshold: JsonFloat = 0.0
    max_threshold: JsonFloat = 1.0


class PredictionQueryTokenWire(Wire):
    session: str | None = None
    continuation: str | None = None
    max_count: JsonInt | None = None
    order_by: str | None = None
    tags: list[PredictionQueryTagWire] | None = None
    iteration_id: str | None = None
    start_time: JsonDateTime | None = None
    end_time: JsonDateTime | None = None
    application: str | None = None


class PredictionQueryResultOut(Wire):
    token: PredictionQueryTokenWire
    results: list[StoredImagePredictionOut]


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


def stored_prediction_out(row: models.Prediction, base_url: str, domain_id: str | None) -> StoredImagePredictionOut:
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
        domain=domain_id,
    )
