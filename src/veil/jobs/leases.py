"""Cluster-wide duties run by one process at a time: a row of `leases` names its holder until it expires.

    >>> if try_acquire(db, "retention", holder, ttl_s=7200): purge_expired(...)   # the others skip this round
    >>> task = leased_task(db, "orphan-sweep", sweep, interval_s=3600)            # the same, every hour

The holder renews its lease each time it runs; if it dies, the lease lapses after `ttl_s` and the next process to
ask takes over. Expiry is judged by the asking process's clock: keep the nodes' clocks in sync (NTP), as for any
lease, and keep `ttl_s` well above the possible skew.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from veil.store.db import Database
from veil.store.models import Lease, utcnow
from veil.store.sweep import PeriodicTask


def holder_identity() -> str:
    """`host:pid:random`: unique per process, readable in the table."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def try_acquire(db: Database, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the lease `name` for `ttl_s` seconds; False while another holder's lease is unexpired."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_s)
    try:
        with db.session() as session:
            lease = session.scalars(select(Lease).where(Lease.name == name).with_for_update()).first()
            if lease is None:
                session.add(Lease(name=name, holder=holder, expires_at=expires))
                session.flush()  # a concurrent first taker makes this fail on the primary key
                return True
            if lease.holder != holder and lease.expires_at > now:
                return False
            lease.holder, lease.expires_at = holder, expires
            return True
    except IntegrityError:
        return False


def release(db: Database, name: str, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so another process need not wait for it to expire."""
    with db.session() as session:
        session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


def leased_task(
    db: Database, name: str, task: Callable[[], object], interval_s: float, holder: str | None = None
) -> PeriodicTask:
    """A periodic task that runs only in the process holding the lease `name` (renewed at every run, lasting
    two intervals: a dead holder is replaced within at most three)."""
    me = holder or holder_identity()

    def run_if_held() -> object:
        if try_acquire(db, name, me, ttl_s=2 * interval_s):
            return task()
        return None

    return PeriodicTask(f"veil-{name}", run_if_held, interval_s, on_stop=lambda: release(db, name, me))
