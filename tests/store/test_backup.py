"""`veil backup` while `veil serve` takes uploads, then `veil restore` into an empty data directory: every image
comes back byte for byte, the backup file holds nothing readable, and a wrong master key is refused in one line.
On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import tarfile
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import dataset_path
from tests.store.conftest import TRAINING, Served, veil

from veil.api.app import create_app
from veil.config import get_settings
from veil.security.crypto import KeyShredded, MasterKey, write_key_file
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key
from veil.store.models import Project

# Whole headers, never 3-4 byte prefixes: a short marker turns up in megabytes of random ciphertext by chance.
IMAGE_MARKERS = (
    b"JFIF\x00",
    b"Exif\x00\x00",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe0\x00\x10JFIF",
    b"\xff\xd8\xff\xdb\x00\x43",
)


@pytest.fixture(scope="module")
def photos() -> list[Path]:
    files = sorted(p for p in dataset_path("ants-bees").rglob("*.jpg") if p.stat().st_size > 20_000)
    assert len(files) >= 16
    return files[:16]


def _upload(client: object, project_id: str, tag_id: str, photo: Path) -> str:
    response = client.post(  # type: ignore[attr-defined]
        f"{TRAINING}/projects/{project_id}/images", params={"tagIds": tag_id},
        files=[("imageData", (photo.name, photo.read_bytes(), "image/jpeg"))],
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.json()["images"][0]["image"]["id"])


def _images(served: Served, project_id: str) -> dict[str, bytes]:
    with served.client() as client:
        listed = client.get(f"{TRAINING}/projects/{project_id}/images/tagged", params={"take": 256})
        assert listed.status_code == 200, listed.text
        found = {}
        for image in listed.json():
            data = client.get(f"/veil/v1/projects/{project_id}/images/{image['id']}/data")
            assert data.status_code == 200, f"image {image['id']} does not open: {data.text}"
            found[image["id"]] = data.content
        return found


def test_backup_while_serving_restores_every_image(
    tmp_path: Path, database_url: str, second_database_url: str, photos: list[Path]
) -> None:
    source = Served(tmp_path / "data", database_url).start()
    try:
        with source.client() as client:
            project_id = client.post(f"{TRAINING}/projects", params={"name": "insects"}).json()["id"]
            tag_id = client.post(f"{TRAINING}/projects/{project_id}/tags", params={"name": "bee"}).json()["id"]
            for photo in photos[:6]:
                _upload(client, project_id, tag_id, photo)

        stop = threading.Event()

        def keep_uploading() -> None:  # an active user while the operator takes the backup
            with source.client() as client:
                for photo in photos[6:]:
                    if stop.is_set():
                        return
                    _upload(client, project_id, tag_id, photo)

        uploader = threading.Thread(target=keep_uploading)
        uploader.start()
        backup_file = tmp_path / "veil.backup"
        made = veil("backup", "-o", str(backup_file), data_dir=source.data_dir, database_url=database_url)
        stop.set()
        uploader.join()
        assert made.returncode == 0, made.stderr
        assert "encrypted blob(s)" in made.stdout
        at_backup = _images(source, project_id)
    finally:
        source.stop()

    assert backup_file.stat().st_mode & 0o777 == 0o600
    content = backup_file.read_bytes()
    for marker in IMAGE_MARKERS:  # nothing decrypted: no image header, no slice of a photo
        assert marker not in content, marker
    for photo in photos:
        data = photo.read_bytes()
        assert data[2000:2064] not in content
    with tarfile.open(backup_file) as tar:
        names = tar.getnames()
    assert not any("master.key" in n or "project-keys" in n for n in names)  # no key material in a backup

    # Restore into an empty data directory: without the key store, refused in one line, nothing written.
    target = tmp_path / "restored"
    refused = veil("restore", str(backup_file), data_dir=target, database_url=second_database_url)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "master key" in refused.stderr
    wrong = tmp_path / "wrong"
    write_key_file(wrong / "master.key", MasterKey.generate())
    refused = veil("restore", str(backup_file), data_dir=wrong, database_url=second_database_url)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "wrapped by master key" in refused.stderr
    assert not (wrong / "blobs").exists()

    target.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(source.data_dir / "master.key", target / "master.key")
    partial = veil("restore", str(backup_file), data_dir=target, database_url=second_database_url)
    assert partial.returncode == 2 and "holds none of this backup's 1 project keys" in partial.stderr
    shutil.copytree(source.data_dir / "project-keys", target / "project-keys")  # the operator brings the key store
    restored = veil("restore", str(backup_file), data_dir=target, database_url=second_database_url)
    assert restored.returncode == 0, restored.stderr
    again = veil("restore", str(backup_file), data_dir=target, database_url=second_database_url)
    assert again.returncode == 2 and "empty" in again.stderr

    served = Served(target, second_database_url, key=_admin_key(target, second_database_url)).start()
    try:
        restored_images = _images(served, project_id)
    finally:
        served.stop()
    assert len(restored_images) >= 6  # at least what was there before the backup started...
    for image_id, data in restored_images.items():  # ...every one consistent: row and blob, byte for byte
        assert at_backup[image_id] == data


def _admin_key(data_dir: Path, database_url: str, **env: str) -> str:
    made = veil("keys", "create", "--role", "admin", data_dir=data_dir, database_url=database_url, **env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


def test_a_project_deleted_after_the_backup_stays_unrecoverable_when_it_is_restored(
    tmp_path: Path, database_url: str, second_database_url: str, photos: list[Path]
) -> None:
    keys = tmp_path / "keys"  # the live key store, apart from the data (as an HSM would be)
    provider = {"VEIL_KEY_PROVIDER": f"file://{keys}"}
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", database_url=database_url, **_lower(provider)))
    key = bootstrap_admin_key(ctx)
    assert key is not None
    headers = {"Training-Key": key}
    with TestClient(create_app(ctx)) as client:
        kept, kept_images = _project_with_images(client, headers, "kept", photos[:2])
        doomed, _ = _project_with_images(client, headers, "doomed", photos[2:4])
        kept_bytes = {i: client.get(f"/veil/v1/projects/{kept}/images/{i}/data", headers=headers).content
                      for i in kept_images}  # fmt: skip
        with ctx.db.read_session() as session:
            row = session.get(Project, doomed)
            assert row is not None and row.wrapped_dek and row.kek_id
            doomed_dek_in_backup, kek_id = row.wrapped_dek, row.kek_id

        backup_file = tmp_path / "veil.backup"
        made = veil("backup", "-o", str(backup_file), data_dir=tmp_path / "data", database_url=database_url, **provider)
        assert made.returncode == 0, made.stderr
        assert client.delete(f"{TRAINING}/projects/{doomed}", headers=headers).status_code == 204
    ctx.close()
    assert not (keys / "project-keys" / f"{doomed}.key").exists()  # the delete destroyed its key in the key store

    restored = veil("restore", str(backup_file), data_dir=tmp_path / "restored", database_url=second_database_url,
                    **provider)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "1 project(s) deleted after the backup stay unrecoverable" in restored.stdout and doomed in restored.stdout

    ctx = AppContext.open(get_settings(data_dir=tmp_path / "restored", database_url=second_database_url,
                                       **_lower(provider)))  # fmt: skip
    try:
        with pytest.raises(KeyShredded):  # the backup's copy of its wrapped DEK + the master key: nothing opens
            ctx.keyring.unwrap(doomed, doomed_dek_in_backup, kek_id)
        with ctx.db.read_session() as session:
            assert session.get(Project, doomed) is None
        assert ctx.blobs.blob_ids(doomed) == set()
        key = bootstrap_admin_key(ctx) or _admin_key(tmp_path / "restored", second_database_url, **provider)
        with TestClient(create_app(ctx)) as client:
            headers = {"Training-Key": key}
            for image_id, data in kept_bytes.items():  # the other project came back whole
                response = client.get(f"/veil/v1/projects/{kept}/images/{image_id}/data", headers=headers)
                assert response.status_code == 200 and response.content == data
            assert client.get(f"{TRAINING}/projects/{doomed}", headers=headers).status_code == 404
    finally:
        ctx.close()


def _lower(env: dict[str, str]) -> dict[str, str]:
    return {name.removeprefix("VEIL_").lower(): value for name, value in env.items()}


def _project_with_images(
    client: TestClient, headers: dict[str, str], name: str, files: list[Path]
) -> tuple[str, list[str]]:
    project_id = client.post(f"{TRAINING}/projects", params={"name": name}, headers=headers).json()["id"]
    parts = [("imageData", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
    response = client.post(f"{TRAINING}/projects/{project_id}/images", files=parts, headers=headers)
    assert response.status_code == 200, response.text
    return project_id, [r["image"]["id"] for r in response.json()["images"]]
