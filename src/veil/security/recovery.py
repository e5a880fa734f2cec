"""Backup and restore with the keys in mind: a backup holds only ciphertext and wrapped keys; restoring it
needs the live key store, which also decides what comes back.

A project deleted after the backup was taken had its project key destroyed in the key store (a file beside the
master key, or an HSM object). Its rows and blobs are in the backup, but its DEK no longer unwraps with anything
that exists, so restore removes what is left of it and says so:

    >>> report = restore(Path("veil.backup"), db, blobs, keyring)
    >>> report.shredded        # ids of projects deleted since the backup: unrecoverable, removed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select, update

from veil.security import audit
from veil.security.auth import OPERATOR, Principal
from veil.security.crypto import KeyRing, KeyShredded, MasterKeyError
from veil.store.backup import BackupManifest, Progress, read_manifest, restore_backup, write_backup
from veil.store.blobs import BlobStore
from veil.store.db import Database
from veil.store.models import ApiKey, Project, utcnow


@dataclass(frozen=True)
class RestoreReport:
    manifest: BackupManifest
    projects: int
    shredded: list[str]


def backup(db: Database, blobs: BlobStore, out: Path, progress: Progress | None = None,
           actor: Principal = OPERATOR) -> BackupManifest:  # fmt: skip
    """Write a backup (ciphertext only, no key material) and record it in the audit log."""
    manifest = write_backup(db, blobs, out, progress)
    with db.session() as session:
        audit.record(session, actor, "backup.create", [], f"blobs:{len(manifest.blobs)}")
    return manifest


def check_backup_key(manifest: BackupManifest, keyring: KeyRing) -> None:
    """Refuse, in one line, a key store that did not wrap this backup's data keys, or that holds none of its
    project keys (the wrong or an incomplete key store, not a backup whose every project was deleted since)."""
    if manifest.kek_id is not None and manifest.kek_id != keyring.primary_key_id:
        raise MasterKeyError(
            f"this backup's data keys are wrapped by master key {manifest.kek_id}, but the configured key is "
            f"{keyring.primary_key_id}; restore with the key store the backup was made with"
        )
    if manifest.project_keys and not set(manifest.project_keys) & keyring.held_projects():
        raise MasterKeyError(
            f"the key store ({keyring.primary_provider.describe()}) holds none of this backup's "
            f"{len(manifest.project_keys)} project keys; restore with the key store the backup was made with"
        )


def restore(
    path: Path, db: Database, blobs: BlobStore, keyring: KeyRing, progress: Progress | None = None,
    actor: Principal = OPERATOR,
) -> RestoreReport:  # fmt: skip
    """Restore into an empty database and blob store, then remove the projects whose keys were shredded.

    Refused before anything is written when the key store holds none of the backup's project keys: that is the
    wrong (or an incomplete) key store, not a backup whose every project was deleted since."""
    check_backup_key(read_manifest(path), keyring)
    manifest = restore_backup(path, db, blobs, progress)
    shredded: list[str] = []
    with db.read_session() as session:
        projects = list(session.execute(select(Project.id, Project.wrapped_dek, Project.kek_id)).tuples())
    for project_id, wrapped_dek, kek_id in projects:
        if wrapped_dek is None or kek_id is None:
            shredded.append(project_id)  # its deletion had begun when the backup was taken
            continue
        try:
            keyring.unwrap(project_id, wrapped_dek, kek_id)
        except KeyShredded:
            shredded.append(project_id)
    for project_id in shredded:
        blobs.delete_project(project_id)
    with db.session() as session:
        for project_id in shredded:
            session.execute(delete(Project).where(Project.id == project_id))  # rows cascade, blob keys with them
            session.execute(
                update(ApiKey)
                .where(ApiKey.project_id == project_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            audit.record(session, actor, "project.delete", [project_id], "key-destroyed-after-backup")
        audit.record(session, actor, "backup.restore", [], f"projects:{len(projects) - len(shredded)}")
    db.checkpoint()
    return RestoreReport(manifest, len(projects) - len(shredded), shredded)
