"""The job queue: rows of the `jobs` table, claimed atomically by workers.

A job goes `queued → running → succeeded | failed | cancelled`. Claiming is atomic on both back ends:
PostgreSQL uses `SELECT … FOR UPDATE SKIP LOCKED` (many `veil worker` processes on many machines share the
queue); SQLite uses a guarded `UPDATE … WHERE status = 'queued'` whose row count tells who won.

    >>> db = Database.open("sqlite:///:memory:")
    >>> job_id = enqueue(db, "train", project_id="p1", payload={"iteration_id": "i1"})
    >>> claim_next(db, "host:1").id == job_id
    True
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from veil.config import Settings
from veil.store.db import Database
from veil.store.models import Job, utcnow

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# A worker on another machine counts as gone when its heartbeat is older than this.
STALE_AFTER = timedelta(seconds=60)

_databases: dict[str, Database] = {}


@dataclass(frozen=True)
class JobView:
    """A detached snapshot of a job row (safe to pass between threads and processes)."""

    id: str
    kind: str
    project_id: str | None
    status: str
    stage: str
    progress: float
    eta_seconds: float | None
    error: str | None
    cancel_requested: bool
    claimed_by: str | None
    created: datetime
    started_at: datetime | None
    finished_at: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0  # claims so far (more than 1: retried after a worker was lost)


def _view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        project_id=job.project_id,
        status=job.status,
        stage=job.stage,
        progress=job.progress,
        eta_seconds=job.eta_seconds,
        error=job.error,
        cancel_requested=job.cancel_requested,
        claimed_by=job.claimed_by,
        created=job.created,
        started_at=job.started_at,
        finished_at=job.finished_at,
        payload=dict(job.payload or {}),
        result=dict(job.result or {}),
        attempts=job.attempts or 0,
    )


def session_factory(settings: Settings) -> Database:
    """One `Database` per URL per process (the worker's child opens its own; engines are not fork-safe)."""
    url = settings.sqlalchemy_url
    key = f"{os.getpid()}:{url}"
    if key not in _databases:
        _databases[key] = Database.open(url, run_migrations=False)
    return _databases[key]


def enqueue(db: Database, kind: str, project_id: str | None = None, payload: dict[str, Any] | None = None) -> str:
    with db.session() as session:
        return enqueue_in(session, kind, project_id, payload)


def enqueue_in(
    session: Session,
    kind: str,
    project_id: str | None,
    payload: dict[str, Any] | None,
    claimed_by: str | None = None,
) -> str:
    """Queue a job in the caller's transaction: what it works on (an iteration) and the job appear together or
    not at all. With `claimed_by` (`host:pid`), the job starts out running, held by that process, which runs it
    itself (no worker ever sees it queued; if that process dies, recovery requeues it for a worker)."""
    job = Job(kind=kind, project_id=project_id, payload=payload or {}, status="queued")
    if claimed_by:
        _mark_running(job, claimed_by)
    session.add(job)
    session.flush()
    return job.id


def newest_by_payload_in(
    session: Session, kind: str, project_id: str, key: str, values: list[str]
) -> dict[str, JobView]:
    """The newest job of `kind` in a project per value of `payload[key]` (e.g. each export's job)."""
    wanted = set(values)
    if not wanted:
        return {}
    rows = session.scalars(select(Job).where(Job.kind == kind, Job.project_id == project_id).order_by(Job.created))
    return {str(job.payload[key]): _view(job) for job in rows if (job.payload or {}).get(key) in wanted}


def cancel_by_payload_in(session: Session, kind: str, project_id: str, key: str, value: str) -> None:
    """Ask every unfinished job of `kind` whose `payload[key]` is `value` to stop (e.g. an iteration's exports
    when it is deleted)."""
    rows = session.scalars(
        select(Job).where(Job.kind == kind, Job.project_id == project_id, Job.status.in_(("queued", "running")))
    )
    for job in rows:
        if (job.payload or {}).get(key) == value:
            request_cancel_in(session, job.id)


def load(db: Database, job_id: str) -> JobView:
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise KeyError(f"job {job_id} not found")
        return _view(job)


def find(db: Database, job_id: str) -> JobView | None:
    try:
        return load(db, job_id)
    except KeyError:
        return None


def claim_next(db: Database, worker: str, kinds: tuple[str, ...] | None = None) -> JobView | None:
    """Atomically take the oldest queued job (of `kinds`), or None when there is none."""
    if db.is_postgres:
        return _claim_postgres(db, worker, kinds)
    return _claim_guarded_update(db, worker, kinds)


def _queued(kinds: tuple[str, ...] | None):  # type: ignore[no-untyped-def]
    query = select(Job).where(Job.status == "queued").order_by(Job.created)
    return query.where(Job.kind.in_(kinds)) if kinds else query


def _claim_postgres(db: Database, worker: str, kinds: tuple[str, ...] | None) -> JobView | None:
    with db.session() as session:
        job = session.scalars(_queued(kinds).limit(1).with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        _mark_running(job, worker)
        session.flush()
        return _view(job)


def _claim_guarded_update(db: Database, worker: str, kinds: tuple[str, ...] | None) -> JobView | None:
    for _attempt in range(5):
        with db.session() as session:
            candidate = session.scalars(_queued(kinds).limit(1)).first()
            if candidate is None:
                return None
            now = utcnow()
            claimed = session.execute(
                update(Job)
                .where(Job.id == candidate.id, Job.status == "queued")
                .values(
                    status="running",
                    claimed_by=worker,
                    started_at=now,
                    heartbeat_at=now,
                    stage="starting",
                    attempts=Job.attempts + 1,
                )
            )
            if getattr(claimed, "rowcount", 0) == 1:
                session.flush()
                session.refresh(candidate)
                return _view(candidate)
    return None


def _mark_running(job: Job, worker: str) -> None:
    now = utcnow()
    job.status, job.claimed_by, job.started_at, job.heartbeat_at, job.stage = (
        "running",
        worker,
        now,
        now,
        "starting",
    )
    job.attempts = (job.attempts or 0) + 1


def _held_by(owner: str):  # type: ignore[no-untyped-def]
    """The claim of `owner` (`host:pid`), whichever job process it has spawned since (`host:pid:child`)."""
    return (Job.claimed_by == owner) | Job.claimed_by.startswith(f"{owner}:", autoescape=True)


def claim_belongs_to(claimed_by: str | None, owner: str) -> bool:
    """Whether a job's `claimed_by` is `owner` (`host:pid`) or a job process it spawned (`host:pid:child`)."""
    return claimed_by == owner or (claimed_by or "").startswith(f"{owner}:")


def heartbeat(db: Database, job_id: str, worker: str, owner: str | None = None) -> bool:
    """Renew the job's lease; False when `owner` no longer holds it (it was recovered and handed to another
    worker while this one was cut off): the caller must stop working on it."""
    query = update(Job).where(Job.id == job_id, Job.status == "running")
    if owner is not None:
        query = query.where(_held_by(owner))
    with db.session() as session:
        renewed = session.execute(query.values(heartbeat_at=utcnow(), claimed_by=worker))
        return getattr(renewed, "rowcount", 0) == 1


def report_progress(db: Database, job_id: str, stage: str, percent: float, eta_seconds: float | None) -> None:
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "running")
            .values(
                stage=stage[:64],
                progress=max(0.0, min(100.0, float(percent))),
                eta_seconds=eta_seconds,
                heartbeat_at=utcnow(),
            )
        )


def cancel_requested(db: Database, job_id: str) -> bool:
    with db.session() as session:
        return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def request_cancel(db: Database, job_id: str) -> JobView:
    """Ask a job to stop: a queued job is cancelled at once, a running one at its next check."""
    with db.session() as session:
        job = request_cancel_in(session, job_id)
        if job is None:
            raise KeyError(f"job {job_id} not found")
        session.flush()
        return _view(job)


def request_cancel_in(session: Session, job_id: str) -> Job | None:
    """`request_cancel` in the caller's transaction (e.g. with the iteration it trains being deleted)."""
    job = session.get(Job, job_id)
    if job is not None and job.status == "queued":
        job.status, job.finished_at, job.error = "cancelled", utcnow(), "cancelled before it started"
    elif job is not None and job.status == "running":
        job.cancel_requested = True
    return job


def forget_project_in(session: Session, project_id: str) -> None:
    """Remove a deleted project's jobs (their payloads name its rows)."""
    session.execute(delete(Job).where(Job.project_id == project_id))


def finish(
    db: Database,
    job_id: str,
    status: str,
    message: str = "",
    result: dict[str, Any] | None = None,
    owner: str | None = None,
) -> None:
    """Settle a job; with `owner`, only while that worker still holds it (a retried job is another's now)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final job status ({', '.join(sorted(FINAL_STATUSES))})")
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None or job.status in FINAL_STATUSES:
            return
        if owner is not None and not claim_belongs_to(job.claimed_by, owner):
            return
        job.status, job.finished_at = status, utcnow()
        if status == "succeeded":
            job.progress, job.stage = 100.0, "done"
            job.result = result or {"message": message}
        else:
            job.error = message[:4000]
        job.eta_seconds = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed worker whose parent died is a zombie until init reaps it; in containers whose PID 1 never
    reaps, it stays one forever, and `kill(pid, 0)` still succeeds on it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS) or already gone
        return False
    # The state letter follows the parenthesised command name, which may itself contain spaces or ')'.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def _local_process_gone(claimed_by: str) -> bool:
    """True when `host:pid[:child]` names this host and none of its pids is alive."""
    host, _, pids = claimed_by.partition(":")
    if host != socket.gethostname():
        return False
    return not any(_pid_alive(int(pid)) for pid in pids.split(":") if pid.isdigit())


@dataclass(frozen=True)
class Recovered:
    """Jobs whose worker is gone: `requeued` ones run again elsewhere, `failed` ones used up their attempts."""

    requeued: list[JobView]
    failed: list[JobView]


def recover_interrupted(db: Database, stale_after: timedelta = STALE_AFTER, max_attempts: int = 1) -> Recovered:
    """Settle every running job whose worker is gone (a dead local pid, or a lease — heartbeat — older than
    `stale_after`): back to `queued` while it has attempts left, else `failed`."""
    stale_before = utcnow() - stale_after
    requeued: list[JobView] = []
    failed: list[JobView] = []
    with db.session() as session:
        for job in session.scalars(select(Job).where(Job.status == "running").with_for_update()):
            gone = _local_process_gone(job.claimed_by or "") if job.claimed_by else True
            stale = job.heartbeat_at is None or job.heartbeat_at < stale_before
            if not (gone or stale):
                continue
            lost_by = job.claimed_by or "an unknown worker"
            if job.cancel_requested or (job.attempts or 0) >= max_attempts:
                job.status, job.finished_at = "failed", utcnow()
                job.error = "interrupted: the Veil process running this job stopped before it finished"
                failed.append(_view(job))
                continue
            job.status, job.claimed_by, job.heartbeat_at, job.started_at = "queued", None, None, None
            job.stage, job.progress, job.eta_seconds = "retrying", 0.0, None
            job.error = f"attempt {job.attempts} lost ({lost_by} stopped); retrying"[:4000]
            requeued.append(_view(job))
    return Recovered(requeued=requeued, failed=failed)


def queue_depth(db: Database) -> dict[tuple[str, str], int]:
    """How many jobs wait or run, by (kind, status) — for the metrics; every kind seen gets both statuses."""
    with db.read_session() as session:
        rows = session.execute(
            select(Job.kind, Job.status, func.count())
            .where(Job.status.in_(("queued", "running")))
            .group_by(Job.kind, Job.status)
        ).all()
    depth = {(kind, status): 0 for kind, _, _ in rows for status in ("queued", "running")}
    depth.update({(kind, status): int(count) for kind, status, count in rows})
    return depth


def latest_for(db: Database, kind: str, project_id: str) -> list[JobView]:
    with db.session() as session:
        rows = session.scalars(
            select(Job).where(Job.kind == kind, Job.project_id == project_id).order_by(Job.created.desc())
        )
        return [_view(job) for job in rows]
