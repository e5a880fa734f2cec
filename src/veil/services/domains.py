"""Custom Vision's domains for the use cases and the routes. The table itself (Azure's ids, names, types and
export flags, each mapped to the network Veil trains) lives in `veil.vision.domains`, beside those networks."""

from __future__ import annotations

from veil.vision.domains import (
    DEFAULT_CLASSIFICATION_DOMAIN_ID,
    DEFAULT_DETECTION_DOMAIN_ID,
    DOMAINS,
    Domain,
    can_export,
    export_platforms,
    find_domain,
)

DEFAULT_DOMAIN_ID = DEFAULT_CLASSIFICATION_DOMAIN_ID

__all__ = [
    "DEFAULT_CLASSIFICATION_DOMAIN_ID",
    "DEFAULT_DETECTION_DOMAIN_ID",
    "DEFAULT_DOMAIN_ID",
    "DOMAINS",
    "Domain",
    "can_export",
    "export_platforms",
    "find_domain",
    "iteration_export_platforms",
]


def iteration_export_platforms(domain_id: str | None, completed: bool) -> tuple[str, ...]:
    """What an iteration reports as `exportableTo`: its domain's platforms once it is trained (Azure's rule: only
    compact domains export), so an iteration and `get_domains` always agree."""
    domain = find_domain(domain_id or "") if completed else None
    return export_platforms(domain) if domain is not None else ()
