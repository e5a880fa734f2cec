"""The orphan sweep: remove ciphertext no row refers to, once it is older than a grace period.

    >>> report = sweep_orphans(db, blobs, grace_s=3600)   # at start, then hourly (`veil serve`, `veil worker`)
    >>> report.blobs, report.partial_writes, report.projects

Every writer stores the blob first and commits the row that names it after (a crash leaves an unreadable orphan,
never a row without its blob); deleters remove the row first, then the blob. So a blob without a row is either
a write still in progress — its row comes within seconds, hence the grace period — or garbage: a crash, a batch
that failed half-way, a disk that filled up. The listing is taken *before* the rows are read, so a row committed
in between protects its blob.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from veil.store.blobs import BlobInfo, BlobStore, utc_age_seconds
from veil.store.db import Database
from veil.store.models import Export, Image, Iteration, Prediction, Project

log = logging.getLogger("veil.sweep")


@dataclass(frozen=True)
class SweepReport:
    blobs: int  # orphan blobs removed
    bytes: int
    partial_writes: int  # temporary files of dead writers removed
    projects: int  # empty folders of projects that no longer exist, removed


def referenced_blob_ids(session: Session, project_id: str) -> set[str]:
    """Every blob id a row of the project names: images, stored predictions, iteration artifacts, exports."""
    ids: set[str] = set(session.scalars(select(Image.blob_id).where(Image.project_id == project_id)))
    ids.update(
        session.scalars(
            select(Prediction.image_blob_id).where(
                Prediction.project_id == project_id, Prediction.image_blob_id.is_not(None)
            )
        )
    )
    ids.update(
        b for b in session.scalars(select(Export.blob_id).where(Export.project_id == project_id)) if b is not None
    )
    for model_blob, metrics in session.execute(
        select(Iteration.model_blob_id, Iteration.metrics).where(Iteration.project_id == project_id)
    ):
        if model_blob:
            ids.add(model_blob)
        ids.update(_metric_blob_ids(metrics or {}))
    return ids


def _metric_blob_ids(metrics: dict[str, Any]) -> Iterable[str]:
    # Training keeps its evaluation, PR curves and loss curve as blobs named in the iteration's metrics.
    for key, value in metrics.items():
        if key.endswith("_blob_id") and isinstance(value, str):
            yield value
        elif key.endswith("_blob_ids") and isinstance(value, dict):
            yield from (v for v in value.values() if isinstance(v, str))
        elif key.endswith("_blob_ids") and isinstance(value, list):
            yield from (v for v in value if isinstance(v, str))


def sweep_orphans(db: Database, blobs: BlobStore, grace_s: float, now: float | None = None) -> SweepReport:
    """Remove blobs older than `grace_s` that no row references, and dead writers' temporary files."""
    now = time.time() if now is None else now
    partial = blobs.remove_partial_writes()
    listed = sorted(blobs.project_ids())
    with db.read_session() as session:
        live_projects = set(session.scalars(select(Project.id)))
    removed = removed_bytes = emptied = 0
    for project_id in listed:
        old = [b for b in blobs.list_blobs(project_id) if utc_age_seconds(b.modified, now) >= grace_s]
        if project_id not in live_projects:
            # No row (deleted, or an import still writing its first blobs): its old blobs are garbage.
            _delete(blobs, old)
            removed, removed_bytes = removed + len(old), removed_bytes + sum(b.size for b in old)
            emptied += blobs.prune_project(project_id)
            continue
        if not old:
            continue
        with db.read_session() as session:  # read after listing: a row committed meanwhile keeps its blob
            referenced = referenced_blob_ids(session, project_id)
        orphans = [b for b in old if b.blob_id not in referenced]
        _delete(blobs, orphans)
        removed, removed_bytes = removed + len(orphans), removed_bytes + sum(b.size for b in orphans)
    report = SweepReport(blobs=removed, bytes=removed_bytes, partial_writes=partial, projects=emptied)
    if removed or partial or emptied:
        log.info(
            "orphan sweep: %d blob(s) (%d bytes), %d partial write(s), %d deleted project(s)",
            removed,
            removed_bytes,
            partial,
            emptied,
        )
    return report


def _delete(blobs: BlobStore, doomed: list[BlobInfo]) -> None:
    for info in doomed:
        blobs.delete(info.project_id, info.blob_id)


class PeriodicTask:
    """Runs `task` now and then every `interval_s` seconds in a daemon thread until `stop()`; failures are logged."""

    def __init__(
        self, name: str, task: Callable[[], object], interval_s: float, on_stop: Callable[[], None] | None = None
    ) -> None:
        self.name, self.task, self.interval_s, self.on_stop = name, task, interval_s, on_stop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: object | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception:
                log.exception("%s: stopping failed", self.name)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.last = self.task()
            except Exception:
                log.exception("%s failed", self.name)
            self._stop.wait(self.interval_s)
