"""Bring Custom Vision projects into this Veil: projects, tags, tagged and untagged images with regions and metadata.

The source is read through its Training API (`azure_source.CustomVisionSource`); everything is written here, in
process, through the same services an upload takes (`images.add_images`: safe decode, the project's privacy policy,
encryption under the project's key), as the operator at the machine, audited like any other change.

Resumable: each source project, tag and image that arrived is remembered (`MigratedItem`, keyed by the source
endpoint and the source id), so a re-run skips it and only fetches what is missing. A source image refused by
ingest (unreadable, too large, the policy cannot be applied) is reported with its reason and tried again next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from veil.security.auth import Principal
from veil.services.azure_source import CustomVisionSource, SourceImage, SourceIteration, SourceProject, SourceTag
from veil.services.context import AppContext
from veil.services.errors import InvalidInput
from veil.services.images import RegionIn, Upload, UploadOutcome, add_images
from veil.services.projects import create_project
from veil.services.tags import create_tag
from veil.store.models import Image, MigratedItem, Project, Region, Tag

BATCH = 16  # images ingested per transaction: small enough that an interrupted run loses little
PROJECT, TAG, IMAGE = "project", "tag", "image"


@dataclass(frozen=True)
class Counts:
    tags: int
    images: int
    regions: int


@dataclass
class ProjectReport:
    """One project's migration: what the source has, what is in Veil now, what this run did."""

    source: SourceProject
    target_id: str
    source_counts: Counts
    arrived: Counts
    created: int = 0  # images stored by this run
    skipped: int = 0  # images that had arrived before
    refused: list[tuple[str, str]] = field(default_factory=list)  # (source image id, reason)
    iterations: list[SourceIteration] = field(default_factory=list)


class MigrationProgress(Protocol):
    """Told the project's name and image count once, then how many images were just handled."""

    def start(self, name: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class _Silent:
    def start(self, name: str, total: int) -> None:
        return None

    def advance(self, count: int) -> None:
        return None


def migrate_project(
    ctx: AppContext,
    actor: Principal,
    source: CustomVisionSource,
    project_id: str,
    *,
    with_iterations: bool = False,
    progress: MigrationProgress | None = None,
) -> ProjectReport:
    """Copy one source project into this Veil (or complete an earlier, interrupted copy)."""
    progress = progress or _Silent()
    src = source.project(project_id)
    src_tags = source.tags(project_id)
    target_id = _ensure_project(ctx, actor, source.endpoint, src)
    tag_map = _ensure_tags(ctx, actor, source.endpoint, target_id, src_tags)
    progress.start(src.name, source.image_count(project_id))
    report = ProjectReport(src, target_id, Counts(len(src_tags), 0, 0), Counts(0, 0, 0))
    arrived = _linked(ctx, source.endpoint, IMAGE, target_id)
    detection = _is_detection(ctx, target_id)
    images = regions = 0
    pending: list[SourceImage] = []
    for image in source.images(project_id):
        images += 1
        regions += len(image.regions)
        if image.id in arrived:
            report.skipped += 1
            progress.advance(1)
            continue
        pending.append(image)
        if len(pending) == BATCH:
            _store(ctx, actor, source, target_id, tag_map, detection, pending, report)
            progress.advance(len(pending))
            pending = []
    if pending:
        _store(ctx, actor, source, target_id, tag_map, detection, pending, report)
        progress.advance(len(pending))
    report.source_counts = Counts(len(src_tags), images, regions)
    report.arrived = arrived_counts(ctx, source.endpoint, target_id)
    if with_iterations:
        report.iterations = source.iterations(project_id)
    return report


def arrived_counts(ctx: AppContext, endpoint: str, target_id: str) -> Counts:
    """What of the source is in Veil now: linked tags, linked images, and those images' regions."""
    with ctx.db.read_session() as session:
        linked = select(MigratedItem.target_id).where(
            MigratedItem.source == endpoint, MigratedItem.project_id == target_id, MigratedItem.kind == IMAGE
        )
        images = session.scalar(
            select(func.count())
            .select_from(MigratedItem)
            .join(Image, Image.id == MigratedItem.target_id)
            .where(MigratedItem.source == endpoint, MigratedItem.project_id == target_id, MigratedItem.kind == IMAGE)
        )
        regions = session.scalar(select(func.count()).select_from(Region).where(Region.image_id.in_(linked))) or 0
        tags = session.scalar(
            select(func.count())
            .select_from(MigratedItem)
            .where(MigratedItem.source == endpoint, MigratedItem.project_id == target_id, MigratedItem.kind == TAG)
        )
    return Counts(int(tags or 0), int(images or 0), int(regions))


def _ensure_project(ctx: AppContext, actor: Principal, endpoint: str, src: SourceProject) -> str:
    with ctx.db.session() as session:
        link = _link(session, endpoint, PROJECT, src.id)
        if link is not None:
            project = session.get(Project, link.target_id)
            if project is not None and not project.deleting:
                return project.id
            session.delete(link)  # the earlier copy was deleted since: copy again
            session.flush()
        classification = src.classification_type if src.classification_type in ("Multiclass", "Multilabel") else None
        project = create_project(ctx, session, actor, src.name, src.description, src.domain_id or None, classification)
        session.add(
            MigratedItem(source=endpoint, kind=PROJECT, source_id=src.id, target_id=project.id, project_id=project.id)
        )
        return project.id


def _ensure_tags(
    ctx: AppContext, actor: Principal, endpoint: str, target_id: str, src_tags: Sequence[SourceTag]
) -> dict[str, str]:
    """Source tag id → Veil tag id, creating what is missing (a same-named tag already there is reused)."""
    mapping: dict[str, str] = {}
    with ctx.db.session() as session:
        by_name = {t.name.lower(): t for t in session.scalars(select(Tag).where(Tag.project_id == target_id))}
        for src in src_tags:
            link = _link(session, endpoint, TAG, src.id)
            if link is not None and link.project_id == target_id and session.get(Tag, link.target_id) is not None:
                mapping[src.id] = link.target_id
                continue
            tag = by_name.get(src.name.lower())
            if tag is None:
                # GeneralProduct (Azure's product-recognition type) has no Veil meaning: a regular tag keeps its images.
                kind = "Negative" if src.type == "Negative" else "Regular"
                tag = create_tag(session, actor, target_id, src.name, src.description, kind)
            if link is not None:
                session.delete(link)
                session.flush()
            session.add(
                MigratedItem(source=endpoint, kind=TAG, source_id=src.id, target_id=tag.id, project_id=target_id)
            )
            mapping[src.id] = tag.id
    return mapping


def _store(
    ctx: AppContext,
    actor: Principal,
    source: CustomVisionSource,
    target_id: str,
    tag_map: dict[str, str],
    detection: bool,
    images: list[SourceImage],
    report: ProjectReport,
) -> None:
    uploads = [_upload(image, source.image_bytes(image), tag_map, detection) for image in images]
    outcomes: list[UploadOutcome] = []
    try:
        outcomes = add_images(ctx, actor, target_id, uploads).results
    except InvalidInput:
        # One entry the batch check refuses (e.g. a box outside the image) must not cost the others: one by one.
        for upload in uploads:
            try:
                outcomes.extend(add_images(ctx, actor, target_id, [upload]).results)
            except InvalidInput as refused:
                outcomes.append(_refusal(upload, refused.message))
    links = []
    for image, outcome in zip(images, outcomes, strict=True):
        if outcome.image is not None:
            links.append(
                MigratedItem(
                    source=source.endpoint,
                    kind=IMAGE,
                    source_id=image.id,
                    target_id=outcome.image.id,
                    project_id=target_id,
                )
            )
            report.created += 1
        else:
            report.refused.append((image.id, outcome.reason or outcome.status))
    if links:
        with ctx.db.session() as session:
            session.add_all(links)


def _refusal(upload: Upload, reason: str) -> UploadOutcome:
    return UploadOutcome(upload.source_name, "ErrorUnknown", reason)


def _upload(image: SourceImage, data: bytes, tag_map: dict[str, str], detection: bool) -> Upload:
    regions = (
        [RegionIn(tag_map[r.tag_id], r.left, r.top, r.width, r.height) for r in image.regions] if detection else []
    )
    region_tags = {r.tag_id for r in regions}
    tag_ids = [tag_map[t] for t in image.tag_ids if t in tag_map and tag_map[t] not in region_tags]
    return Upload(data=data, source_name=image.id, tag_ids=tag_ids, regions=regions, metadata=dict(image.metadata))


def _link(session: Session, endpoint: str, kind: str, source_id: str) -> MigratedItem | None:
    return session.scalars(
        select(MigratedItem).where(
            MigratedItem.source == endpoint, MigratedItem.kind == kind, MigratedItem.source_id == source_id
        )
    ).first()


def _linked(ctx: AppContext, endpoint: str, kind: str, target_id: str) -> set[str]:
    with ctx.db.read_session() as session:
        return set(
            session.scalars(
                select(MigratedItem.source_id).where(
                    MigratedItem.source == endpoint, MigratedItem.kind == kind, MigratedItem.project_id == target_id
                )
            )
        )


def _is_detection(ctx: AppContext, project_id: str) -> bool:
    with ctx.db.read_session() as session:
        project = session.get(Project, project_id)
        return project is not None and project.project_type == "ObjectDetection"
