"""Training images: safe ingest → (policy) anonymization → encryption → blob + row; list, read, delete.

Heavy work (decode, anonymize, encode, encrypt, write) runs outside any database transaction; the rows of
a batch are then inserted in one short transaction. A blob whose row never committed is invisible (and
removed by `veil purge`), so a crash can leave nothing half-written in view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, delete, exists, func, select
from sqlalchemy.orm import Session

from veil.images.ingest import ImageRejected, thumbnail
from veil.privacy.policy import PrivacyPolicy
from veil.security import audit
from veil.security.auth import Principal
from veil.security.crypto import content_digest
from veil.services.context import AppContext
from veil.services.errors import InvalidInput, NotFound
from veil.services.ingest import (
    POLICY_REFUSED,
    IngestPolicy,
    KeptImage,
    PolicyNotApplicable,
    anonymization_facts,
    ingest_policy,
    keep_image,
)
from veil.services.privacy import privacy_policy
from veil.services.projects import get_project
from veil.services.tags import resolve_tags
from veil.services.vault import Vault
from veil.store.blobs import BlobNotFound
from veil.store.models import Image, ImageTag, Prediction, Project, Region, Tag, new_id, utcnow

MAX_TAGS_PER_IMAGE = 20
MAX_TAKE = 256
MAX_SKIP = 2**63 - 1  # SQL OFFSET is a signed 64-bit integer (SQLite, PostgreSQL)
ACCEPTED = ("OK", "OKDuplicate")
# Custom Vision's per-image status for an entry whose labels are refused (the others of the batch are kept).
LABEL_STATUSES = {
    "BadRequestNegativeAndRegularTagOnSameImage": "ErrorNegativeAndRegularTagOnSameImage",
    "BadRequestInvalidIds": "ErrorInvalidTag",
    "BadRequestExceedTagPerImageLimit": "ErrorTagLimitExceed",
}
TaggingStatus = Literal["All", "Tagged", "Untagged"]


@dataclass(frozen=True)
class RegionIn:
    """A box normalized to the image size (Custom Vision's left/top/width/height)."""

    tag_id: str
    left: float
    top: float
    width: float
    height: float

    def check(self) -> None:
        inside = 0 <= self.left <= 1 and 0 <= self.top <= 1 and self.width > 0 and self.height > 0
        if not inside or self.left + self.width > 1.0001 or self.top + self.height > 1.0001:
            raise InvalidInput(
                f"region {self} must lie inside the image (normalized 0..1, positive size)",
                code="BadRequestImageRegions",
            )


@dataclass(frozen=True)
class Upload:
    data: bytes
    source_name: str = ""
    tag_ids: Sequence[str] = ()
    regions: Sequence[RegionIn] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UploadOutcome:
    source_name: str
    status: str  # "OK" or Custom Vision's ImageCreateStatus for the refusal
    reason: str = ""
    image: Image | None = None


@dataclass(frozen=True)
class BatchOutcome:
    results: list[UploadOutcome]

    @property
    def all_ok(self) -> bool:
        """Nothing refused: every image stored, or already there (OKDuplicate, as Custom Vision counts it)."""
        return all(r.status in ACCEPTED for r in self.results)

    @property
    def any_ok(self) -> bool:
        return any(r.status in ACCEPTED for r in self.results)


def add_images(
    ctx: AppContext, actor: Principal, project_id: str, uploads: Sequence[Upload], tag_ids: Sequence[str] = ()
) -> BatchOutcome:
    """Ingest a batch; each image gets `OK`, `OKDuplicate` (the same bytes are already in the project: nothing
    stored, the existing image returned) or a refusal status and its reason. Nothing raw is stored."""
    _check_batch_size(ctx, len(uploads))
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        resolve_tags(session, project.id, list(tag_ids))  # the batch's own tagIds: a wrong one is the request's
        refused = [_label_refusal(session, project, [*tag_ids, *u.tag_ids], u) for u in uploads]
        ingest = ingest_policy(ctx, session, project)
        dek = Vault(ctx).dek(project)  # fails early when the project's key is gone
        digests = [content_digest(dek, u.data) for u in uploads]
        stored = _images_by_digest(session, project.id, digests)
    kept: list[_Kept | _SameAsEarlier | UploadOutcome] = []
    first: dict[str, _Kept | UploadOutcome] = {}  # each digest's first copy in this batch: kept, or refused
    for upload, digest, refusal in zip(uploads, digests, refused, strict=True):
        if refusal is not None:
            kept.append(refusal)
        elif digest in stored:
            kept.append(_duplicate(upload, stored[digest]))
        elif digest in first:
            earlier = first[digest]  # a refused first copy: this copy is refused alike (nothing was created)
            same = (
                UploadOutcome(upload.source_name, earlier.status, earlier.reason)
                if isinstance(earlier, UploadOutcome)
                else None
            )
            kept.append(same or _SameAsEarlier(upload, digest))
        else:
            first[digest] = _keep(ctx, project, ingest, upload, digest)
            kept.append(first[digest])
    return _commit_batch(ctx, actor, project_id, kept, list(tag_ids))


@dataclass(frozen=True)
class FromPrediction:
    """A stored prediction to promote to a training image, with the labels it gets."""

    prediction_id: str
    tag_ids: Sequence[str] = ()
    regions: Sequence[RegionIn] = ()


def add_images_from_predictions(
    ctx: AppContext, actor: Principal, project_id: str, entries: Sequence[FromPrediction], metadata: dict[str, str]
) -> BatchOutcome:
    """Promote stored predictions (their kept images) to training images through the same ingest as uploads,
    so the project's policy as it is now applies; an unknown or image-less prediction is `ErrorSource`."""
    _check_batch_size(ctx, len(entries))
    uploads: list[Upload] = []
    missing: list[UploadOutcome] = []
    with ctx.db.read_session() as session:
        project = get_project(session, project_id)
        for entry in entries:
            prediction = session.get(Prediction, entry.prediction_id)
            if prediction is None or prediction.project_id != project_id or not prediction.image_blob_id:
                missing.append(UploadOutcome(entry.prediction_id, "ErrorSource", "no stored prediction image"))
                continue
            data = Vault(ctx).get(project, prediction.image_blob_id)
            source = {"veil.source": f"prediction:{entry.prediction_id}"}
            uploads.append(Upload(data, entry.prediction_id, entry.tag_ids, entry.regions, {**metadata, **source}))
    added = add_images(ctx, actor, project_id, uploads) if uploads else BatchOutcome([])
    by_source = {r.source_name: r for r in [*added.results, *missing]}
    return BatchOutcome([by_source[e.prediction_id] for e in entries])


def _check_batch_size(ctx: AppContext, count: int) -> None:
    if not count:
        raise InvalidInput("no image in the request", code="BadRequestImageBatch")
    if count > ctx.settings.max_images_per_batch:
        raise InvalidInput(
            f"{count} images in one request; at most {ctx.settings.max_images_per_batch}",
            code="BadRequestImageBatch",
        )


def _label_refusal(session: Session, project: Project, tag_ids: list[str], upload: Upload) -> UploadOutcome | None:
    """The entry's per-image status when its tags or regions are refused (Custom Vision keeps the rest)."""
    try:
        _check_labels(session, project, tag_ids, upload.regions)
    except InvalidInput as refused:
        return UploadOutcome(upload.source_name, LABEL_STATUSES.get(refused.code, "ErrorUnknown"), refused.message)
    return None


def _check_labels(session: Session, project: Project, tag_ids: list[str], regions: Sequence[RegionIn]) -> None:
    all_ids = [*tag_ids, *(r.tag_id for r in regions)]
    if len(set(all_ids)) > MAX_TAGS_PER_IMAGE:
        raise InvalidInput(f"at most {MAX_TAGS_PER_IMAGE} tags per image", code="BadRequestExceedTagPerImageLimit")
    resolve_tags(session, project.id, all_ids)
    for region in regions:
        region.check()


@dataclass(frozen=True)
class _Kept:
    upload: Upload
    image: KeptImage
    image_id: str  # chosen before the blob is sealed: the blob's key row names it as its owner
    digest: str


@dataclass(frozen=True)
class _SameAsEarlier:
    """A second copy of an image earlier in the same batch: answered OKDuplicate with that image."""

    upload: Upload
    digest: str


def _images_by_digest(session: Session, project_id: str, digests: Sequence[str]) -> dict[str, Image]:
    query = select(Image).where(Image.project_id == project_id, Image.content_digest.in_(list(set(digests))))
    return {image.content_digest or "": image for image in session.scalars(query)}


def _duplicate(upload: Upload, image: Image) -> UploadOutcome:
    return UploadOutcome(upload.source_name, "OKDuplicate", "the same image is already in the project", image)


def _keep(
    ctx: AppContext, project: Project, ingest: IngestPolicy, upload: Upload, digest: str
) -> _Kept | UploadOutcome:
    try:
        image_id = new_id()
        return _Kept(upload, keep_image(ctx, project, ingest, upload.data, owner_id=image_id), image_id, digest)
    except ImageRejected as rejected:
        return UploadOutcome(upload.source_name, rejected.status.value, rejected.reason)
    except PolicyNotApplicable as refused:
        return UploadOutcome(upload.source_name, POLICY_REFUSED, refused.message)


def _commit_batch(
    ctx: AppContext,
    actor: Principal,
    project_id: str,
    kept: list[_Kept | _SameAsEarlier | UploadOutcome],
    tag_ids: list[str],
) -> BatchOutcome:
    results: list[UploadOutcome] = []
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        policy = privacy_policy(project)
        # Stored meanwhile by a concurrent upload of the same bytes: that copy wins, this blob goes.
        racing = _images_by_digest(session, project_id, [k.digest for k in kept if isinstance(k, _Kept)])
        created: dict[str, Image] = {}
        for item in kept:
            if isinstance(item, UploadOutcome):
                results.append(item)
            elif isinstance(item, _SameAsEarlier):  # its first copy was created here, or lost a race
                results.append(_duplicate(item.upload, created.get(item.digest) or racing[item.digest]))
            elif item.digest in racing:
                Vault(ctx).delete(project, item.image.blob_id)
                results.append(_duplicate(item.upload, racing[item.digest]))
            else:
                created[item.digest] = _image_row(session, project, policy, item, tag_ids)
                results.append(UploadOutcome(item.upload.source_name, "OK", image=created[item.digest]))
        new_ids = [image.id for image in created.values()]
        refused = sum(1 for r in results if r.status not in ACCEPTED)
        if new_ids:
            audit.record(session, actor, "images.create", [project_id, *new_ids])
        if refused:
            audit.record(session, actor, "images.create", [project_id], f"refused:{refused}")
        session.flush()
        for image in {id(r.image): r.image for r in results if r.image is not None}.values():
            if image in session:  # an OKDuplicate found before this session is already loaded
                session.refresh(image, attribute_names=["tag_links", "regions"])
    return BatchOutcome(results)


def _training_expiry(policy: PrivacyPolicy) -> datetime | None:
    """When the retention purge shreds a training image uploaded now (None: kept until deleted)."""
    days = policy.training_image_retention_days
    return utcnow() + timedelta(days=days) if days else None


def _image_row(session: Session, project: Project, policy: PrivacyPolicy, item: _Kept, tag_ids: list[str]) -> Image:
    kept = item.image
    meta = {**item.upload.metadata, **(anonymization_facts(policy) if kept.anonymized else {})}
    image = Image(
        id=item.image_id,
        content_digest=item.digest,
        project_id=project.id,
        blob_id=kept.blob_id,
        content_type=kept.content_type,
        size_bytes=kept.size_bytes,
        width=kept.width,
        height=kept.height,
        anonymized=kept.anonymized,
        meta=meta,
        expires_at=_training_expiry(policy),
    )
    session.add(image)
    session.flush()
    for tag_id in dict.fromkeys([*tag_ids, *item.upload.tag_ids]):
        session.add(ImageTag(image_id=image.id, tag_id=tag_id))
    for r in item.upload.regions:
        session.add(Region(image_id=image.id, tag_id=r.tag_id, left=r.left, top=r.top, width=r.width, height=r.height))
    return image


def _filtered(query: Select[Any], project_id: str, status: TaggingStatus, tag_ids: Sequence[str]) -> Select[Any]:
    query = query.where(Image.project_id == project_id)
    tagged = exists().where(ImageTag.image_id == Image.id) | exists().where(Region.image_id == Image.id)
    if status == "Tagged":
        query = query.where(tagged)
    elif status == "Untagged":
        query = query.where(~tagged)
    if tag_ids:
        query = query.where(
            exists().where(ImageTag.image_id == Image.id, ImageTag.tag_id.in_(tag_ids))
            | exists().where(Region.image_id == Image.id, Region.tag_id.in_(tag_ids))
        )
    return query


def list_images(
    session: Session,
    project_id: str,
    tagging_status: TaggingStatus = "All",
    tag_ids: Sequence[str] = (),
    order_by: Literal["Newest", "Oldest"] = "Newest",
    take: int = 50,
    skip: int = 0,
) -> list[Image]:
    get_project(session, project_id)
    if not 0 <= take <= MAX_TAKE or not 0 <= skip <= MAX_SKIP:
        raise InvalidInput(f"take must be 0..{MAX_TAKE} and skip 0..{MAX_SKIP}")
    order = Image.created.desc() if order_by == "Newest" else Image.created.asc()
    query = _filtered(select(Image), project_id, tagging_status, tag_ids).order_by(order, Image.id)
    return list(session.scalars(query.offset(skip).limit(take)))


def count_images(
    session: Session, project_id: str, tagging_status: TaggingStatus = "All", tag_ids: Sequence[str] = ()
) -> int:
    get_project(session, project_id)
    query = _filtered(select(func.count()).select_from(Image), project_id, tagging_status, tag_ids)
    return int(session.scalar(query) or 0)


def images_by_ids(session: Session, project_id: str, image_ids: Sequence[str]) -> list[Image]:
    get_project(session, project_id)
    query = select(Image).where(Image.project_id == project_id, Image.id.in_(list(image_ids)))
    return list(session.scalars(query))


def get_image(session: Session, project_id: str, image_id: str) -> Image:
    image = session.get(Image, image_id)
    if image is None or image.project_id != project_id:
        raise NotFound(f"image {image_id} not found in project {project_id}", code="NotFoundImage")
    return image


ImageSize = Literal["original", "resized", "thumbnail"]
SMALLER_SIDES = {"resized": 1024, "thumbnail": 256}


def read_image_bytes(
    ctx: AppContext, actor: Principal, project_id: str, image_id: str, size: ImageSize = "original"
) -> tuple[bytes, str]:
    """Decrypt an image for its reader (an audited event), full size or a smaller copy; IntegrityError if its
    blob was tampered with."""
    data, content_type = _decrypted_image(ctx, actor, project_id, image_id)
    if size == "original":
        return data, content_type
    small = thumbnail(data, SMALLER_SIDES[size])
    return small.data, small.content_type


def _decrypted_image(ctx: AppContext, actor: Principal, project_id: str, image_id: str) -> tuple[bytes, str]:
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        image = get_image(session, project_id, image_id)
        audit.record(session, actor, "image.read", [project_id, image_id])
        try:
            data = Vault(ctx).get(project, image.blob_id)
        except BlobNotFound:
            raise NotFound(f"image {image_id} has no stored data") from None
        return data, image.content_type


def delete_images(
    ctx: AppContext,
    actor: Principal,
    project_id: str,
    image_ids: Sequence[str] = (),
    all_images: bool = False,
) -> int:
    """Delete rows first (committed), then blobs: a crash leaves an unreachable blob, never a broken image."""
    if not image_ids and not all_images:
        raise InvalidInput("give imageIds or allImages=true", code="BadRequestImageBatch")
    with ctx.db.session() as session:
        project = get_project(session, project_id)
        query = select(Image).where(Image.project_id == project_id)
        if not all_images:
            query = query.where(Image.id.in_(list(image_ids)))
        doomed = list(session.scalars(query))
        blob_ids = [i.blob_id for i in doomed]
        if doomed:
            session.execute(delete(Image).where(Image.id.in_([i.id for i in doomed])))
        audit.record(session, actor, "images.delete", [project_id, *(i.id for i in doomed)])
    for blob_id in blob_ids:
        Vault(ctx).delete(project, blob_id)
    ctx.db.checkpoint()  # SQLite: the deleted keys' pages were zeroed (secure_delete); the WAL keeps no copy
    return len(doomed)


def tag_names(session: Session, tag_ids: Sequence[str]) -> dict[str, str]:
    return {t.id: t.name for t in session.scalars(select(Tag).where(Tag.id.in_(list(tag_ids))))}
