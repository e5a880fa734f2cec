"""Custom Vision's domains Veil trains for (Azure's ids, so code that names them keeps working)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    type: str  # Classification | ObjectDetection
    exportable: bool
    enabled: bool = True


DOMAINS: tuple[Domain, ...] = (
    Domain("ee85a74c-405e-4adc-bb47-ffa8ca0c9f31", "General", "Classification", exportable=False),
    Domain("0732100f-1a38-4e49-a514-c9b44c697ab5", "General (compact)", "Classification", exportable=True),
    Domain("da2e3a8a-40a5-4171-82f4-58522f70fbc1", "General", "ObjectDetection", exportable=False),
    Domain("a27d5ca5-bb19-49d8-a70a-fec086c47f5b", "General (compact)", "ObjectDetection", exportable=True),
)
DEFAULT_DOMAIN_ID = DOMAINS[0].id


def find_domain(domain_id: str) -> Domain | None:
    return next((d for d in DOMAINS if d.id == domain_id.lower()), None)
