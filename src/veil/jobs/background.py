"""What runs beside the API: the job worker, the hourly retention purge and the orphan sweep — started and stopped
here only. `veil serve` runs them in its one process (the app's lifespan), or once in the parent of
`--workers N`; `veil worker` runs the worker and the sweep. Retention and the sweep hold cluster leases, so any
number of nodes may run them.

    >>> background = Background.start(settings, db, blobs)
    >>> background.stop()                               # last started first
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from veil.config import Settings
from veil.jobs.leases import leased_task
from veil.jobs.retention import RetentionLoop
from veil.jobs.worker import Worker
from veil.store.blobs import BlobStore
from veil.store.db import Database
from veil.store.sweep import PeriodicTask, sweep_orphans


def orphan_sweeper(settings: Settings, db: Database, blobs: BlobStore) -> PeriodicTask:
    """The orphan sweep (blobs of writes whose row never committed), started now and repeated periodically, in
    one process of the cluster at a time (the `orphan-sweep` lease)."""
    grace_s = settings.orphan_grace_minutes * 60
    sweeper = leased_task(
        db, "orphan-sweep", lambda: sweep_orphans(db, blobs, grace_s), settings.orphan_sweep_interval_minutes * 60
    )
    sweeper.start()
    return sweeper


@dataclass
class Background:
    """The running background duties of one process; `stop()` stops them, last started first."""

    stoppers: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings, db: Database, blobs: BlobStore) -> Background:
        worker = Worker(settings)  # first settles the jobs a previous process left running
        worker.start()
        retention = RetentionLoop(db, blobs)
        retention.start()
        sweeper = orphan_sweeper(settings, db, blobs)
        return cls([worker.stop, retention.stop, sweeper.stop])

    def stop(self) -> None:
        for stop in reversed(self.stoppers):
            stop()
        self.stoppers.clear()
