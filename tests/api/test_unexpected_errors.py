"""A bug (an exception no handler knows) costs one 500 `{code, message}`, one logged traceback and nothing more:
the keep-alive connection stays open for the client's next request."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from tests.api.conftest import Api


@pytest.fixture
def served_with_a_bug(api: Api) -> Iterator[int]:
    app: FastAPI = api.client.app  # type: ignore[assignment]

    def broken() -> None:
        raise RuntimeError("a bug in a route")

    app.add_api_route("/test-only/broken", broken)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def test_a_500_is_logged_once_and_keeps_the_connection(
    served_with_a_bug: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    connection = http.client.HTTPConnection("127.0.0.1", served_with_a_bug, timeout=10)
    connection.request("GET", "/test-only/broken")
    response = connection.getresponse()
    body = response.read()
    assert response.status == 500 and b'"InternalServerError"' in body
    assert not response.will_close, response.getheaders()
    socket_before = connection.sock
    connection.request("GET", "/healthz")
    follow_up = connection.getresponse()
    follow_up.read()
    assert follow_up.status == 200 and connection.sock is socket_before  # the same TCP connection
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
