"""What runs beside the HTTP server in `veil serve` (one API process): the background duties of
`veil.jobs.background` — job worker, retention purge, orphan sweep — for as long as the app runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from veil.jobs.background import Background
from veil.services.context import AppContext


def background_lifespan(ctx: AppContext) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan starting the background duties and stopping them, last started first, when the server
    stops."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        background = Background.start(ctx.settings, ctx.db, ctx.blobs)
        try:
            yield
        finally:
            background.stop()

    return lifespan
