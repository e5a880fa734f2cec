"""The Custom Vision source reader against a real local HTTP server that rate-limits and fails as Azure does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from veil.services.azure_source import (
    CustomVisionSource,
    RetryPolicy,
    SourceError,
    normalize_endpoint,
    parse_retry_after,
)

PROJECTS = [{"id": "p1", "name": "cats", "description": "", "settings": {"domainId": "d", "classificationType": None}}]


class _Script:
    """Answers to send, in order, for GET .../projects (the last one repeats); what the server saw."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.seen: list[tuple[float, str | None]] = []  # (time, Training-Key header)


@pytest.fixture()
def azure_like() -> Iterator[tuple[str, _Script]]:
    script = _Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            script.seen.append((time.monotonic(), self.headers.get("Training-Key")))
            status, headers = script.answers[min(len(script.seen), len(script.answers)) - 1]
            body = json.dumps(PROJECTS if status == 200 else {"code": "TooManyRequests", "message": "slow down"})
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()
    server.server_close()


def test_a_429_is_retried_after_the_seconds_retry_after_asks(azure_like: tuple[str, _Script]) -> None:
    endpoint, script = azure_like
    script.answers = [(429, {"Retry-After": "1"}), (200, {})]
    with CustomVisionSource(endpoint, "k") as source:
        assert [p.name for p in source.projects()] == ["cats"]
        assert source.retries == 1
    (first, key), (second, _) = script.seen
    assert second - first >= 0.95 and key == "k"


def test_5xx_is_retried_with_backoff_and_gives_up_after_the_bound(azure_like: tuple[str, _Script]) -> None:
    endpoint, script = azure_like
    script.answers = [(503, {}), (500, {}), (200, {})]
    fast = RetryPolicy(attempts=3, base_delay_s=0.05)
    with CustomVisionSource(endpoint, "k", retry=fast) as source:
        assert source.projects()[0].id == "p1"
    script.answers, script.seen = [(503, {})], []
    with CustomVisionSource(endpoint, "k", retry=fast) as source, pytest.raises(SourceError, match="after 3 tries"):
        source.projects()
    assert len(script.seen) == 3


def test_a_retry_after_beyond_the_limit_stops_at_once_saying_to_resume_later(azure_like: tuple[str, _Script]) -> None:
    endpoint, script = azure_like
    script.answers = [(429, {"Retry-After": "3600"})]
    with CustomVisionSource(endpoint, "k") as source, pytest.raises(SourceError, match="run the migration again"):
        source.projects()
    assert len(script.seen) == 1


def test_a_refused_key_is_one_line(azure_like: tuple[str, _Script]) -> None:
    endpoint, script = azure_like
    script.answers = [(401, {})]
    with CustomVisionSource(endpoint, "wrong") as source, pytest.raises(SourceError) as refused:
        source.projects()
    assert "refused the training key" in str(refused.value) and "\n" not in str(refused.value)


def test_retry_after_as_an_http_date_and_endpoint_forms() -> None:
    now = time.time()
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after("7") == 7 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    root = "https://res.cognitiveservices.azure.com"
    assert normalize_endpoint(root + "/") == root
    assert normalize_endpoint(root + "/customvision/v3.3/training/") == root
    with pytest.raises(SourceError):
        normalize_endpoint("res.cognitiveservices.azure.com")
