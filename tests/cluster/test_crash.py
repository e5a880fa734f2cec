"""kill -9 of `veil serve` during uploads, on the local blob directory and on SeaweedFS (S3): every acknowledged
upload survives whole, and after the orphan sweep (`veil purge`) every stored blob is one a row names — no
ciphertext of an upload that never committed is left behind."""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.cluster.harness import VEIL_BIN, VeilProcess
from tests.conftest import dataset_path
from tests.store.seaweedfs import SeaweedFS, free_ports, unavailable_reason

from veil.config import get_settings
from veil.services.context import AppContext
from veil.store.sweep import referenced_blob_ids

TRAINING = "/customvision/v3.3/training"
KILLS = 3


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs-crash"))
    yield server
    server.stop()


@pytest.fixture(params=["file", "s3"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"VEIL_DATA_DIR": str(tmp_path / "data"), "VEIL_ORPHAN_GRACE_MINUTES": "0"}
    if request.param == "s3":
        storage: SeaweedFS = request.getfixturevalue("seaweedfs")
        env |= {**storage.env(), "VEIL_BLOB_URL": f"s3://{storage.bucket}/crash-{secrets.token_hex(4)}"}
    return env


def _upload_until_killed(server: VeilProcess, key: str, project_id: str, photos: list[Path]) -> set[str]:
    """Upload one photo per request until the server dies; returns the ids it acknowledged."""
    acknowledged: set[str] = set()

    def upload() -> None:
        with httpx.Client(base_url=server.url or "", headers={"Training-Key": key}, timeout=30) as http:
            for i in range(10_000):
                photo = photos[i % len(photos)]
                try:
                    response = http.post(
                        f"{TRAINING}/projects/{project_id}/images",
                        files=[("imageData", (photo.name, photo.read_bytes(), "image/jpeg"))],
                    )
                except httpx.HTTPError:
                    return  # the server died under this request: it was never acknowledged
                if response.status_code != 200:
                    return
                acknowledged.update(r["image"]["id"] for r in response.json()["images"])

    thread = threading.Thread(target=upload)
    thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(secrets.randbelow(300) / 1000)  # somewhere inside a later upload
    server.kill()
    thread.join(60)
    return acknowledged


def test_kill_during_uploads_then_sweep_leaves_only_referenced_blobs(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = sorted(p for p in dataset_path("ants-bees").rglob("*.jpg") if p.stat().st_size > 20_000)[:8]
    [port] = free_ports(1)
    server = VeilProcess.serve(env, "127.0.0.1", port, extra=("--no-worker",)).start()
    key = server.admin_key
    assert key, server.log()
    with httpx.Client(base_url=server.url or "", headers={"Training-Key": key}) as http:
        project_id = http.post(f"{TRAINING}/projects", params={"name": "crash"}).json()["id"]
    acknowledged: set[str] = set()
    for _ in range(KILLS):
        acknowledged |= _upload_until_killed(server, key, project_id, photos)
        server.start()
    try:
        with httpx.Client(base_url=server.url or "", headers={"Training-Key": key}, timeout=30) as http:
            images = http.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 256}).json()
            listed = {image["id"] for image in images}
            assert acknowledged <= listed  # no acknowledged upload lost
            for image_id in listed:  # and every visible one is whole
                data = http.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data")
                assert data.status_code == 200 and data.content.startswith(b"\xff\xd8\xff")
    finally:
        server.stop()

    purge = subprocess.run([VEIL_BIN, "purge"], env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert purge.returncode == 0 and "orphaned blob" in purge.stdout, purge.stderr
    for name, value in env.items():  # boto3 reads the AWS variables from the environment, as the server does
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    settings = get_settings(data_dir=Path(env["VEIL_DATA_DIR"]), blob_url=env.get("VEIL_BLOB_URL"))
    ctx = AppContext.open(settings, migrate=False)
    try:
        with ctx.db.read_session() as session:
            referenced = referenced_blob_ids(session, project_id)
        assert ctx.blobs.blob_ids(project_id) == referenced, "orphan ciphertext left after the sweep"
        if ctx.blobs.backend == "file":
            assert not list((Path(env["VEIL_DATA_DIR"]) / "blobs").rglob(".tmp-*"))
    finally:
        ctx.close()
