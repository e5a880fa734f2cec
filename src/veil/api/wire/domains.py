"""Domains (`GET /domains`)."""

from __future__ import annotations

from pydantic import Field

from veil.api.wire.base import Wire
from veil.services.domains import Domain, export_platforms


class ModelInformationOut(Wire):
    description: str
    estimated_model_size_in_megabytes: int | None = None


class DomainOut(Wire):
    id: str
    name: str
    type: str
    exportable: bool
    enabled: bool
    exportable_platforms: list[str] = Field(default_factory=list)
    model_information: ModelInformationOut | None = None


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        id=domain.id,
        name=domain.name,
        type=domain.type,
        exportable=domain.exportable,
        enabled=domain.enabled,
        exportable_platforms=list(export_platforms(domain)),
        model_information=ModelInformationOut(
            description=f"{domain.description} Veil trains {domain.backbone} at {domain.input_size} px."
        ),
    )
