"""API keys and the calling key (`/veil/v1/keys`, `/veil/v1/whoami`)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from veil.api.wire.base import JsonInt, Wire
from veil.store import models


class ApiKeyIn(Wire):
    role: str
    project_id: str | None = None
    expires_in_days: JsonInt | None = Field(default=None, gt=0, le=36_500)  # 100 years: a date, not an overflow
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


def api_key_out(key: models.ApiKey) -> ApiKeyOut:
    return ApiKeyOut.model_validate(key, from_attributes=True)
