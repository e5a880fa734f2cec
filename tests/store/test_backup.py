"""`veil backup` while `veil serve` takes uploads, then `veil restore` into an empty data directory: every image
comes back byte for byte, the backup file holds nothing readable, and a wrong master key is refused in one line.
On SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import tarfile
import threading
from pathlib import Path

import pytest
from tests.conftest import dataset_path
from tests.store.conftest import TRAINING, Served, veil

from veil.security.crypto import MasterKey, write_key_file

IMAGE_MARKERS = (b"JFIF\x00", b"Exif\x00\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")


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
    shutil.copy2(source.data_dir / "master.key", target / "master.key")  # the operator brings the key store
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


def _admin_key(data_dir: Path, database_url: str) -> str:
    made = veil("keys", "create", "--role", "admin", data_dir=data_dir, database_url=database_url)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]
