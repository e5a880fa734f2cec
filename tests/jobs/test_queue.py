"""The job queue and retention purge on real databases: SQLite (guarded UPDATE), PostgreSQL (SKIP LOCKED)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from veil.jobs import queue
from veil.jobs.retention import purge_expired
from veil.store.blobs import LocalBlobStore
from veil.store.db import Database
from veil.store.models import Image, Job, Prediction, Project, utcnow

PG_URL = os.environ.get("VEIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the test database for this run, dropped afterwards."""
    try:
        admin = Database.open(PG_URL, run_migrations=False)
        with admin.engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as exc:  # the reason is printed with the skip
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc}")
    schema = f"veil_jobs_{uuid.uuid4().hex[:10]}"
    with admin.engine.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.engine.begin() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'veil.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture()
def db(db_url: str) -> Iterator[Database]:
    database = Database.open(db_url)
    yield database
    database.dispose()


def test_each_job_is_claimed_by_exactly_one_of_many_concurrent_workers(db: Database, db_url: str) -> None:
    job_ids = {queue.enqueue(db, "train", payload={"n": n}) for n in range(24)}
    claims: dict[str, list[str]] = {}
    lock = threading.Lock()

    def work(name: str) -> None:
        own = Database.open(db_url, run_migrations=False)  # one engine per worker, as separate processes have
        try:
            while (job := queue.claim_next(own, name)) is not None:
                with lock:
                    claims.setdefault(job.id, []).append(name)
        finally:
            own.dispose()

    workers = [threading.Thread(target=work, args=(f"{socket.gethostname()}:w{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert set(claims) == job_ids
    assert all(len(names) == 1 for names in claims.values()), claims
    assert queue.claim_next(db, "late") is None


def test_cancel_stops_a_queued_job_at_once_and_flags_a_running_one(db: Database) -> None:
    queued = queue.enqueue(db, "train")
    running = queue.enqueue(db, "train")
    assert queue.request_cancel(db, queued).status == "cancelled"
    claimed = queue.claim_next(db, "host:1")
    assert claimed is not None and claimed.id == running
    view = queue.request_cancel(db, running)
    assert view.status == "running" and view.cancel_requested
    assert queue.cancel_requested(db, running)
    queue.finish(db, running, "cancelled", message="cancelled by the user")
    assert queue.load(db, running).status == "cancelled"
    with pytest.raises(KeyError):
        queue.request_cancel(db, str(uuid.uuid4()))


def test_progress_is_written_to_the_row_and_finish_is_final(db: Database) -> None:
    job_id = queue.enqueue(db, "train")
    queue.claim_next(db, "host:1")
    queue.report_progress(db, job_id, "features", 42.5, eta_seconds=12.0)
    view = queue.load(db, job_id)
    assert (view.stage, view.progress, view.eta_seconds) == ("features", 42.5, 12.0)
    queue.finish(db, job_id, "failed", message="boom")
    queue.finish(db, job_id, "succeeded")  # a settled job stays settled
    assert queue.load(db, job_id).status == "failed"
    assert queue.load(db, job_id).error == "boom"
    with pytest.raises(ValueError):
        queue.finish(db, job_id, "running")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _zombie_pid() -> tuple[subprocess.Popen[bytes], int]:
    """A worker killed with its parent lingers as a zombie where PID 1 does not reap (many containers)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "child never exited"
        time.sleep(0.05)
    return child, child.pid


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombie detection reads /proc (Linux only)")
def test_restart_recovery_fails_jobs_of_dead_workers_only(db: Database) -> None:
    host = socket.gethostname()
    dead_local, zombie_local, live_local, stale_remote, fresh_remote = (queue.enqueue(db, "train") for _ in range(5))
    zombie, zombie_pid = _zombie_pid()  # exited, not yet reaped: kill(pid, 0) still succeeds on it
    owners = {
        dead_local: f"{host}:{_dead_pid()}",
        zombie_local: f"{host}:{_dead_pid()}:{zombie_pid}",
        live_local: f"{host}:{os.getpid()}",
        stale_remote: "other-host:123",
        fresh_remote: "other-host:456",
    }
    for _ in owners:
        queue.claim_next(db, "claiming")
    with db.session() as session:
        for job_id, owner in owners.items():
            job = session.get(Job, job_id)
            assert job is not None
            job.claimed_by = owner
            job.heartbeat_at = utcnow() - (timedelta(minutes=10) if job_id == stale_remote else timedelta())
    recovered = {job.id for job in queue.recover_interrupted(db).failed}
    zombie.wait()
    assert recovered == {dead_local, zombie_local, stale_remote}
    assert queue.load(db, dead_local).status == "failed"
    assert "interrupted" in (queue.load(db, dead_local).error or "")
    assert queue.load(db, live_local).status == "running"
    assert queue.load(db, fresh_remote).status == "running"


def test_retention_purge_deletes_expired_rows_and_their_ciphertext_only(db: Database, tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    now = utcnow()
    with db.session() as session:
        project = Project(name="retention", domain_id=str(uuid.uuid4()))
        session.add(project)
        session.flush()
        rows = {
            "old_image": Image(
                project_id=project.id,
                content_type="image/jpeg",
                size_bytes=3,
                width=16,
                height=16,
                expires_at=now - timedelta(days=1),
            ),
            "kept_image": Image(project_id=project.id, content_type="image/jpeg", size_bytes=3, width=16, height=16),
            "old_prediction": Prediction(
                project_id=project.id, image_blob_id=str(uuid.uuid4()), expires_at=now - timedelta(seconds=1)
            ),
            "new_prediction": Prediction(
                project_id=project.id, image_blob_id=str(uuid.uuid4()), expires_at=now + timedelta(days=30)
            ),
        }
        session.add_all(rows.values())
        session.flush()
        project_id = project.id
        blob_of = {name: row.blob_id if isinstance(row, Image) else row.image_blob_id for name, row in rows.items()}
        ids = {name: row.id for name, row in rows.items()}
    for blob_id in blob_of.values():
        assert blob_id
        blobs.put(project_id, blob_id, b"ciphertext")

    report = purge_expired(db, blobs, now=now)
    assert (report.images, report.predictions) == (1, 1)
    assert blobs.blob_ids(project_id) == {blob_of["kept_image"], blob_of["new_prediction"]}
    with db.session() as session:
        assert session.get(Image, ids["old_image"]) is None
        assert session.get(Prediction, ids["old_prediction"]) is None
        assert session.get(Image, ids["kept_image"]) is not None
        assert session.get(Prediction, ids["new_prediction"]) is not None
    assert purge_expired(db, blobs, now=now).images == 0
