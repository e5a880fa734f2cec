"""Projects: the project, its settings, its update body and its export summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from veil.api.wire.base import JsonBool, Wire
from veil.services.portability import ProjectExportSummary
from veil.store import models


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


class ProjectSettingsIn(Wire):
    domain_id: str | None = None
    classification_type: str | None = None
    target_export_platforms: list[str] | None = None
    use_negative_set: JsonBool | None = None
    detection_parameters: str | None = None


class ProjectUpdateIn(Wire):
    name: str | None = None
    description: str | None = None
    settings: ProjectSettingsIn | None = None


class ProjectExportOut(Wire):
    iteration_count: int
    image_count: int
    tag_count: int
    region_count: int
    estimated_import_time_in_ms: int = Field(alias="estimatedImportTimeInMS")
    token: str


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


def project_export_out(summary: ProjectExportSummary) -> ProjectExportOut:
    return ProjectExportOut.model_validate(
        {
            "iterationCount": summary.iterations,
            "imageCount": summary.images,
            "tagCount": summary.tags,
            "regionCount": summary.regions,
            "estimatedImportTimeInMS": summary.estimated_import_ms,
            "token": summary.token,
        }
    )
