"""Leases on the shared database (SQLite and PostgreSQL): a cluster-wide duty has one holder until its lease
lapses; a job whose worker is lost goes back to the queue (up to its attempts), and the lost worker can neither
renew nor settle it any more."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.cluster.harness import pg_schema, pg_unreachable_reason

from veil.jobs import queue
from veil.jobs.leases import leased_task, release, try_acquire
from veil.store.db import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database.open(f"sqlite:///{tmp_path / 'veil.db'}")
        yield database
        database.dispose()
        return
    reason = pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    with pg_schema() as schema:
        database = Database.open(schema.tcp_url)
        yield database
        database.dispose()


def test_one_holder_until_the_lease_lapses(db: Database) -> None:
    assert try_acquire(db, "retention", "node-a", ttl_s=0.6)
    assert try_acquire(db, "retention", "node-a", ttl_s=0.6)  # the holder renews
    assert not try_acquire(db, "retention", "node-b", ttl_s=0.6)
    assert try_acquire(db, "orphan-sweep", "node-b", ttl_s=0.6)  # another duty, another lease
    time.sleep(0.8)
    assert try_acquire(db, "retention", "node-b", ttl_s=60)  # node-a stopped renewing: node-b takes over
    assert not try_acquire(db, "retention", "node-a", ttl_s=60)
    release(db, "retention", "node-b")
    assert try_acquire(db, "retention", "node-a", ttl_s=60)  # released: no need to wait


def test_concurrent_first_takers_get_one_lease(db: Database) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(6)

    def take(holder: str) -> None:
        barrier.wait()
        if try_acquire(db, f"duty-{db.engine.dialect.name}", holder, ttl_s=60):
            winners.append(holder)

    threads = [threading.Thread(target=take, args=(f"node-{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_a_leased_task_runs_in_one_process_only(db: Database) -> None:
    runs: dict[str, int] = {"a": 0, "b": 0}
    name = f"sweep-{secrets.token_hex(3)}"
    tasks = [
        leased_task(db, name, lambda who=who: runs.__setitem__(who, runs[who] + 1), 0.1, holder=who)  # type: ignore[misc]
        for who in ("a", "b")
    ]
    for task in tasks:
        task.start()
    time.sleep(1.0)
    first_holder = "a" if runs["a"] else "b"
    other = "b" if first_holder == "a" else "a"
    assert runs[first_holder] >= 3 and runs[other] == 0
    tasks[0 if first_holder == "a" else 1].stop()  # a clean stop releases the lease...
    time.sleep(0.6)
    tasks[1 if first_holder == "a" else 0].stop()
    assert runs[other] >= 1  # ...and the other process takes the duty over


def test_a_lost_workers_job_is_requeued_then_fails_when_out_of_attempts(db: Database) -> None:
    job_id = queue.enqueue(db, "train", payload={"iteration_id": "i1"})
    lost = "far-host:111"
    claimed = queue.claim_next(db, lost)
    assert claimed is not None and claimed.attempts == 1
    assert queue.heartbeat(db, job_id, f"{lost}:112", owner=lost)

    recovered = queue.recover_interrupted(db, stale_after=timedelta(seconds=0), max_attempts=2)
    assert [job.id for job in recovered.requeued] == [job_id] and recovered.failed == []
    requeued = queue.load(db, job_id)
    assert requeued.status == "queued" and requeued.claimed_by is None and "retrying" in (requeued.error or "")

    # The lost worker comes back: its lease is gone, it can neither renew nor settle the job.
    assert not queue.heartbeat(db, job_id, f"{lost}:112", owner=lost)
    queue.finish(db, job_id, "succeeded", owner=lost)
    assert queue.load(db, job_id).status == "queued"

    again = queue.claim_next(db, "near-host:222")
    assert again is not None and again.id == job_id and again.attempts == 2
    recovered = queue.recover_interrupted(db, stale_after=timedelta(seconds=0), max_attempts=2)
    assert [job.id for job in recovered.failed] == [job_id]
    assert queue.load(db, job_id).status == "failed"


def test_a_live_workers_job_is_left_alone(db: Database) -> None:
    job_id = queue.enqueue(db, "train")
    owner = "far-host:333"
    assert queue.claim_next(db, owner) is not None
    recovered = queue.recover_interrupted(db, stale_after=timedelta(seconds=60), max_attempts=3)
    assert recovered.requeued == [] and recovered.failed == []
    queue.finish(db, job_id, "succeeded", owner=owner)
    assert queue.load(db, job_id).status == "succeeded"
