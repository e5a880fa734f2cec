"""Projects: create (with a fresh wrapped DEK), list, get, update, delete (shred first); the privacy policy is
`services.privacy`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from veil.jobs import queue
from veil.privacy.policy import PrivacyPolicy
from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext, current_kek_id
from veil.services.domains import DEFAULT_DOMAIN_ID, find_domain
from veil.services.errors import InvalidInput, NotFound
from veil.store.models import ApiKey, Project, utcnow

CLASSIFICATION_TYPES = ("Multiclass", "Multilabel")
EXPORT_PLATFORMS = ("CoreML", "TensorFlow", "DockerFile", "ONNX", "VAIDK", "OpenVino")
MAX_NAME = 200
MAX_DESCRIPTION = 4000  # every project listing returns it: a bound keeps `GET /projects` small


def _check_description(description: str | None) -> None:
    if description and len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"project description is {len(description)} characters; at most {MAX_DESCRIPTION}",
            code="BadRequestProjectDescription",
        )


def create_project(
    ctx: AppContext,
    session: Session,
    actor: Principal,
    name: str,
    description: str = "",
    domain_id: str | None = None,
    classification_type: str | None = None,
    target_export_platforms: list[str] | None = None,
) -> Project:
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"project name must be 1..{MAX_NAME} characters", code="BadRequestProjectName")
    _check_description(description)
    domain = find_domain(domain_id or DEFAULT_DOMAIN_ID)
    if domain is None:
        raise InvalidInput(
            f"unknown domainId {domain_id}; GET /domains lists them", code="BadRequestProjectUnknownDomain"
        )
    if classification_type is not None and classification_type not in CLASSIFICATION_TYPES:
        raise InvalidInput(
            f"classificationType must be Multiclass or Multilabel, not {classification_type!r}",
            code="BadRequestProjectUnknownClassification",
        )
    platforms = list(target_export_platforms or [])
    unknown = [p for p in platforms if p not in EXPORT_PLATFORMS]
    if unknown:
        raise InvalidInput(f"unknown targetExportPlatforms {unknown}; known: {', '.join(EXPORT_PLATFORMS)}")
    is_detection = domain.type == "ObjectDetection"
    project = Project(
        name=name,
        description=description or "",
        domain_id=domain.id,
        project_type=domain.type,
        classification_type=None if is_detection else (classification_type or "Multiclass"),
        settings={"targetExportPlatforms": platforms, "useNegativeSet": True},
        privacy=PrivacyPolicy(retention_days=ctx.settings.default_retention_days).model_dump(),
    )
    session.add(project)
    session.flush()
    kek_id = current_kek_id(session, for_update=True)
    _dek, project.wrapped_dek = ctx.keyring.new_dek(project.id, kek_id)
    project.kek_id = kek_id
    audit.record(session, actor, "project.create", [project.id])
    return project


def visible_projects(session: Session, actor: Principal) -> list[Project]:
    query = select(Project).where(Project.deleting.is_(False)).order_by(Project.created)
    if actor.project_id is not None:
        query = query.where(Project.id == actor.project_id)
    return list(session.scalars(query))


def get_project(session: Session, project_id: str) -> Project:
    """The project, unless it is missing or being deleted: `NotFoundProject`, Azure's code (the SDK's
    `CustomVisionErrorCodes.not_found_project`), on every route."""
    project = session.get(Project, project_id)
    if project is None or project.deleting:
        raise NotFound(f"project {project_id} not found", code="NotFoundProject")
    return project


def update_project(
    session: Session,
    actor: Principal,
    project_id: str,
    name: str | None = None,
    description: str | None = None,
    settings: dict[str, Any] | None = None,
) -> Project:
    project = get_project(session, project_id)
    if name is not None:
        if not name.strip() or len(name) > MAX_NAME:
            raise InvalidInput(f"project name must be 1..{MAX_NAME} characters", code="BadRequestProjectName")
        project.name = name.strip()
    if description is not None:
        _check_description(description)
        project.description = description
    if settings:
        project.settings = {**project.settings, **settings}
    project.modified = utcnow()
    audit.record(session, actor, "project.update", [project.id])
    return project


def delete_project(ctx: AppContext, actor: Principal, project_id: str) -> None:
    """Destroy the project's DEK (committed first: nothing of it can be decrypted from then on), then its key in
    the key store (so no backup can open it either), then its blobs, then rows. A crash in between leaves a
    hidden `deleting` project; `finish_deletions` ends it."""
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        project.wrapped_dek, project.kek_id, project.deleting = None, None, True
        audit.record(session, actor, "project.delete", [project_id], "key-destroyed")
    ctx.db.checkpoint()
    _remove_project_data(ctx, project_id)


def _remove_project_data(ctx: AppContext, project_id: str) -> None:
    # The project's key in the key store goes too: backups taken earlier hold its wrapped DEK, now noise.
    ctx.keyring.forget(project_id)
    ctx.blobs.delete_project(project_id)
    with ctx.db.session() as session:
        queue.forget_project_in(session, project_id)
        session.execute(
            update(ApiKey)
            .where(ApiKey.project_id == project_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        session.execute(delete(Project).where(Project.id == project_id))  # rows cascade (foreign keys)


def finish_deletions(ctx: AppContext) -> list[str]:
    """Complete project deletions interrupted after their key was destroyed; returns their ids."""
    with ctx.db.session() as session:
        pending = list(session.scalars(select(Project.id).where(Project.deleting.is_(True))))
    for project_id in pending:
        _remove_project_data(ctx, project_id)
    return pending


def is_detection(project: Project) -> bool:
    return project.project_type == "ObjectDetection"


def task_of(project: Project) -> str:
    if is_detection(project):
        return "detect"
    return "multilabel" if project.classification_type == "Multilabel" else "classify"
