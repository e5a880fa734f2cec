"""The running Veil: settings, database, blob store and master keys, opened once per process.

>>> ctx = AppContext.open(get_settings(data_dir="./.veil-data"))
>>> with ctx.db.session() as session: ...
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from veil.config import Settings
from veil.images.ingest import IngestLimits
from veil.security.crypto import FileKeySource, KeyRing, MasterKeyError
from veil.security.providers import open_keyring
from veil.store.blob_url import open_blob_store
from veil.store.blobs import BlobStore
from veil.store.db import Database
from veil.store.models import KeyState, utcnow

_KEY_STATE_ID = 1


@dataclass
class AppContext:
    settings: Settings
    db: Database
    blobs: BlobStore
    keyring: KeyRing

    @property
    def limits(self) -> IngestLimits:
        return IngestLimits.from_settings(self.settings)

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> AppContext:
        """Open (and on first start, create) the data directory, master key, database and blob store."""
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # only its owner may look inside
        keyring = open_keyring(settings)  # VEIL_KEY_PROVIDER: file (default), env or an HSM (pkcs11)
        db = Database.open(settings.sqlalchemy_url, run_migrations=migrate)
        ctx = cls(settings=settings, db=db, blobs=open_blob_store(settings), keyring=keyring)
        ctx.reconcile_master_key()
        ctx.blobs.remove_partial_writes()
        return ctx

    def reconcile_master_key(self) -> None:
        """Match the configured master key with the database's; finish a rotation cut off after its commit."""
        with self.db.session() as session:
            state = session.get(KeyState, _KEY_STATE_ID)
            primary_id = self.keyring.primary_key_id
            if state is None:
                session.add(KeyState(id=_KEY_STATE_ID, kek_id=primary_id, rotated_at=None))
                return
            if state.kek_id == primary_id:
                # A staged key may belong to a rotation running right now in another process: leave it.
                return
            staged = [k for k in self.keyring.source.load()[1:] if k.key_id == state.kek_id]
            if staged and isinstance(self.keyring.source, FileKeySource):
                self.keyring.source.promote(state.kek_id)  # that rotation committed; finish it
                self.keyring.reload()
                return
            raise MasterKeyError(
                f"the database's data keys are wrapped by master key {state.kek_id}, "
                f"but the configured master key is {primary_id}; start Veil with the matching key "
                "(VEIL_KEY_PROVIDER, VEIL_MASTER_KEY or the key file)"
            )

    def close(self) -> None:
        self.db.dispose()


def current_kek_id(session: Session, for_update: bool = False) -> str:
    """The id of the master key that wraps DEKs now (locked when about to wrap a new DEK or rotate)."""
    query = select(KeyState).where(KeyState.id == _KEY_STATE_ID)
    state = session.scalars(query.with_for_update() if for_update else query).first()
    if state is None:
        raise MasterKeyError("key state missing: open Veil with AppContext.open() first")
    return state.kek_id


def mark_rotated(session: Session, kek_id: str) -> None:
    state = session.get(KeyState, _KEY_STATE_ID)
    assert state is not None
    state.kek_id, state.rotated_at = kek_id, utcnow()
