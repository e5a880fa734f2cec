"""A project's privacy policy (`/veil/v1/projects/{projectId}/privacy`): read, and replace after checking
that ingest can apply it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from veil.api.deps import Ctx, VeilKey
from veil.privacy.policy import PrivacyPolicy
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import privacy as privacy_service
from veil.services import projects as project_service

router = APIRouter()


@router.get("/projects/{projectId}/privacy", response_model=PrivacyPolicy)
def get_privacy_policy(projectId: str, ctx: Ctx, _: Annotated[Principal, VeilKey(P.projects_read)]) -> PrivacyPolicy:
    with ctx.db.read_session() as session:
        return privacy_service.privacy_policy(project_service.get_project(session, projectId))


@router.put("/projects/{projectId}/privacy", response_model=PrivacyPolicy)
def set_privacy_policy(
    projectId: str, policy: PrivacyPolicy, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.projects_write)]
) -> PrivacyPolicy:
    with ctx.db.session() as session:
        project = privacy_service.set_privacy_policy(session, principal, projectId, policy)
        return privacy_service.privacy_policy(project)
