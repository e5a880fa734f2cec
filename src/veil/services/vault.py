"""Encrypted blobs of a project: each blob sealed under its own key, wrapped by the project's DEK (unwrapped on
demand, never kept) and stored in `blob_keys` beside the row that owns the blob.

>>> vault = Vault(ctx)
>>> vault.put(project, blob_id, plaintext, owner_id=image.id)   # only ciphertext reaches the disk
>>> vault.get(project, blob_id)                 # IntegrityError if altered or swapped; KeyShredded once deleted
>>> vault.delete(project, blob_id)               # key row first, then the file: no copy of the blob opens again

`owner_id` names the row (image, prediction, iteration, export) whose deletion shreds the blob: a database trigger
deletes the key with that row on every path, the retention purge included. The key row is written in the
caller's session when `project` belongs to one (it commits with the owning row), else in a transaction of its own.
Blobs written before per-blob keys (format 1) have no key row and open with the project's DEK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import delete
from sqlalchemy.orm import Session, object_session

from veil.security.crypto import KEYED_BLOB_VERSION, open_blob, seal_blob
from veil.services.context import AppContext
from veil.services.errors import Unavailable
from veil.store.models import BlobKey, Project

T = TypeVar("T")


class Vault:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def dek(self, project: Project) -> bytes:
        if project.wrapped_dek is None or project.kek_id is None:
            raise Unavailable(f"project {project.id} is being deleted: its data key was destroyed")
        return self.ctx.keyring.unwrap(project.id, project.wrapped_dek, project.kek_id)

    def _in_session(self, project: Project, work: Callable[[Session], T], write: bool) -> T:
        session = object_session(project)
        if session is not None and session.is_active:
            return work(session)
        with self.ctx.db.session() if write else self.ctx.db.read_session() as own:
            return work(own)

    def put(self, project: Project, blob_id: str, plaintext: bytes, owner_id: str | None = None) -> None:
        sealed = seal_blob(self.dek(project), project.id, blob_id, plaintext)
        self.ctx.blobs.put(project.id, blob_id, sealed.data)
        key = BlobKey(blob_id=blob_id, project_id=project.id, owner_id=owner_id, wrapped_key=sealed.wrapped_key)
        self._in_session(project, lambda session: session.merge(key), write=True)

    def get(self, project: Project, blob_id: str) -> bytes:
        sealed = self.ctx.blobs.get(project.id, blob_id)
        wrapped = None
        if sealed[:1] == bytes([KEYED_BLOB_VERSION]):
            wrapped = self._in_session(project, lambda session: _wrapped_key(session, blob_id), write=False)
        return open_blob(self.dek(project), project.id, blob_id, sealed, wrapped)

    def delete(self, project: Project, blob_id: str) -> None:
        """Shred the blob (its key row goes first), then remove its file."""
        self._in_session(
            project, lambda session: session.execute(delete(BlobKey).where(BlobKey.blob_id == blob_id)), write=True
        )
        self.ctx.blobs.delete(project.id, blob_id)


def _wrapped_key(session: Session, blob_id: str) -> bytes | None:
    row = session.get(BlobKey, blob_id)
    return row.wrapped_key if row is not None else None
