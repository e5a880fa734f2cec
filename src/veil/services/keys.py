"""Key management use cases: API keys (create, list, revoke, first admin key) and master-key rotation.

Rotation re-wraps every project's DEK under a new master key in ONE transaction that also records the new key
id. The new key file is staged (`master.key.next`) before and promoted after the commit, so a running server,
whose key ring re-reads the files when a DEK names a key it does not hold, follows without a restart. A
migration (`to=URL`) re-wraps every DEK for another key provider instead, e.g. the key file to an HSM:

    >>> report = rotate_master_key(ctx, OPERATOR)    # report.rewrapped projects; the old key opens nothing
    >>> rotate_master_key(ctx, OPERATOR, to="pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=veil")
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from veil.security import audit
from veil.security.auth import OPERATOR, Principal, Role, create_key, list_keys, revoke_key
from veil.security.crypto import (
    EnvKeySource,
    FileKeySource,
    KeyProvider,
    KeyRing,
    MasterKey,
    MasterKeyError,
    SoftwareKeyProvider,
)
from veil.security.providers import open_keyring
from veil.services.context import AppContext, current_kek_id, mark_rotated
from veil.services.errors import InvalidInput, NotFound
from veil.services.projects import get_project
from veil.store.models import ApiKey, Project


def create_api_key(
    session: Session,
    actor: Principal,
    role: str,
    project_id: str | None = None,
    expires_in_days: int | None = None,
    name: str = "",
) -> tuple[ApiKey, str]:
    if role not in Role.__members__:
        raise InvalidInput(f"unknown role {role!r}; choose one of: {', '.join(Role)}")
    if expires_in_days is not None and expires_in_days <= 0:
        raise InvalidInput("--expires-in-days must be a positive number of days")
    if project_id is not None:
        get_project(session, project_id)
    row, secret = create_key(session, role, project_id, expires_in_days, name)
    audit.record(session, actor, "key.create", [row.id, *([project_id] if project_id else [])])
    return row, secret


def all_api_keys(session: Session) -> list[ApiKey]:
    return list_keys(session)


def key_name(session: Session, principal: Principal) -> str:
    """The name given to the caller's key when it was created ("" for the operator or an unnamed key)."""
    row = session.get(ApiKey, principal.key_id) if principal.key_id else None
    return row.name if row is not None else ""


def revoke_api_key(session: Session, actor: Principal, key_id: str) -> ApiKey:
    try:
        row = revoke_key(session, key_id)
    except LookupError as exc:
        raise NotFound(str(exc)) from None
    audit.record(session, actor, "key.revoke", [key_id])
    return row


def bootstrap_admin_key(ctx: AppContext) -> str | None:
    """On first start (no admin key was ever made), create one and return its secret; otherwise None."""
    with ctx.db.session() as session:
        if session.scalars(select(ApiKey.id).where(ApiKey.role == Role.admin.value)).first() is not None:
            return None
        _row, secret = create_api_key(session, OPERATOR, Role.admin.value, name="first admin key")
        return secret


@dataclass(frozen=True)
class RotationReport:
    old_key_id: str
    new_key_id: str
    rewrapped: int
    destroyed_old: int = 0  # project keys destroyed in the previous key store (a migration)


def rotate_master_key(ctx: AppContext, actor: Principal = OPERATOR, to: str | None = None) -> RotationReport:
    """A new master key of the same kind (`to` None: the key file), or a migration to another key provider
    (`to`: a VEIL_KEY_PROVIDER URL, e.g. file → pkcs11). Either way every DEK is re-wrapped in ONE transaction."""
    if to is not None:
        return _migrate(ctx, actor, to)
    source = ctx.keyring.source
    if not isinstance(source, FileKeySource):
        where = "VEIL_MASTER_KEY" if isinstance(source, EnvKeySource) else ctx.keyring.primary_provider.describe()
        raise MasterKeyError(
            f"the master key comes from {where}, which Veil cannot replace; set a new one and re-encrypt offline, "
            "or migrate to another key store with `veil keys rotate-master --to URL`"
        )
    new_key = MasterKey.generate()
    target: KeyProvider | MasterKey = (
        SoftwareKeyProvider(new_key, ctx.keyring.project_keys, ctx.keyring.kind)
        if ctx.keyring.project_keys
        else new_key
    )
    source.stage(new_key)
    try:
        with ctx.db.session() as session:
            old_key_id = current_kek_id(session, for_update=True)
            rewrapped = _rewrap_all(ctx, session, target)
            mark_rotated(session, new_key.key_id)
            audit.record(session, actor, "master-key.rotate", [old_key_id, new_key.key_id], f"rewrapped:{rewrapped}")
    except BaseException:
        source.discard_staged()
        raise
    source.promote(new_key.key_id)
    ctx.keyring.reload()
    return RotationReport(old_key_id, new_key.key_id, rewrapped)


def _migrate(ctx: AppContext, actor: Principal, url: str) -> RotationReport:
    """Re-wrap every DEK for the key store `url`, then destroy the project keys left in the old one. Every Veil
    process must then run with VEIL_KEY_PROVIDER=url (a running server refuses the new key id until restarted)."""
    target_ring = open_keyring(ctx.settings, url)
    target = target_ring.primary_provider
    if target.key_id == ctx.keyring.primary_key_id:
        raise InvalidInput(f"{target.describe()} is already the key store in use")
    with ctx.db.session() as session:
        old_key_id = current_kek_id(session, for_update=True)
        rewrapped = _rewrap_all(ctx, session, target)
        mark_rotated(session, target.key_id)
        audit.record(session, actor, "master-key.migrate", [old_key_id, target.key_id], f"rewrapped:{rewrapped}")
    destroyed = 0
    if not _shares_project_keys(ctx.keyring, target_ring):
        for project_id in ctx.keyring.held_projects():  # the old store's copies would reopen today's DEKs
            destroyed += ctx.keyring.forget(project_id)
    return RotationReport(old_key_id, target.key_id, rewrapped, destroyed)


def _shares_project_keys(old: KeyRing, new: KeyRing) -> bool:
    if old.project_keys is None or new.project_keys is None:
        return False
    return old.project_keys.path.resolve() == new.project_keys.path.resolve()


def _rewrap_all(ctx: AppContext, session: Session, target: KeyProvider | MasterKey) -> int:
    projects = session.scalars(select(Project).where(Project.wrapped_dek.is_not(None)).with_for_update()).all()
    for project in projects:
        assert project.wrapped_dek is not None and project.kek_id is not None
        dek = ctx.keyring.unwrap(project.id, project.wrapped_dek, project.kek_id)
        project.wrapped_dek, project.kek_id = target.wrap(project.id, dek), target.key_id
    return len(projects)
