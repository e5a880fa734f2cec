"""Wire shapes: Custom Vision's camelCase JSON (Training v3.3) and Veil's own `/veil/v1` bodies.

Database rows never leave the API directly; `*_out` functions convert them explicitly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from veil.services.domains import Domain
from veil.services.images import UploadOutcome
from veil.store import models


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class CustomVisionError(Wire):
    code: str
    message: str


class DomainOut(Wire):
    id: str
    name: str
    type: str
    exportable: bool
    enabled: bool
    exportable_platforms: list[str] = Field(default_factory=list)


class ProjectSettingsOut(Wire):
    domain_id: str
    classification_type: str | None
    target_export_platforms: list[str]
    use_negative_set: bool | None = None
    detection_parameters: str | None = None
    image_processing_settings: dict[str, Any] | None = None


class ProjectOut(Wire):
    id: str
    name: str
    description: str
    settings: ProjectSettingsOut
    created: datetime
    last_modified: datetime
    thumbnail_uri: str | None = None
    dr_mode_enabled: bool = False
    status: str = "Succeeded"


class TagOut(Wire):
    id: str
    name: str
    description: str
    type: str
    image_count: int = 0


class ImageTagOut(Wire):
    tag_id: str
    tag_name: str
    created: datetime


class ImageRegionOut(Wire):
    region_id: str
    tag_name: str
    created: datetime
    tag_id: str
    left: float
    top: float
    width: float
    height: float


class ImageOut(Wire):
    id: str
    created: datetime
    width: int
    height: int
    resized_image_uri: str
    thumbnail_uri: str
    original_image_uri: str
    tags: list[ImageTagOut] | None = None
    regions: list[ImageRegionOut] | None = None
    metadata: dict[str, str] | None = None


class ImageCreateResultOut(Wire):
    source_url: str
    status: str
    image: ImageOut | None = None
    # Veil addition: why an image was refused (Custom Vision gives only the status).
    message: str | None = None


class ImageCreateSummaryOut(Wire):
    is_batch_successful: bool
    images: list[ImageCreateResultOut]


# --- Veil's own (/veil/v1) ---------------------------------------------------------------------------------


class ApiKeyIn(Wire):
    role: str
    project_id: str | None = None
    expires_in_days: int | None = Field(default=None, gt=0)
    name: str = ""


class ApiKeyOut(Wire):
    id: str
    prefix: str
    role: str
    project_id: str | None
    name: str
    created: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class WhoAmIOut(Wire):
    """The calling key, as `GET /veil/v1/whoami` describes it (never its secret)."""

    key_id: str | None
    role: str
    project_id: str | None = Field(description="The one project the key is limited to; null: every project.")
    name: str


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The secret. Shown once; Veil keeps only its hash.")


class AuditEventOut(Wire):
    seq: int
    at: datetime
    key_id: str | None
    role: str | None
    action: str
    resource_ids: list[str]
    outcome: str
    hash: str


class AuditVerifyOut(Wire):
    ok: bool
    events: int
    broken_at: int | None
    reason: str
    head: str | None = None  # "seq:hash" of the last event: keep it outside Veil, verify against it later


# --- conversions -------------------------------------------------------------------------------------------


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        id=domain.id,
        name=domain.name,
        type=domain.type,
        exportable=domain.exportable,
        enabled=domain.enabled,
        exportable_platforms=["ONNX"] if domain.exportable else [],
    )


def project_out(project: models.Project) -> ProjectOut:
    settings = project.settings or {}
    return ProjectOut(
        id=project.id,
        name=project.name,
        description=project.description,
        settings=ProjectSettingsOut(
            domain_id=project.domain_id,
            classification_type=project.classification_type,
            target_export_platforms=list(settings.get("targetExportPlatforms", [])),
            use_negative_set=settings.get("useNegativeSet"),
            detection_parameters=settings.get("detectionParameters"),
            image_processing_settings=settings.get("imageProcessingSettings"),
        ),
        created=project.created,
        last_modified=project.modified,
    )


def tag_out(tag: models.Tag, image_count: int = 0) -> TagOut:
    return TagOut(id=tag.id, name=tag.name, description=tag.description, type=tag.type, image_count=image_count)


def image_data_url(base_url: str, image: models.Image, size: str = "original") -> str:
    url = f"{base_url.rstrip('/')}/veil/v1/projects/{image.project_id}/images/{image.id}/data"
    return url if size == "original" else f"{url}?size={size}"


def region_out(region: models.Region) -> ImageRegionOut:
    return ImageRegionOut(
        region_id=region.id,
        tag_name=region.tag.name,
        created=region.created,
        tag_id=region.tag_id,
        left=region.left,
        top=region.top,
        width=region.width,
        height=region.height,
    )


def image_out(image: models.Image, base_url: str) -> ImageOut:
    tags = [ImageTagOut(tag_id=t.tag_id, tag_name=t.tag.name, created=t.created) for t in image.tag_links]
    return ImageOut(
        id=image.id,
        created=image.created,
        width=image.width,
        height=image.height,
        resized_image_uri=image_data_url(base_url, image, "resized"),
        thumbnail_uri=image_data_url(base_url, image, "thumbnail"),
        original_image_uri=image_data_url(base_url, image),
        tags=tags or None,
        regions=[region_out(r) for r in image.regions] or None,
        metadata={k: str(v) for k, v in (image.meta or {}).items()} or None,
    )


def create_result_out(outcome: UploadOutcome, base_url: str) -> ImageCreateResultOut:
    return ImageCreateResultOut(
        source_url=outcome.source_name,
        status=outcome.status,
        image=image_out(outcome.image, base_url) if outcome.image is not None else None,
        message=outcome.reason or None,
    )


def api_key_out(key: models.ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)


def audit_event_out(event: models.AuditEvent) -> AuditEventOut:
    return AuditEventOut.model_validate(event, from_attributes=True)
