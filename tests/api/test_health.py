"""Liveness and readiness as load balancers expect: `/healthz` (`/healthz/live`) answers while the process does;
`/healthz/ready` is 503 with the failing check named when the database, the blob store or free space is not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.api.conftest import Api
from tests.store.seaweedfs import free_ports

from veil.api.app import create_app
from veil.config import get_settings
from veil.services.context import AppContext


def test_ready_when_database_blobs_and_disk_are_fit(api: Api) -> None:
    response = api.client.get("/healthz/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "blobStore": "ok", "freeSpace": "ok"}
    assert api.client.get("/healthz/live").status_code == 200
    assert api.client.get("/healthz").status_code == 200


def test_not_ready_below_the_free_space_threshold(tmp_path: Path) -> None:
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", ready_min_free_bytes=2**62))
    with TestClient(create_app(ctx)) as client:
        ready = client.get("/healthz/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        checks = ready.json()["checks"]
        assert checks["freeSpace"].startswith("failed") and checks["database"] == "ok"
        assert client.get("/healthz/live").status_code == 200  # alive: restarting would not free the disk
    ctx.close()


def test_not_ready_when_the_blob_store_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [port] = free_ports(1)  # nothing listens there
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", blob_url="s3://veil/down"))
    with TestClient(create_app(ctx)) as client:
        ready = client.get("/healthz/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["blobStore"].startswith("failed")
        assert str(port) not in ready.text
        assert client.get("/healthz").status_code == 200
    ctx.close()
