"""Veil's tables (SQLAlchemy 2.0, typed). Ids are GUID strings; times are timezone-aware UTC.

The shapes follow Custom Vision's resources (projects, tags, images, regions, iterations, exports, stored
predictions) plus Veil's own: API keys, the audit chain, jobs and the master-key state.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes and always returns them aware in UTC (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
        bytes: LargeBinary,
    }


def _id_column() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = _id_column()
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    domain_id: Mapped[str] = mapped_column(String(36))
    project_type: Mapped[str] = mapped_column(String(32), default="Classification")  # or ObjectDetection
    classification_type: Mapped[str | None] = mapped_column(String(32), default="Multiclass")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)  # targetExportPlatforms, useNegativeSet, ...
    privacy: Mapped[dict[str, Any]] = mapped_column(default=dict)  # a PrivacyPolicy dump
    # Crypto-shredding: the wrapped DEK is wiped (set to NULL) before anything else of the project is deleted.
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    kek_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    modified: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tags: Mapped[list[Tag]] = relationship(back_populates="project", cascade="all, delete-orphan", passive_deletes=True)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_tags_project_name"),)

    id: Mapped[str] = _id_column()
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(16), default="Regular")  # Regular | Negative | GeneralProduct
    created: Mapped[datetime] = mapped_column(default=utcnow)

    project: Mapped[Project] = relationship(back_populates="tags")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_project_created", "project_id", "created"),
        Index("ix_images_project_digest", "project_id", "content_digest"),
    )

    id: Mapped[str] = _id_column()
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    blob_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    content_type: Mapped[str] = mapped_column(String(32))  # of the re-encoded, metadata-free bytes
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    anonymized: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)  # user key/values + ingest facts
    # HMAC of the uploaded bytes under a key derived from the project's DEK: finds a re-upload of the same file
    # (Custom Vision's OKDuplicate) without letting anyone test a known photo against the store, and is
    # meaningless once the project's key is shredded.
    content_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # Eager: an image is never shown without its tags and regions, and rows outlive their session in the API.
    tag_links: Mapped[list[ImageTag]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )
    regions: Mapped[list[Region]] = relationship(cascade="all, delete-orphan", passive_deletes=True, lazy="selectin")


class ImageTag(Base):
    __tablename__ = "image_tags"

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    tag: Mapped[Tag] = relationship(lazy="joined")


class Region(Base):
    """A box on an image, normalized to the image size (Custom Vision's left/top/width/height in 0..1)."""

    __tablename__ = "regions"

    id: Mapped[str] = _id_column()
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    tag_id: Mapped[str] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    left: Mapped[float] = mapped_column(Float)
    top: Mapped[float] = mapped_column(Float)
    width: Mapped[float] = mapped_column(Float)
    height: Mapped[float] = mapped_column(Float)
    created: Mapped[datetime] = mapped_column(default=utcnow)

    tag: Mapped[Tag] = relationship(lazy="joined")


class Iteration(Base):
    __tablename__ = "iterations"

    id: Mapped[str] = _id_column()
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="Training")  # Training | Completed | Failed
    training_type: Mapped[str] = mapped_column(String(16), default="Regular")  # Regular | Advanced
    reserved_budget_hours: Mapped[int] = mapped_column(Integer, default=0)
    training_time_minutes: Mapped[int] = mapped_column(Integer, default=0)
    domain_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    classification_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    exportable: Mapped[bool] = mapped_column(Boolean, default=False)
    selected_tags: Mapped[list[Any]] = mapped_column(default=list)
    publish_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_blob_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    job_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)
    modified: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    trained_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Export(Base):
    """An export of an iteration to a platform/flavor (Custom Vision's Export resource)."""

    __tablename__ = "exports"
    __table_args__ = (UniqueConstraint("iteration_id", "platform", "flavor", name="uq_exports_iteration_platform"),)

    id: Mapped[str] = _id_column()
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(32))
    flavor: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="Exporting")  # Exporting | Done | Failed
    blob_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    error_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Prediction(Base):
    """A stored prediction (the image is kept encrypted until `expires_at`)."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_project_created", "project_id", "created"),)

    id: Mapped[str] = _id_column()
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    iteration_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    application: Mapped[str | None] = mapped_column(String(200), nullable=True)
    image_blob_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    content_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    results: Mapped[list[Any]] = mapped_column(default=list)  # [{tagId, tagName, probability, boundingBox?}]
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True, index=True)


class BlobKey(Base):
    """A blob's own AES key, wrapped by its project's DEK (`veil.security.crypto.seal_blob`).

    Deleting the record that owns the blob (`owner_id`: an image, prediction, iteration or export id) deletes
    this row in the same transaction (database triggers, migration 0003), whatever code path deletes it: from
    then on no copy of the blob opens, even with the project's key. Deleting the project cascades too."""

    __tablename__ = "blob_keys"

    blob_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """An API key: only its SHA-256 is kept; the key itself is shown once at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = _id_column()
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(8))  # first characters, to recognise a key in listings
    role: Mapped[str] = mapped_column(String(16))
    project_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)  # None: every project
    name: Mapped[str] = mapped_column(String(200), default="")
    created: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class AuditEvent(Base):
    """One link of the append-only audit chain: `hash` = SHA-256(previous hash + the canonical event)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    key_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    resource_ids: Mapped[list[Any]] = mapped_column(default=list)
    outcome: Mapped[str] = mapped_column(String(32))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last link; appending locks this row, and verify compares it with the last event."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class KeyState(Base):
    """Which master key wraps the DEKs (one row); rotation changes it in the re-wrap's transaction."""

    __tablename__ = "key_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kek_id: Mapped[str] = mapped_column(String(32))
    rotated_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Job(Base):
    """Background work claimed by a worker (`FOR UPDATE SKIP LOCKED` on PostgreSQL)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created"),)

    id: Mapped[str] = _id_column()
    kind: Mapped[str] = mapped_column(String(32))  # train | export | purge | ...
    project_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|succeeded|failed|cancelled
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(64), default="")
    eta_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    claimed_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # claims so far
    created: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Lease(Base):
    """A cluster-wide duty (`retention`, `orphan-sweep`) held by one process until `expires_at`."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


class MigratedItem(Base):
    """What `veil migrate` brought over: a source resource (project, tag or image of a Custom Vision endpoint)
    and the Veil row it became, so a re-run skips it. Goes with the project (deleting it forgets the links)."""

    __tablename__ = "migrated_items"
    __table_args__ = (UniqueConstraint("source", "kind", "source_id", name="uq_migrated_items_source"),)

    id: Mapped[str] = _id_column()
    source: Mapped[str] = mapped_column(String(512))  # the source endpoint, normalized
    kind: Mapped[str] = mapped_column(String(16))  # project | tag | image
    source_id: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(36))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(default=utcnow)


class Suggestion(Base):
    """The smart labeler's prediction of an iteration for an untagged image (Custom Vision's suggested tags and
    regions), kept so ranking and counting do not run the model again. Goes with the image or the iteration."""

    __tablename__ = "suggestions"

    iteration_id: Mapped[str] = mapped_column(ForeignKey("iterations.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    predictions: Mapped[list[Any]] = mapped_column(default=list)  # [{tagId, tagName, probability, boundingBox?}]
    uncertainty: Mapped[float] = mapped_column(Float, default=0.0)
    created: Mapped[datetime] = mapped_column(default=utcnow)
