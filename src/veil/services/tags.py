"""Tags of a project: create, list, get, update, delete; Regular or Negative (at most one Negative per project,
never in detection projects)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from veil.security import audit
from veil.security.auth import Principal
from veil.services.errors import Conflict, InvalidInput, NotFound
from veil.services.projects import get_project
from veil.store.models import ImageTag, Project, Region, Tag

TAG_TYPES = ("Regular", "Negative")
MAX_TAG_NAME = 200
MAX_TAG_DESCRIPTION = 1000


def create_tag(
    session: Session,
    actor: Principal,
    project_id: str,
    name: str,
    description: str = "",
    type: str = "Regular",
) -> Tag:
    project = get_project(session, project_id)
    name = (name or "").strip()
    if not name or len(name) > MAX_TAG_NAME:
        raise InvalidInput(f"tag name must be 1..{MAX_TAG_NAME} characters", code="BadRequestTagName")
    if description and len(description) > MAX_TAG_DESCRIPTION:
        raise InvalidInput(
            f"tag description must be at most {MAX_TAG_DESCRIPTION} characters", code="BadRequestTagDescription"
        )
    if type not in TAG_TYPES:
        raise InvalidInput(f"tag type must be Regular or Negative, not {type!r}", code="BadRequestTagType")
    existing = session.scalars(select(Tag).where(Tag.project_id == project.id)).all()
    if any(t.name.lower() == name.lower() for t in existing):
        raise Conflict(f"a tag named {name!r} already exists in this project", code="BadRequestTagNameNotUnique")
    if type == "Negative":
        if project.project_type == "ObjectDetection":
            raise InvalidInput("object detection projects cannot have a Negative tag", code="BadRequestTagType")
        if any(t.type == "Negative" for t in existing):
            raise Conflict("this project already has a Negative tag", code="BadRequestMultipleNegativeTag")
    tag = Tag(project_id=project.id, name=name, description=description or "", type=type)
    session.add(tag)
    session.flush()
    audit.record(session, actor, "tag.create", [project.id, tag.id])
    return tag


def list_tags(session: Session, project_id: str) -> list[Tag]:
    get_project(session, project_id)
    return list(session.scalars(select(Tag).where(Tag.project_id == project_id).order_by(Tag.created)))


def get_tag(session: Session, project_id: str, tag_id: str) -> Tag:
    tag = session.get(Tag, tag_id)
    if tag is None or tag.project_id != project_id:
        raise NotFound(f"tag {tag_id} not found in project {project_id}", code="NotFoundTag")
    return tag


def image_counts(session: Session, project_id: str) -> dict[str, int]:
    """Images per tag (by tag link for classification, by region for detection)."""
    by_link = session.execute(
        select(ImageTag.tag_id, func.count()).join(Tag, Tag.id == ImageTag.tag_id)
        .where(Tag.project_id == project_id).group_by(ImageTag.tag_id)
    ).all()  # fmt: skip
    by_region = session.execute(
        select(Region.tag_id, func.count(func.distinct(Region.image_id))).join(Tag, Tag.id == Region.tag_id)
        .where(Tag.project_id == project_id).group_by(Region.tag_id)
    ).all()  # fmt: skip
    counts: dict[str, int] = {}
    for tag_id, count in [*by_link, *by_region]:
        counts[tag_id] = max(counts.get(tag_id, 0), count)
    return counts


def resolve_tags(session: Session, project_id: str, tag_ids: list[str]) -> list[Tag]:
    """The tags named by id, all in this project; a regular and the negative tag never together."""
    tags = []
    for tag_id in dict.fromkeys(tag_ids):
        tag = session.get(Tag, tag_id)
        if tag is None or tag.project_id != project_id:
            raise InvalidInput(f"tag {tag_id} does not exist in project {project_id}", code="BadRequestInvalidIds")
        tags.append(tag)
    if len(tags) > 1 and any(t.type == "Negative" for t in tags):
        raise InvalidInput(
            "the Negative tag cannot be on an image with other tags",
            code="BadRequestNegativeAndRegularTagOnSameImage",
        )
    return tags


def update_tag(
    session: Session,
    actor: Principal,
    project_id: str,
    tag_id: str,
    name: str | None = None,
    description: str | None = None,
    type: str | None = None,
) -> Tag:
    project = get_project(session, project_id)
    tag = get_tag(session, project_id, tag_id)
    others = [t for t in session.scalars(select(Tag).where(Tag.project_id == project_id)) if t.id != tag.id]
    if name is not None:
        name = name.strip()
        if not name or len(name) > MAX_TAG_NAME:
            raise InvalidInput(f"tag name must be 1..{MAX_TAG_NAME} characters", code="BadRequestTagName")
        if any(t.name.lower() == name.lower() for t in others):
            raise Conflict(f"a tag named {name!r} already exists", code="BadRequestTagNameNotUnique")
        tag.name = name
    if description is not None:
        tag.description = description
    if type is not None and type != tag.type:
        _check_type_change(session, project, tag, type, others)
        tag.type = type
    audit.record(session, actor, "tag.update", [project_id, tag_id])
    return tag


def _check_type_change(session: Session, project: Project, tag: Tag, new_type: str, others: list[Tag]) -> None:
    if new_type not in TAG_TYPES:
        raise InvalidInput(f"tag type must be Regular or Negative, not {new_type!r}", code="BadRequestTagType")
    if new_type != "Negative":
        return
    if project.project_type == "ObjectDetection":
        raise InvalidInput("object detection projects cannot have a Negative tag", code="BadRequestTagType")
    if any(t.type == "Negative" for t in others):
        raise Conflict("this project already has a Negative tag", code="BadRequestMultipleNegativeTag")
    shared = session.scalars(
        select(ImageTag.image_id)
        .where(ImageTag.tag_id == tag.id)
        .intersect(select(ImageTag.image_id).where(ImageTag.tag_id.in_([t.id for t in others])))
    ).first()
    if shared:
        raise InvalidInput(
            f"tag {tag.name!r} is on images with other tags; a Negative tag must be alone on its images",
            code="BadRequestNegativeAndRegularTagOnSameImage",
        )


def delete_tag(session: Session, actor: Principal, project_id: str, tag_id: str) -> None:
    get_project(session, project_id)
    tag = get_tag(session, project_id, tag_id)
    session.delete(tag)  # its image links and regions cascade
    audit.record(session, actor, "tag.delete", [project_id, tag_id])
