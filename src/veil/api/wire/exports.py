"""Exports of a trained iteration (the model bundle and its download link)."""

from __future__ import annotations

from veil.api.wire.base import Wire
from veil.services.exports import ExportView


class ExportOut(Wire):
    platform: str
    status: str
    download_uri: str | None = None
    flavor: str | None = None
    newer_version_available: bool = False


def export_download_url(base_url: str, project_id: str, export_id: str) -> str:
    return f"{base_url.rstrip('/')}/veil/v1/projects/{project_id}/exports/{export_id}/download"


def export_out(view: ExportView, base_url: str, project_id: str) -> ExportOut:
    download = export_download_url(base_url, project_id, view.id) if view.status == "Done" else None
    return ExportOut(platform=view.platform, status=view.status, download_uri=download, flavor=view.flavor or None)
