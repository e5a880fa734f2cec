"""Blob store failures reach API clients as honest answers: 507 `StorageFull` when the disk is full, 503
`StorageUnavailable` (with Retry-After) when the object store cannot be reached — a Custom Vision error body, the
connection kept, and no temporary file or half-stored image left behind."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import dataset_path
from tests.store.seaweedfs import free_ports

from veil.api.app import create_app
from veil.config import get_settings
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key

TRAINING = "/customvision/v3.3/training"


@pytest.fixture
def tiny_blob_dir(tmp_path: Path) -> Iterator[Path]:
    """Blobs on a 1 MiB tmpfs mounted by the test (root only); the database stays on the big disk."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)]).returncode:
        pytest.skip("cannot mount a tmpfs here (no CAP_SYS_ADMIN)")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _client(settings_dir: Path, blob_url: str) -> tuple[AppContext, TestClient, dict[str, str]]:
    ctx = AppContext.open(get_settings(data_dir=settings_dir, blob_url=blob_url))
    key = bootstrap_admin_key(ctx)
    assert key
    return ctx, TestClient(create_app(ctx), raise_server_exceptions=False), {"Training-Key": key}


def test_full_disk_is_507_and_leaves_nothing_half_stored(tmp_path: Path, tiny_blob_dir: Path) -> None:
    ctx, client, headers = _client(tmp_path / "data", f"file://{tiny_blob_dir}")
    photos = sorted(p for p in dataset_path("ants-bees").rglob("*.jpg") if p.stat().st_size > 60_000)[:40]
    with client:
        project_id = client.post(f"{TRAINING}/projects", params={"name": "full"}, headers=headers).json()["id"]
        statuses = []
        for photo in photos:
            response = client.post(
                f"{TRAINING}/projects/{project_id}/images",
                content=photo.read_bytes(),
                headers={**headers, "Content-Type": "application/octet-stream"},
            )
            statuses.append(response.status_code)
            if response.status_code != 200:
                break
        assert statuses[-1] == 507 and set(statuses[:-1]) == {200}, statuses
        # Custom Vision routes answer a code of the SDK's enum (Veil's routes: StorageFull); the message says why.
        assert response.json()["code"] == "ErrorUnknown" and "out of space" in response.json()["message"]
        assert client.get("/healthz").status_code == 200  # the same client, the server answers on
        count = client.get(f"{TRAINING}/projects/{project_id}/images/count", headers=headers).json()
        assert count == len(statuses) - 1  # no row for the upload that did not fit
    assert not list(tiny_blob_dir.rglob(".tmp-*"))
    assert len(ctx.blobs.blob_ids(project_id)) == count
    ctx.close()


def test_unreachable_object_store_is_503_with_retry_after(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [port] = free_ports(1)  # nothing listens there
    for name, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    ctx, client, headers = _client(tmp_path / "data", "s3://veil/down")
    photo = next(dataset_path("ants-bees").rglob("*.jpg"))
    with client:
        project_id = client.post(f"{TRAINING}/projects", params={"name": "down"}, headers=headers).json()["id"]
        response = client.post(
            f"{TRAINING}/projects/{project_id}/images",
            content=photo.read_bytes(),
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "ErrorUnknown" and response.headers["retry-after"] == "30"  # enum code
        assert "unavailable" in response.json()["message"]
        assert str(port) not in response.text  # where the store is stays in the server log
    ctx.close()
