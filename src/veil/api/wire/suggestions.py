"""The smart labeler and region proposals: suggested tags and regions, their query token, tag counts, proposals."""

from __future__ import annotations

from datetime import datetime

from veil.api.wire.base import JsonFloat, JsonInt, Wire
from veil.api.wire.images import image_data_url
from veil.api.wire.predictions import BoundingBoxOut, PredictionOut, prediction_out
from veil.services.region_proposals import RegionProposals
from veil.services.suggestions import SuggestedImage, SuggestionQuery


class SuggestedTagAndRegionQueryTokenWire(Wire):
    tag_ids: list[str] | None = None
    threshold: JsonFloat | None = None
    session: str | None = None
    continuation: str | None = None
    max_count: JsonInt | None = None
    sort_by: str | None = None  # UncertaintyAscending | UncertaintyDescending


class TagFilterIn(Wire):
    tag_ids: list[str] | None = None
    threshold: JsonFloat | None = None


class SuggestedTagAndRegionOut(Wire):
    id: str  # the image's id: tag it with create_image_tags / create_image_regions
    project: str
    iteration: str
    created: datetime
    predictions: list[PredictionOut]
    prediction_uncertainty: float


class StoredSuggestedTagAndRegionOut(SuggestedTagAndRegionOut):
    width: int
    height: int
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    domain: str | None = None


class SuggestedTagAndRegionQueryOut(Wire):
    token: SuggestedTagAndRegionQueryTokenWire
    results: list[StoredSuggestedTagAndRegionOut]


class RegionProposalOut(Wire):
    confidence: float
    bounding_box: BoundingBoxOut


class ImageRegionProposalOut(Wire):
    project_id: str
    image_id: str
    proposals: list[RegionProposalOut]


def query_in(token: SuggestedTagAndRegionQueryTokenWire) -> SuggestionQuery:
    return SuggestionQuery(
        tag_ids=tuple(token.tag_ids or ()),
        threshold=token.threshold,
        session=token.session,
        continuation=token.continuation,
        max_count=token.max_count,
        sort_by=token.sort_by,
    )


def token_out(query: SuggestionQuery) -> SuggestedTagAndRegionQueryTokenWire:
    return SuggestedTagAndRegionQueryTokenWire(
        tag_ids=list(query.tag_ids),
        threshold=query.threshold,
        session=query.session,
        continuation=query.continuation,
        max_count=query.max_count,
        sort_by=query.sort_by,
    )


def suggestion_out(found: SuggestedImage) -> SuggestedTagAndRegionOut:
    return SuggestedTagAndRegionOut(
        id=found.image.id,
        project=found.image.project_id,
        iteration=found.iteration_id,
        created=found.created,
        predictions=[prediction_out(p) for p in found.predictions],
        prediction_uncertainty=found.uncertainty,
    )


def stored_suggestion_out(
    found: SuggestedImage, base_url: str, domain_id: str | None
) -> StoredSuggestedTagAndRegionOut:
    image = found.image
    return StoredSuggestedTagAndRegionOut(
        **suggestion_out(found).model_dump(),
        width=image.width,
        height=image.height,
        resized_image_uri=image_data_url(base_url, image, "resized"),
        thumbnail_uri=image_data_url(base_url, image, "thumbnail"),
        original_image_uri=image_data_url(base_url, image),
        domain=domain_id,
    )


def proposals_out(found: RegionProposals) -> ImageRegionProposalOut:
    return ImageRegionProposalOut(
        project_id=found.project_id,
        image_id=found.image_id,
        proposals=[
            RegionProposalOut(
                confidence=p.confidence,
                bounding_box=BoundingBoxOut(left=p.box[0], top=p.box[1], width=p.box[2], height=p.box[3]),
            )
            for p in found.proposals
        ],
    )
