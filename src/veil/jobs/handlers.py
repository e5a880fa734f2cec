"""What a job kind does: a handler with `run(ctx)` (in the worker's child process) and `on_failure`.

Handlers are looked up by kind from a registry of import paths, so the worker parent never imports a handler's
heavy dependencies (torch) — only the spawned child does, when it calls `run`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from veil.config import Settings


class JobCancelled(Exception):
    """Raised inside a handler when the job's cancel flag was set."""


def _no_report(stage: str, percent: float, eta_seconds: float | None = None, force: bool = False) -> None:
    return None


def _never() -> bool:
    return False


@dataclass
class JobContext:
    """What a handler gets: its settings, job id and payload, and the progress/cancel hooks of the queue."""

    settings: Settings
    job_id: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    report: Callable[..., None] = _no_report
    should_cancel: Callable[[], bool] = _never


class JobHandler(Protocol):
    def run(self, ctx: JobContext) -> str | None:
        """Do the work; return a short success message. Raise `JobCancelled` when `ctx.should_cancel()`."""

    def on_failure(self, ctx: JobContext, reason: str) -> None:
        """Mark what the job owns as failed (e.g. the iteration), with the reason a user will read."""


# kind → "module:attribute" of a JobHandler instance.
HANDLERS: dict[str, str] = {
    "train": "veil.services.training:TRAINING_JOB",
    "export": "veil.services.exports:EXPORT_JOB",
}


def handler_for(kind: str) -> JobHandler:
    if kind not in HANDLERS:
        raise KeyError(f"no handler for job kind {kind!r}; known: {', '.join(sorted(HANDLERS))}")
    module_name, attribute = HANDLERS[kind].split(":")
    handler: JobHandler = getattr(importlib.import_module(module_name), attribute)
    return handler
