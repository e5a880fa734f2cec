"""URL routes when an operator enables them: only allow-listed hosts, bounded size, per-image refusals.

A real `veil serve` with `VEIL_URL_FETCH_HOSTS=127.0.0.1` and a 100 kB limit, and a real HTTP server on
127.0.0.1 serving dataset photos.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import dataset_path
from tests.support.http_helpers import TRAINING, ok
from tests.support.live_server import VeilServer, free_port, make_server

MAX_BYTES = 100_000


@pytest.fixture(scope="module")
def photo_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving one small and one large real photo."""
    folder = tmp_path_factory.mktemp("www")
    photos = sorted((dataset_path("ants-bees") / "train" / "bees").glob("*.jpg"), key=lambda p: p.stat().st_size)
    (folder / "small.jpg").write_bytes(photos[0].read_bytes())
    (folder / "large.jpg").write_bytes(photos[-1].read_bytes())
    assert (folder / "small.jpg").stat().st_size < MAX_BYTES < (folder / "large.jpg").stat().st_size
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


@pytest.fixture(scope="module")
def url_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VeilServer]:
    server = make_server(
        tmp_path_factory.mktemp("urls"), VEIL_URL_FETCH_HOSTS="127.0.0.1", VEIL_URL_FETCH_MAX_BYTES=str(MAX_BYTES)
    )
    server.start()
    server.keys["admin"] = server.create_key("admin")
    yield server
    server.stop()


def test_enabled_url_fetching_honours_the_allow_list_and_the_size_limit(
    url_server: VeilServer, photo_host: tuple[str, Path]
) -> None:
    base, _folder = photo_host
    localhost = base.replace("127.0.0.1", "localhost")
    with httpx.Client(base_url=url_server.endpoint, headers={"Training-Key": url_server.keys["admin"]}) as http:
        project = ok(http.post(f"{TRAINING}/projects", params={"name": "urls"}))
        assert isinstance(project, dict)
        tag = ok(http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": "bee"}))
        assert isinstance(tag, dict)
        batch = {
            "tagIds": [tag["id"]],
            "images": [
                {"url": f"{base}/small.jpg"},
                {"url": f"{base}/large.jpg"},
                {"url": f"{localhost}/small.jpg"},
                {"url": "file:///etc/passwd"},
                {"url": f"{base}/missing.jpg"},
            ],
        }
        response = http.post(f"{TRAINING}/projects/{project['id']}/images/urls", json=batch, timeout=60)
        assert response.status_code == 207, response.text
        results = {r["sourceUrl"]: r for r in response.json()["images"]}
        assert results[f"{base}/small.jpg"]["status"] == "OK"
        assert results[f"{base}/small.jpg"]["image"]["tags"][0]["tagName"] == "bee"
        assert results[f"{base}/large.jpg"]["status"] == "ErrorSource"
        assert str(MAX_BYTES) in results[f"{base}/large.jpg"]["message"]
        assert "allow-list" in results[f"{localhost}/small.jpg"]["message"]
        assert results["file:///etc/passwd"]["status"] == "ErrorSource"
        assert "404" in results[f"{base}/missing.jpg"]["message"]
        assert ok(http.get(f"{TRAINING}/projects/{project['id']}/images/count")) == 1
