"""Projects: create, list, get, update (name, description, settings), delete, export and import."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from veil.api.deps import Ctx, TargetExportPlatforms, TrainingKey
from veil.api.wire.projects import ProjectExportOut, ProjectOut, ProjectUpdateIn, project_export_out, project_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import portability
from veil.services import projects as project_service

router = APIRouter(tags=["projects"])


@router.post("/projects", response_model=ProjectOut)
def create_project(
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.projects_create)],
    platforms: TargetExportPlatforms,
    name: str = Query(...),
    description: str = Query(""),
    domainId: str | None = Query(None),
    classificationType: str | None = Query(None),
) -> ProjectOut:
    with ctx.db.session() as session:
        project = project_service.create_project(
            ctx, session, principal, name, description, domainId, classificationType, platforms
        )
        return project_out(project)


@router.get("/projects", response_model=list[ProjectOut])
def list_projects(ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.projects_read)]) -> list[ProjectOut]:
    with ctx.db.read_session() as session:
        return [project_out(p) for p in project_service.visible_projects(session, principal)]


@router.get("/projects/{projectId}", response_model=ProjectOut)
def get_project(projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.projects_read)]) -> ProjectOut:
    with ctx.db.read_session() as session:
        return project_out(project_service.get_project(session, projectId))


@router.patch("/projects/{projectId}", response_model=ProjectOut, response_model_by_alias=True)
def update_project_route(
    projectId: str, body: ProjectUpdateIn, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.projects_write)]
) -> ProjectOut:
    settings = body.settings
    with ctx.db.session() as session:
        project = project_service.get_project(session, projectId)
        changes: dict[str, object] = {}
        if settings is not None:
            portability.check_settings_change(project, settings.domain_id, settings.classification_type)
            if settings.target_export_platforms is not None:
                changes["targetExportPlatforms"] = settings.target_export_platforms
            if settings.use_negative_set is not None:
                changes["useNegativeSet"] = settings.use_negative_set
            portability.apply_domain_change(project, settings.domain_id, settings.classification_type)
        project = project_service.update_project(
            session, principal, projectId, body.name, body.description, changes or None
        )
        return project_out(project)


@router.delete("/projects/{projectId}", status_code=204)
def delete_project(
    projectId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.projects_write)]
) -> Response:
    project_service.delete_project(ctx, principal, projectId)
    return Response(status_code=204)


@router.get("/projects/{projectId}/export", response_model=ProjectExportOut)
def export_project(
    projectId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.projects_write)]
) -> ProjectExportOut:
    return project_export_out(portability.export_project(ctx, principal, projectId))


@router.post("/projects/import", response_model=ProjectOut)
def import_project(
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.projects_create)],
    token: str = Query(...),
    name: str | None = Query(None),
) -> ProjectOut:
    return project_out(portability.import_project(ctx, principal, token, name))
