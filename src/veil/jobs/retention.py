"""Retention: delete images and stored predictions whose `expires_at` has passed — rows and ciphertext blobs.

    >>> report = purge_expired(db, BlobStore(settings.blobs_dir))   # `veil purge` and the periodic job
    >>> report.images, report.predictions

The row goes first, then the blob: a crash in between leaves an orphan ciphertext (unreadable without a row,
harmless), never a row pointing at a missing blob. `RetentionLoop` runs the purge periodically in the server.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from veil.jobs.leases import holder_identity, release, try_acquire
from veil.store.blobs import BlobStore
from veil.store.db import Database
from veil.store.models import Image, Prediction, utcnow

log = logging.getLogger("veil.retention")
RETENTION_LEASE = "retention"
BATCH = 500


@dataclass(frozen=True)
class PurgeReport:
    images: int
    predictions: int
    at: datetime


def purge_expired(db: Database, blobs: BlobStore, now: datetime | None = None) -> PurgeReport:
    """Delete everything expired at `now` (default: the current time); returns how many of each went."""
    now = now or utcnow()
    images = _purge(db, blobs, Image, now)  # each row's delete shreds its blob's key (database trigger)
    predictions = _purge(db, blobs, Prediction, now)
    if images or predictions:
        db.checkpoint()  # SQLite: no copy of the deleted keys left in the WAL
    if images or predictions:
        log.info("retention purge: %d images, %d stored predictions expired", images, predictions)
    return PurgeReport(images=images, predictions=predictions, at=now)


def _blob_of(row: Image | Prediction) -> str | None:
    return row.blob_id if isinstance(row, Image) else row.image_blob_id


def _expired(session: Session, model: type[Image] | type[Prediction], now: datetime) -> list[Image | Prediction]:
    query = select(model).where(model.expires_at.is_not(None), model.expires_at <= now).limit(BATCH)
    return list(session.scalars(query))


def _purge(db: Database, blobs: BlobStore, model: type[Image] | type[Prediction], now: datetime) -> int:
    total = 0
    while True:
        with db.session() as session:
            rows = _expired(session, model, now)
            doomed = [(row.project_id, _blob_of(row)) for row in rows]
            for row in rows:
                session.delete(row)
        for project_id, blob_id in doomed:
            if blob_id:
                blobs.delete(project_id, blob_id)
        total += len(doomed)
        if len(doomed) < BATCH:
            return total


class RetentionLoop:
    """Runs `purge_expired` every `interval_s` seconds in a daemon thread until `stop()` — in one process of the
    cluster at a time: the holder of the `retention` lease (`veil.jobs.leases`)."""

    def __init__(self, db: Database, blobs: BlobStore, interval_s: float = 3600.0) -> None:
        self.db, self.blobs, self.interval_s = db, blobs, interval_s
        self.holder = holder_identity()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: PurgeReport | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="veil-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            release(self.db, RETENTION_LEASE, self.holder)
        except Exception:
            log.exception("could not release the retention lease (it expires by itself)")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if try_acquire(self.db, RETENTION_LEASE, self.holder, ttl_s=2 * self.interval_s):
                    self.last = purge_expired(self.db, self.blobs)
            except Exception:
                log.exception("retention purge failed")
            self._stop.wait(self.interval_s)
