"""A real `veil serve` subprocess: master-key rotation while serving, and SIGKILL in the middle of uploads."""

from __future__ import annotations

import io
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import create_engine, select
from tests.support.in_process import TRAINING, VEIL_BIN, Server

from veil.security.crypto import IntegrityError, MasterKey, ProjectKeyDir, SoftwareKeyProvider
from veil.store.models import Project


@pytest.fixture
def server(data_dir: Path, database_url: str) -> Iterator[Server]:
    running = Server(data_dir=data_dir, database_url=database_url).start()
    assert running.admin_key, "first start must print an admin key"
    yield running
    running.stop()


def _client(server: Server) -> httpx.Client:
    assert server.admin_key
    return httpx.Client(base_url=server.url, headers={"Training-Key": server.admin_key}, timeout=60)


def _setup_project(client: httpx.Client, name: str) -> tuple[str, str]:
    project_id = client.post(f"{TRAINING}/projects", params={"name": name}).json()["id"]
    tag_id = client.post(f"{TRAINING}/projects/{project_id}/tags", params={"name": "insect"}).json()["id"]
    return project_id, tag_id


def _upload_one(client: httpx.Client, project_id: str, tag_id: str, photo: Path) -> str:
    response = client.post(
        f"{TRAINING}/projects/{project_id}/images",
        params={"tagIds": tag_id},
        content=photo.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["images"][0]["image"]["id"])


def _read(client: httpx.Client, project_id: str, image_id: str) -> bytes:
    response = client.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data")
    assert response.status_code == 200, response.text
    return response.content


def _wrapped_deks(database_url: str) -> dict[str, bytes]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Project.id, Project.wrapped_dek)).all()
        return {project_id: wrapped for project_id, wrapped in rows if wrapped is not None}
    finally:
        engine.dispose()


def test_rotate_master_key_while_serving(server: Server, photos: list[Path], data_dir: Path, database_url: str) -> None:
    client = _client(server)
    projects = [_setup_project(client, name) for name in ("ants", "bees")]
    images = {(p, _upload_one(client, p, t, photo)) for (p, t), photo in zip(projects * 2, photos[:4], strict=True)}
    before = {key: _read(client, *key) for key in images}
    key_file = data_dir / "master.key"
    old_key = key_file.read_text()

    rotated = subprocess.run(  # a second process next to the server, as an operator runs it
        [VEIL_BIN, "keys", "rotate-master", "--data-dir", str(data_dir)],
        env=server.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert rotated.returncode == 0, rotated.stderr
    assert "2 project key(s) re-wrapped" in rotated.stdout
    assert key_file.read_text() != old_key and key_file.stat().st_mode & 0o777 == 0o600
    assert not (data_dir / "master.key.next").exists()
    assert {key: _read(client, *key) for key in images} == before  # the running server follows the rotation
    new_project, new_tag = _setup_project(client, "after rotation")
    assert _read(client, new_project, _upload_one(client, new_project, new_tag, photos[4]))

    project_keys = ProjectKeyDir(data_dir / "project-keys")
    old, new = (SoftwareKeyProvider(MasterKey.from_base64(k), project_keys) for k in (old_key, key_file.read_text()))
    deks = _wrapped_deks(database_url)
    assert len(deks) == 3
    for project_id, wrapped in deks.items():
        assert new.unwrap(project_id, wrapped)
        with pytest.raises(IntegrityError):
            old.unwrap(project_id, wrapped)  # the old key file opens nothing, even with the project keys

    server.stop()
    key_file.write_text(old_key)  # an operator restoring the old key file by mistake
    refused = subprocess.run(
        [VEIL_BIN, "serve", "--port", str(server.port), "--data-dir", str(data_dir), "--no-worker"],
        env=server.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "wrapped by master key" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_sigkill_during_uploads_loses_nothing_acknowledged(
    request: pytest.FixtureRequest, photos: list[Path], data_dir: Path, database_url: str
) -> None:
    if database_url.startswith("postgresql"):  # checked before a server starts: this costs nothing
        pytest.skip("crash consistency is Veil's ordering (blob fsync → row commit), tested on SQLite, the default")
    server: Server = request.getfixturevalue("server")
    client = _client(server)
    project_id, tag_id = _setup_project(client, "crash")
    acknowledged: list[str] = []
    stop = threading.Event()

    def upload_forever() -> None:
        with _client(server) as uploader:
            for i in range(10_000):
                if stop.is_set():
                    return
                try:
                    acknowledged.append(_upload_one(uploader, project_id, tag_id, photos[i % len(photos)]))
                except (httpx.HTTPError, AssertionError):
                    return  # the server died under us: this upload was never acknowledged

    thread = threading.Thread(target=upload_forever)
    thread.start()
    while len(acknowledged) < 6:
        assert thread.is_alive(), "uploads stopped before the crash"
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.3))  # land somewhere inside the next upload
    server.kill()
    stop.set()
    thread.join(30)
    acked = set(acknowledged)

    server.start()  # same data directory, same database
    client = _client(server)
    listed = client.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 256}).json()
    listed_ids = {image["id"] for image in listed}
    assert acked <= listed_ids  # every acknowledged upload survived
    assert len(listed_ids) <= len(acked) + 1  # at most the one in flight, and only if it committed
    for image_id in listed_ids:  # and whatever is visible is whole
        with Image.open(io.BytesIO(_read(client, project_id, image_id))) as image:
            image.load()
    assert not list((data_dir / "blobs").rglob(".tmp-*")), "a partial write survived the restart"
    count = client.get(f"{TRAINING}/projects/{project_id}/images/count").json()
    assert count == len(listed_ids)
