"""Domains: `GET /domains`, `GET /domains/{domainId}` (the fixed list Veil trains for)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from veil.api.deps import TrainingKey
from veil.api.errors import ApiError
from veil.api.wire.domains import DomainOut, domain_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services.domains import DOMAINS, find_domain

router = APIRouter(tags=["domains"])


@router.get("/domains", response_model=list[DomainOut])
def get_domains(_: Annotated[Principal, TrainingKey(P.projects_read)]) -> list[DomainOut]:
    return [domain_out(d) for d in DOMAINS]


@router.get("/domains/{domainId}", response_model=DomainOut)
def get_domain(domainId: str, _: Annotated[Principal, TrainingKey(P.projects_read)]) -> DomainOut:
    domain = find_domain(domainId)
    if domain is None:
        raise ApiError(404, "NotFoundDomain", f"no domain with id {domainId}")
    return domain_out(domain)
