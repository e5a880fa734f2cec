"""Encrypted blobs of a project: its DEK (unwrapped on demand, never kept) seals what goes to the blob store.

>>> vault = Vault(ctx)
>>> vault.put(project, blob_id, plaintext)      # only ciphertext reaches the disk
>>> vault.get(project, blob_id)                 # IntegrityError if the file was altered or swapped
"""

from __future__ import annotations

from veil.security.crypto import open_, seal
from veil.services.context import AppContext
from veil.services.errors import Unavailable
from veil.store.models import Project


class Vault:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def dek(self, project: Project) -> bytes:
        if project.wrapped_dek is None or project.kek_id is None:
            raise Unavailable(f"project {project.id} is being deleted: its data key was destroyed")
        return self.ctx.keyring.unwrap(project.id, project.wrapped_dek, project.kek_id)

    def put(self, project: Project, blob_id: str, plaintext: bytes) -> None:
        self.ctx.blobs.put(project.id, blob_id, seal(self.dek(project), project.id, blob_id, plaintext))

    def get(self, project: Project, blob_id: str) -> bytes:
        return open_(self.dek(project), project.id, blob_id, self.ctx.blobs.get(project.id, blob_id))

    def delete(self, project: Project, blob_id: str) -> None:
        self.ctx.blobs.delete(project.id, blob_id)
