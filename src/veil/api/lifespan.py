"""What runs beside the HTTP server in `veil serve`: the job worker and the hourly retention purge."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from veil.jobs.retention import RetentionLoop
from veil.jobs.worker import Worker
from veil.services.context import AppContext


def background_lifespan(ctx: AppContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan starting the worker (which first settles jobs a previous process left running)
    and the retention loop, and stopping both, last started first, when the server stops."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = Worker(ctx.settings)
        worker.start()
        retention = RetentionLoop(ctx.db, ctx.blobs)
        retention.start()
        try:
            yield
        finally:
            retention.stop()
            worker.stop()

    return lifespan
