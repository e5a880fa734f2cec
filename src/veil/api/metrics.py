"""`GET /metrics`: Prometheus metrics of `veil serve` — request latency by route, the model's own time per
prediction, the job queue's depth, blob store errors.

Routes are labelled by their template (`/customvision/v3.0/prediction/{projectId}/classify/...`), never by the
ids in a URL. With `veil serve --workers N` every API process writes its samples to `PROMETHEUS_MULTIPROC_DIR`
(set by the parent) and a scrape of any one of them adds up all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from veil.jobs.queue import queue_depth
from veil.services.context import AppContext

REQUEST_SECONDS = Histogram(
    "veil_http_request_duration_seconds",
    "Time from a request's arrival to its last response byte, by route template, method and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

AUTH_FAILURES = Counter(
    "veil_auth_failures_total",
    "Requests refused by the key check: missing or invalid key (401), forbidden (403), throttled (429).",
    ["reason"],
)

router = APIRouter(tags=["veil"])


class RequestMetrics:
    """ASGI middleware timing every HTTP request under its route's template (unmatched: `<unmatched>`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            template = route_template(scope)
            REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(time.perf_counter() - started)


def route_template(scope: Scope) -> str:
    """The matched route's full template. A route of an included router knows only its own part
    (`/projects/{projectId}`); the literal prefix it was included under is the request path's leading segments."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not template:
        return "<unmatched>"
    if ":path}" in template:  # a catch-all (static files): its own template is all that is safe to report
        return str(template)
    tail = template.strip("/").split("/")
    segments = scope.get("path", "").strip("/").split("/")
    if len(segments) < len(tail):
        return str(template)
    return "/" + "/".join([*segments[: len(segments) - len(tail)], *tail]).strip("/")


class JobQueueCollector(Collector):
    """Jobs by kind and state (queued, running), read from the shared queue at scrape time: the same numbers
    from whichever replica is scraped."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("veil_jobs", "Jobs in the queue by kind and status.", labels=["kind", "status"])
        for (kind, status), count in queue_depth(self.ctx.db).items():
            family.add_metric([kind, status], count)
        yield family


def install_metrics(app: FastAPI, ctx: AppContext) -> None:
    app.add_middleware(RequestMetrics)
    app.state.metrics_registry = _scrape_registry(ctx)
    app.include_router(router)


def _scrape_registry(ctx: AppContext) -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(JobQueueCollector(ctx))
    return registry


class _Forward(Collector):
    """This process's default registry, seen through the scrape registry (which adds the queue collector)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
