"""Exports of a trained iteration: Custom Vision's `Export` (platform, status, downloadUri, flavor) and Veil's
additions (the export's id, the running job's stage and percent, why it failed)."""

from __future__ import annotations

from veil.api.wire.base import Wire
from veil.services.exports import DONE, ExportView


class ExportOut(Wire):
    platform: str
    status: str  # Exporting | Done | Failed
    download_uri: str | None = None
    flavor: str | None = None
    newer_version_available: bool = False
    # Veil additions: the id (cancel, job, download routes under /veil/v1), progress while Exporting, the reason
    # once Failed (Azure's Export gives no reason).
    id: str
    iteration_id: str
    stage: str | None = None
    percent: float | None = None
    error_details: str | None = None


def export_download_url(base_url: str, project_id: str, export_id: str) -> str:
    return f"{base_url.rstrip('/')}/veil/v1/projects/{project_id}/exports/{export_id}/download"


def export_out(view: ExportView, base_url: str, project_id: str) -> ExportOut:
    download = export_download_url(base_url, project_id, view.id) if view.status == DONE else None
    return ExportOut(
        platform=view.platform, status=view.status, download_uri=download, flavor=view.flavor or None,
        id=view.id, iteration_id=view.iteration_id, stage=view.stage or None, percent=view.percent,
        error_details=view.error,
    )  # fmt: skip
