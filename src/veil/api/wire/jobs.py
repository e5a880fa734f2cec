"""Veil addition: the job behind an iteration's training (progress, ETA, cancel state)."""

from __future__ import annotations

from datetime import datetime

from veil.api.wire.base import Wire
from veil.jobs.queue import JobView


class JobOut(Wire):
    """Veil addition: the training job behind an iteration (progress, ETA, cancel state)."""

    id: str
    kind: str
    status: str
    stage: str
    percent: float
    eta_seconds: float | None
    error: str | None
    cancel_requested: bool
    created: datetime
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = 0  # more than 1: the job was retried after the worker running it was lost


def job_out(job: JobView) -> JobOut:
    return JobOut(
        id=job.id, kind=job.kind, status=job.status, stage=job.stage, percent=job.progress,
        eta_seconds=job.eta_seconds, error=job.error, cancel_requested=job.cancel_requested,
        created=job.created, started_at=job.started_at, finished_at=job.finished_at, attempts=job.attempts,
    )  # fmt: skip
