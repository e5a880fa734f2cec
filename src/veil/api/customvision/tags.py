"""Tags: create, list, get, update, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from veil.api.deps import Ctx, TrainingKey
from veil.api.wire.tags import TagOut, TagUpdateIn, tag_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import projects as project_service
from veil.services import tags as tag_service

router = APIRouter(tags=["tags"])


@router.post("/projects/{projectId}/tags", response_model=TagOut)
def create_tag(
    projectId: str,
    ctx: Ctx,
    principal: Annotated[Principal, TrainingKey(P.tags_write)],
    name: str = Query(...),
    description: str = Query(""),
    type: str = Query("Regular"),
) -> TagOut:
    with ctx.db.session() as session:
        return tag_out(tag_service.create_tag(session, principal, projectId, name, description, type))


@router.get("/projects/{projectId}/tags", response_model=list[TagOut])
def list_tags(projectId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.tags_read)]) -> list[TagOut]:
    with ctx.db.read_session() as session:
        counts = tag_service.image_counts(session, projectId)
        return [tag_out(t, counts.get(t.id, 0)) for t in tag_service.list_tags(session, projectId)]


@router.get("/projects/{projectId}/tags/{tagId}", response_model=TagOut)
def get_tag(projectId: str, tagId: str, ctx: Ctx, _: Annotated[Principal, TrainingKey(P.tags_read)]) -> TagOut:
    with ctx.db.read_session() as session:
        project_service.get_project(session, projectId)
        tag = tag_service.get_tag(session, projectId, tagId)
        return tag_out(tag, tag_service.image_counts(session, projectId).get(tag.id, 0))


@router.patch("/projects/{projectId}/tags/{tagId}", response_model=TagOut)
def update_tag_route(
    projectId: str, tagId: str, body: TagUpdateIn, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.tags_write)]
) -> TagOut:
    with ctx.db.session() as session:
        tag = tag_service.update_tag(session, principal, projectId, tagId, body.name, body.description, body.type)
        return tag_out(tag, tag_service.image_counts(session, projectId).get(tag.id, 0))


@router.delete("/projects/{projectId}/tags/{tagId}", status_code=204)
def delete_tag_route(
    projectId: str, tagId: str, ctx: Ctx, principal: Annotated[Principal, TrainingKey(P.tags_write)]
) -> Response:
    with ctx.db.session() as session:
        tag_service.delete_tag(session, principal, projectId, tagId)
    return Response(status_code=204)
