"""The worker: claims queued jobs and runs each in its own spawned PROCESS; a crash never stops the server.

    worker = Worker(settings)          # inside `veil serve` (embedded) or `veil worker` (scale-out)
    worker.start()                     # a daemon thread: claim → spawn → wait → settle, until `stop()`

The parent keeps the job's heartbeat fresh while the child runs; the child reports progress (stage, percent,
ETA) into the job row and polls the row's cancel flag. If the child dies without settling its job (killed, out
of memory, segfault in a native library), the parent marks the job `failed` with the exit reason and lets the
job's handler mark what it owns (for training: the iteration `Failed` with `trainingErrorDetails`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from veil.config import Settings
from veil.jobs import queue
from veil.jobs.handlers import JobCancelled, JobContext, handler_for

log = logging.getLogger("veil.jobs")

HEARTBEAT_EVERY_S = 2.0
PROGRESS_EVERY_S = 0.5
CANCEL_POLL_EVERY_S = 1.0
# Also how soon a job of a dead `veil worker` on another machine is noticed (with queue.STALE_AFTER).
RECOVER_EVERY_S = 30.0


def worker_identity(child_pid: int | None = None) -> str:
    """`host:pid[:child]` — lets recovery tell a dead local worker from a live one on another machine."""
    base = f"{socket.gethostname()}:{os.getpid()}"
    return f"{base}:{child_pid}" if child_pid else base


def exit_reason(exitcode: int | None) -> str:
    if exitcode is None:
        return "the job's process did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the job's process was killed by {name} (out of memory or stopped by the operator?)"
    return f"the job's process exited with code {exitcode} without reporting a result"


@dataclass
class _Throttle:
    every_s: float
    last: float = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            return True
        return False


def _child_main(settings: Settings, job_id: str, owner: str | None = None) -> None:
    """Entry point of the spawned process: run one job's handler, settling the job row itself."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [job] %(message)s")
    session_factory = queue.session_factory(settings)
    job = queue.load(session_factory, job_id)
    progress_throttle, cancel_throttle = _Throttle(PROGRESS_EVERY_S), _Throttle(CANCEL_POLL_EVERY_S)
    cancelled = False

    def report(stage: str, percent: float, eta_seconds: float | None = None, force: bool = False) -> None:
        if force or progress_throttle.due():
            queue.report_progress(session_factory, job_id, stage, percent, eta_seconds)

    def should_cancel() -> bool:
        nonlocal cancelled
        if not cancelled and cancel_throttle.due():
            cancelled = queue.cancel_requested(session_factory, job_id)
        return cancelled

    ctx = JobContext(
        settings=settings,
        job_id=job_id,
        kind=job.kind,
        payload=job.payload,
        report=report,
        should_cancel=should_cancel,
    )
    handler = handler_for(job.kind)
    try:
        result = handler.run(ctx)
    except JobCancelled as exc:
        handler.on_failure(ctx, f"cancelled: {exc}" if str(exc) else "cancelled by the user")
        queue.finish(session_factory, job_id, "cancelled", message=str(exc) or "cancelled by the user", owner=owner)
        return
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        log.error("job %s failed: %s\n%s", job_id, reason, traceback.format_exc())
        handler.on_failure(ctx, reason)
        queue.finish(session_factory, job_id, "failed", message=reason, owner=owner)
        return
    queue.finish(session_factory, job_id, "succeeded", message=result or "", owner=owner)


class Worker:
    """Claims jobs from the queue and runs them one at a time in spawned processes."""

    def __init__(self, settings: Settings, poll_interval_s: float = 1.0, kinds: tuple[str, ...] | None = None):
        self.settings = settings
        self.poll_interval_s = poll_interval_s
        self.kinds = kinds
        self.identity = worker_identity()
        self._session_factory = queue.session_factory(settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._context = multiprocessing.get_context("spawn")
        self._current: multiprocessing.process.BaseProcess | None = None

    def recover(self) -> list[str]:
        """Settle jobs left `running` by a worker that no longer exists (a crash, a restart, a node gone): each
        runs again on whichever worker claims it next, until it has used `job_max_attempts`; then it fails."""
        recovered = queue.recover_interrupted(
            self._session_factory,
            stale_after=timedelta(seconds=self.settings.job_lease_seconds),
            max_attempts=self.settings.job_max_attempts,
        )
        for job in recovered.requeued:
            log.warning("job %s (%s) requeued: %s", job.id, job.kind, job.error)
        interrupted = recovered.failed
        for job in interrupted:
            reason = "interrupted: the Veil process running this job stopped before it finished"
            try:
                handler_for(job.kind).on_failure(
                    JobContext(settings=self.settings, job_id=job.id, kind=job.kind, payload=job.payload),
                    reason,
                )
            except Exception:
                log.exception("could not settle interrupted job %s", job.id)
            log.warning("job %s (%s) %s", job.id, job.kind, reason)
        return [job.id for job in [*recovered.requeued, *interrupted]]

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="veil-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        current = self._current
        if current is not None and current.is_alive():
            current.terminate()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        # Often enough that a dead worker's job is taken over soon after its lease runs out.
        every_s = min(RECOVER_EVERY_S, max(1.0, self.settings.job_lease_seconds / 2))
        recovery = _Throttle(every_s, last=time.monotonic())
        while not self._stop.is_set():
            try:
                if recovery.due():  # jobs of workers that died while this one kept running
                    self.recover()
                ran = self.run_once()
            except Exception:
                log.exception("worker loop error")
                ran = False
            if not ran:
                self._stop.wait(self.poll_interval_s)

    def run_once(self, on_spawn: Callable[[int], None] | None = None) -> bool:
        """Claim one job and run it to its end; False when the queue was empty."""
        job = queue.claim_next(self._session_factory, self.identity, self.kinds)
        if job is None:
            return False
        process = self._context.Process(
            target=_child_main,
            # The object itself (pickled), not its JSON: JSON masks secrets such as VEIL_MASTER_KEY.
            args=(self.settings, job.id, self.identity),
            name=f"veil-job-{job.id}",
            daemon=False,
        )
        process.start()
        self._current = process
        assert process.pid is not None
        queue.heartbeat(self._session_factory, job.id, worker_identity(process.pid), owner=self.identity)
        if on_spawn:
            on_spawn(process.pid)
        while process.is_alive():
            process.join(HEARTBEAT_EVERY_S)
            if process.is_alive() and not self._renew(job.id, process.pid):
                # Cut off longer than the lease: the job was handed to another worker. Stop ours.
                log.error("job %s: lease lost to another worker; stopping this attempt", job.id)
                process.terminate()
                process.join(10)
                self._current = None
                return True
        self._current = None
        self._settle_if_abandoned(job.id, job.kind, process.exitcode)
        return True

    def _renew(self, job_id: str, child_pid: int) -> bool:
        try:
            return queue.heartbeat(self._session_factory, job_id, worker_identity(child_pid), owner=self.identity)
        except Exception:  # the database is unreachable: keep working, the lease decides who owns the job
            log.exception("job %s: heartbeat failed", job_id)
            return True

    def _settle_if_abandoned(self, job_id: str, kind: str, exitcode: int | None) -> None:
        job = queue.load(self._session_factory, job_id)
        if job.status != "running" or not queue.claim_belongs_to(job.claimed_by, self.identity):
            return
        reason = exit_reason(exitcode)
        try:
            handler_for(kind).on_failure(
                JobContext(settings=self.settings, job_id=job_id, kind=kind, payload=job.payload), reason
            )
        finally:
            queue.finish(self._session_factory, job_id, "failed", message=reason, owner=self.identity)
        log.error("job %s failed: %s", job_id, reason)
