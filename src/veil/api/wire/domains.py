"""Domains (`GET /domains`)."""

from __future__ import annotations

from pydantic import Field

from veil.api.wire.base import Wire
from veil.services.domains import Domain


class DomainOut(Wire):
    id: str
    name: str
    type: str
    exportable: bool
    enabled: bool
    exportable_platforms: list[str] = Field(default_factory=list)


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        id=domain.id,
        name=domain.name,
        type=domain.type,
        exportable=domain.exportable,
        enabled=domain.enabled,
        exportable_platforms=["ONNX"] if domain.exportable else [],
    )
