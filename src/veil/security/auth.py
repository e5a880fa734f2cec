"""API keys and roles: random 256-bit hex keys, shown once, stored as SHA-256, compared in constant time.

A key has one role and optionally one project (no project: every project):

    >>> key_row, secret = create_key(session, Role.trainer)        # `secret` goes to the user, once
    >>> principal = authenticate(session, secret)
    >>> authorize(principal, Permission.train, project_id)       # raises Forbidden when not allowed
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from veil.store.models import ApiKey, utcnow


class Role(StrEnum):
    admin = "admin"
    trainer = "trainer"
    labeler = "labeler"
    predictor = "predictor"
    auditor = "auditor"


class Permission(StrEnum):
    projects_read = "projects.read"
    projects_create = "projects.create"
    projects_write = "projects.write"  # update, delete, privacy policy
    tags_read = "tags.read"
    tags_write = "tags.write"
    images_read = "images.read"  # metadata, counts, tags, regions
    images_write = "images.write"  # upload, delete, tag, metadata
    image_bytes = "images.bytes"  # the pixels of stored images and stored predictions
    regions_write = "regions.write"
    iterations_read = "iterations.read"
    train = "train"
    publish = "publish"
    export = "export"
    models_read = "models.read"  # exported model files
    predict = "predict"
    predictions_read = "predictions.read"  # stored prediction results
    predictions_write = "predictions.write"
    audit_read = "audit.read"
    keys_manage = "keys.manage"


_P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.admin: frozenset(Permission),
    Role.trainer: frozenset(
        {
            _P.projects_read,
            _P.projects_create,
            _P.projects_write,
            _P.tags_read,
            _P.tags_write,
            _P.images_read,
            _P.images_write,
            _P.image_bytes,
            _P.regions_write,
            _P.iterations_read,
            _P.train,
            _P.publish,
            _P.export,
            _P.models_read,
            _P.predictions_read,
            _P.predictions_write,
        }
    ),
    Role.labeler: frozenset(
        {
            _P.projects_read,
            _P.tags_read,
            _P.tags_write,
            _P.images_read,
            _P.images_write,
            _P.image_bytes,
            _P.regions_write,
        }
    ),
    Role.predictor: frozenset({_P.predict}),
    Role.auditor: frozenset(
        {
            _P.projects_read,
            _P.tags_read,
            _P.images_read,
            _P.iterations_read,
            _P.predictions_read,
            _P.audit_read,
        }
    ),
}

# Installation-wide powers: a key limited to one project never has them, whatever its role.
GLOBAL_PERMISSIONS = frozenset({Permission.projects_create, Permission.keys_manage, Permission.audit_read})

KEY_BYTES = 32


class AuthError(Exception):
    """Base of authentication/authorization failures."""


class Unauthenticated(AuthError):
    """No key, or a key that is unknown, revoked or expired (HTTP 401)."""


class Forbidden(AuthError):
    """A valid key whose role or project scope does not allow the action (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, role and project scope (None: every project)."""

    key_id: str | None
    role: str
    project_id: str | None = None

    def can(self, permission: Permission) -> bool:
        return self.role in Role.__members__ and permission in ROLE_PERMISSIONS[Role(self.role)]

    def covers(self, project_id: str | None) -> bool:
        return self.project_id is None or project_id == self.project_id


# The operator at the machine (CLI commands): recorded in the audit log as role "operator".
OPERATOR = Principal(key_id=None, role="operator")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session,
    role: Role | str,
    project_id: str | None = None,
    expires_in_days: int | None = None,
    name: str = "",
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret (the only time it exists outside the caller's hands)."""
    role = Role(role)
    if expires_in_days is not None and expires_in_days <= 0:
        raise ValueError("expires_in_days must be a positive number of days")
    secret = secrets.token_hex(KEY_BYTES)
    expires_at = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiKey(
        key_hash=hash_key(secret),
        prefix=secret[:8],
        role=role.value,
        project_id=project_id,
        name=name,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, secret


def is_active(key: ApiKey, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


_KEY = ApiKey.__table__.c
_KEY_LOOKUP = select(_KEY.key_hash, _KEY.id, _KEY.role, _KEY.project_id, _KEY.expires_at, _KEY.revoked_at)


def authenticate(db: Session | Connection, secret: str | None) -> Principal:
    """The principal of a presented key; `Unauthenticated` for a missing, unknown, revoked or expired key.

    Read fresh from the database on every call (a few columns by an index, no cache): a revoked key is refused
    by every replica from the next request on."""
    if not secret:
        raise Unauthenticated("missing API key")
    digest = hash_key(secret.strip())
    row = db.execute(_KEY_LOOKUP.where(_KEY.key_hash == digest)).first()
    # The lookup is by hash (an index); the final comparison is constant-time all the same.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        raise Unauthenticated("invalid API key")
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= utcnow()):
        raise Unauthenticated("API key is revoked or expired")
    return Principal(key_id=row.id, role=row.role, project_id=row.project_id)


def authorize(principal: Principal, permission: Permission, project_id: str | None = None) -> None:
    """Raise `Forbidden` unless the principal's role grants `permission` on `project_id`."""
    if not principal.can(permission):
        raise Forbidden(f"role {principal.role!r} may not {permission.value}")
    if project_id is not None and not principal.covers(project_id):
        raise Forbidden("this key is limited to another project")
    if permission in GLOBAL_PERMISSIONS and principal.project_id is not None:
        raise Forbidden(f"a key limited to one project cannot {permission.value} (installation-wide)")


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created)))


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Revoke a key (kept for the audit trail); `LookupError` when no key has that id."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise LookupError(f"no API key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def has_admin_key(session: Session) -> bool:
    keys = session.scalars(select(ApiKey).where(ApiKey.role == Role.admin.value))
    return any(is_active(key) for key in keys)


# --- abuse: wrong-key throttling and repeated-denial aggregation ------------------------------------------


class Throttled(Exception):
    """Too many failed authentications from this address: retry after `retry_after` seconds (HTTP 429)."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many requests with a wrong API key from this address; retry in {retry_after:.0f} s")
        self.retry_after = retry_after


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """A token bucket per client address that only failed authentications drain: `burst` wrong keys at once,
    then `per_second`. An address whose bucket is empty is refused (429) before any key lookup — even its valid
    keys, or a brute force would learn a hit from a 200 among the 429s. Other addresses are untouched.
    Thread-safe (sync routes run in a thread pool); at most `max_sources` addresses are remembered (the least
    recently failing are forgotten first, which only ever lets an address in earlier)."""

    def __init__(
        self, burst: int, per_second: float, max_sources: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst, self.per_second, self.max_sources, self.clock = burst, per_second, max_sources, clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refilled(self, source: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(source)
        if bucket is not None:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
            bucket.updated = now
        return bucket

    def retry_after(self, source: str) -> float | None:
        """None when `source` may try a key now; else the seconds until it may."""
        with self._lock:
            bucket = self._refilled(source, self.clock())
            if bucket is None or bucket.tokens >= 1:
                return None
            return (1 - bucket.tokens) / self.per_second

    def failed(self, source: str) -> None:
        with self._lock:
            now = self.clock()
            bucket = self._refilled(source, now) or _Bucket(float(self.burst), now)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            self._buckets[source] = bucket
            self._buckets.move_to_end(source)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)


class RepeatCounter:
    """Aggregates repeated events (failed authentications, denials) to one record per key and `window_s`:
    `seen(key)` counts an occurrence and returns how many happened since the last record when a record is due
    (the first occurrence, then at most once per window), else None."""

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self._state: dict[tuple[str, ...], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def seen(self, key: tuple[str, ...]) -> int | None:
        with self._lock:
            now = self.clock()
            last_record, pending = self._state.get(key, (-float("inf"), 0))
            pending += 1
            if now - last_record >= self.window_s:
                self._state[key] = (now, 0)
                if len(self._state) > 100_000:  # forget keys quiet for a window: their next event records anyway
                    self._state = {k: v for k, v in self._state.items() if now - v[0] < self.window_s}
                return pending
            self._state[key] = (last_record, pending)
            return None
