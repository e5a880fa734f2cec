"""Project settings changes (domain, classification type) and project export/import by token.

An export token is a signed, expiring reference to a project on this Veil installation (HMAC-SHA256 under a
key derived from the master key): it carries no image data, so it is useless elsewhere. Import copies the
tags, images (decrypted with the source project's key, sealed with the new project's), tag links, regions and
metadata; each image goes through the one ingest path, so the copy obeys the new project's policy. Trained
iterations are not copied: train the imported project again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from veil.security import audit
from veil.security.auth import Principal
from veil.services.context import AppContext
from veil.services.domains import find_domain
from veil.services.errors import InvalidInput
from veil.services.ingest import IngestPolicy, anonymization_facts, ingest_policy, keep_image
from veil.services.projects import CLASSIFICATION_TYPES, create_project, get_project
from veil.services.vault import Vault
from veil.store.models import Image, ImageTag, Project, Region, Tag, new_id, utcnow

TOKEN_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class ProjectExportSummary:
    iterations: int
    images: int
    tags: int
    regions: int
    estimated_import_ms: int
    token: str


# --- publishing ---


# --- settings ---


def check_settings_change(project: Project, domain_id: str | None, classification_type: str | None) -> None:
    if domain_id:
        domain = find_domain(domain_id)
        if domain is None:
            raise InvalidInput(
                f"unknown domainId {domain_id}; GET /domains lists them",
                code="BadRequestProjectUnknownDomain",
            )
        if domain.type != project.project_type:
            raise InvalidInput(
                f"a {project.project_type} project cannot switch to a {domain.type} domain",
                code="BadRequestProjectUnsupportedDomainTypeChange",
            )
    if classification_type is not None:
        if project.project_type == "ObjectDetection":
            raise InvalidInput(
                "object detection projects have no classificationType",
                code="BadRequestProjectUnknownClassification",
            )
        if classification_type not in CLASSIFICATION_TYPES:
            raise InvalidInput(
                f"classificationType must be Multiclass or Multilabel, not {classification_type!r}",
                code="BadRequestProjectUnknownClassification",
            )


def apply_domain_change(project: Project, domain_id: str | None, classification_type: str | None) -> None:
    """Apply a checked settings change (see `check_settings_change`); the next training uses it."""
    if domain_id:
        domain = find_domain(domain_id)
        assert domain is not None
        project.domain_id = domain.id
    if classification_type is not None and project.project_type != "ObjectDetection":
        project.classification_type = classification_type


# --- export / import ---


def _token_key(ctx: AppContext) -> bytes:
    return ctx.keyring.derive_secret(b"veil/project-export-token/v1\x00")


def _sign(ctx: AppContext, claims: dict[str, str]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims, sort_keys=True).encode()).decode().rstrip("=")
    signature = hmac.new(_token_key(ctx), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{signature}"


def _verify(ctx: AppContext, token: str) -> dict[str, str]:
    body, _, signature = (token or "").partition(".")
    expected = hmac.new(_token_key(ctx), body.encode(), hashlib.sha256).hexdigest()
    # Bytes, not str: compare_digest refuses non-ASCII str (a hostile token is a 400, not a TypeError).
    if not body or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise InvalidInput(
            "the import token is not one this Veil installation issued (or the master key changed since)",
            code="BadRequestInvalidImportToken",
        )
    claims: dict[str, str] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    if claims.get("expires", "") < utcnow().isoformat():
        raise InvalidInput(
            "the import token has expired; export the project again", code="BadRequestInvalidImportToken"
        )
    return claims


def _count(session: Session, model: type[Image] | type[Tag], project_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(model).where(model.project_id == project_id)) or 0)


def export_project(ctx: AppContext, actor: Principal, project_id: str) -> ProjectExportSummary:
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        images, tags = _count(session, Image, project_id), _count(session, Tag, project_id)
        regions = int(
            session.scalar(select(func.count()).select_from(Region).join(Image).where(Image.project_id == project_id))
            or 0
        )
        claims = {
            "project": project.id,
            "expires": (utcnow() + TOKEN_LIFETIME).isoformat(),
            "nonce": new_id(),
        }
        audit.record(session, actor, "project.export", [project_id])
    return ProjectExportSummary(
        iterations=0,
        images=images,
        tags=tags,
        regions=regions,
        estimated_import_ms=50 * images,
        token=_sign(ctx, claims),
    )


def import_project(ctx: AppContext, actor: Principal, token: str, name: str | None) -> Project:
    claims = _verify(ctx, token)
    with ctx.db.session() as session:
        source = get_project(session, claims["project"])
        if not actor.covers(source.id):
            raise InvalidInput(
                "the import token names a project this key cannot read", code="BadRequestInvalidImportToken"
            )
        target = create_project(
            ctx,
            session,
            actor,
            name or source.name,
            source.description,
            source.domain_id,
            source.classification_type,
        )
        target.settings, target.privacy = dict(source.settings or {}), dict(source.privacy or {})
        tag_map = {}
        for tag in session.scalars(select(Tag).where(Tag.project_id == source.id)):
            copy = Tag(id=new_id(), project_id=target.id, name=tag.name, description=tag.description, type=tag.type)
            session.add(copy)
            tag_map[tag.id] = copy.id
        images = session.scalars(
            select(Image)
            .options(selectinload(Image.tag_links), selectinload(Image.regions))
            .where(Image.project_id == source.id, Image.expires_at.is_(None))
        )
        ingest = ingest_policy(ctx, session, target)
        for image in images:
            _copy_image(ctx, session, ingest, source, target, image, tag_map)
        audit.record(session, actor, "project.import", [source.id, target.id])
        return target


def _copy_image(
    ctx: AppContext,
    session: Session,
    ingest: IngestPolicy,
    source: Project,
    target: Project,
    image: Image,
    tag_map: dict[str, str],
) -> None:
    """Copy one image through the one ingest path: the copy obeys the target's policy, whatever the source's
    images were kept under (a policy turned on after they were uploaded, for one)."""
    copy_id = new_id()
    kept = keep_image(ctx, target, ingest, Vault(ctx).get(source, image.blob_id), owner_id=copy_id)
    facts = anonymization_facts(ingest.policy) if kept.anonymized else {}
    copy = Image(
        id=copy_id, project_id=target.id, blob_id=kept.blob_id, content_type=kept.content_type,
        size_bytes=kept.size_bytes, width=kept.width, height=kept.height,
        anonymized=image.anonymized or kept.anonymized, created=image.created, meta={**(image.meta or {}), **facts},
    )  # fmt: skip
    session.add(copy)
    session.flush()
    for link in image.tag_links:
        session.add(ImageTag(image_id=copy.id, tag_id=tag_map[link.tag_id]))
    for region in image.regions:
        session.add(
            Region(image_id=copy.id, tag_id=tag_map[region.tag_id], left=region.left, top=region.top,
                   width=region.width, height=region.height)
        )  # fmt: skip
