"""The store through Veil's API, on SQLite and PostgreSQL: nothing readable at rest, tampering detected,
crypto-shredding on project delete."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from tests.support.in_process import TRAINING, Api

from veil.security.auth import OPERATOR
from veil.security.crypto import IntegrityError, KeyShredded
from veil.services import images as image_service
from veil.services.errors import NotFound, Unavailable
from veil.services.vault import Vault
from veil.store.models import Image as ImageRow
from veil.store.models import Project

# Markers of readable images: signatures a random ciphertext does not produce by chance.
IMAGE_MARKERS = (b"\x89PNG\r\n\x1a\n", b"JFIF\x00", b"Exif\x00\x00", b"GIF89a", b"GIF87a")


def _slices(data: bytes, size: int = 48, count: int = 24) -> list[bytes]:
    step = max(1, (len(data) - size) // count)
    return [data[i : i + size] for i in range(0, len(data) - size, step)][:count]


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_no_plaintext_at_rest(api: Api, photos: list[Path], data_dir: Path) -> None:
    project_id = api.create_project()
    tag_id = api.create_tag(project_id, "insect")
    image_ids = api.upload(project_id, photos[:8], tag_id)
    stored = [api.image_data(project_id, image_id).content for image_id in image_ids]
    assert all(Image.open(io.BytesIO(data)).size for data in stored)  # what Veil keeps is a real image...
    api.ctx.db.checkpoint()

    needles = [s for data in [p.read_bytes() for p in photos[:8]] + stored for s in _slices(data)]
    files = _files_under(data_dir)
    assert len(api.ctx.blobs.blob_ids(project_id)) == 8
    for path in files:  # ...but nothing under the data directory (blobs, database, WAL, key) is readable
        content = path.read_bytes()
        assert not content.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF")), path
        for marker in IMAGE_MARKERS:
            assert marker not in content, f"{marker!r} found in {path}"
        for needle in needles:
            assert needle not in content, f"a slice of an uploaded image is readable in {path}"


def test_stored_image_has_no_metadata(api: Api, tmp_path: Path) -> None:
    project_id = api.create_project()
    photo = Image.new("RGB", (64, 48), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° to display
    exif[0x010F] = "SecretCamera"
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", exif=exif, comment=b"gps near home")
    [image_id] = _upload_bytes(api, project_id, buffer.getvalue())
    data = api.image_data(project_id, image_id).content
    stored = Image.open(io.BytesIO(data))
    assert stored.size == (48, 64)  # orientation applied...
    assert b"SecretCamera" not in data and b"gps near home" not in data
    assert not stored.getexif() and "comment" not in stored.info  # ...then every tag dropped


def _upload_bytes(api: Api, project_id: str, data: bytes) -> list[str]:
    headers = {**api.headers, "Content-Type": "application/octet-stream"}
    response = api.client.post(f"{TRAINING}/projects/{project_id}/images", content=data, headers=headers)
    assert response.status_code == 200, response.text
    return [r["image"]["id"] for r in response.json()["images"]]


def _blob_path(api: Api, project_id: str, image_id: str) -> Path:
    with api.ctx.db.session() as session:
        row = session.get(ImageRow, image_id)
        assert row is not None
        return api.ctx.blobs.path(project_id, row.blob_id)


def test_flipped_byte_fails_with_integrity_error(api: Api, photos: list[Path]) -> None:
    project_id = api.create_project()
    first, second = api.upload(project_id, photos[:2])
    path = _blob_path(api, project_id, first)
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0x40
    path.write_bytes(bytes(tampered))

    response = api.image_data(project_id, first)
    assert response.status_code == 500
    assert response.json()["code"] == "StorageIntegrityError"
    assert "integrity" in response.json()["message"]
    with pytest.raises(IntegrityError, match="modified"):
        image_service.read_image_bytes(api.ctx, OPERATOR, project_id, first)
    assert api.image_data(project_id, second).status_code == 200  # the others still read
    assert api.client.get("/healthz").status_code == 200


def test_swapped_blobs_fail_with_integrity_error(api: Api, photos: list[Path]) -> None:
    project_a, project_b = api.create_project("a"), api.create_project("b")
    a1, a2 = api.upload(project_a, photos[:2])
    [b1] = api.upload(project_b, photos[2:3])
    path_a1, path_a2, path_b1 = (_blob_path(api, p, i) for p, i in [(project_a, a1), (project_a, a2), (project_b, b1)])
    blob_a1, blob_a2 = path_a1.read_bytes(), path_a2.read_bytes()
    path_a1.write_bytes(blob_a2)  # two records of one project swap their blobs
    path_a2.write_bytes(blob_a1)
    for image_id in (a1, a2):
        assert api.image_data(project_a, image_id).json()["code"] == "StorageIntegrityError"
    shutil.copyfile(path_b1, path_a1)  # a blob of another project (another key) moved in
    with pytest.raises(IntegrityError):
        image_service.read_image_bytes(api.ctx, OPERATOR, project_a, a1)


def test_delete_project_shreds_key_then_blobs_and_rows(api: Api, photos: list[Path], data_dir: Path) -> None:
    doomed, kept = api.create_project("doomed"), api.create_project("kept")
    tag_id = api.create_tag(doomed, "ant")
    doomed_images = api.upload(doomed, photos[:3], tag_id)
    [kept_image] = api.upload(kept, photos[3:4])
    with api.ctx.db.session() as session:
        project = session.get(Project, doomed)
        assert project is not None and project.wrapped_dek is not None
        wrapped_dek, kek_id = project.wrapped_dek, project.kek_id
    backup = [api.ctx.blobs.path(doomed, b).read_bytes() for b in api.ctx.blobs.blob_ids(doomed)]

    assert api.client.delete(f"{TRAINING}/projects/{doomed}", headers=api.headers).status_code == 204

    assert not (data_dir / "blobs" / doomed).exists() and api.ctx.blobs.blob_ids(doomed) == set()
    with api.ctx.db.session() as session:
        assert session.get(Project, doomed) is None
        assert not session.scalars(select(ImageRow).where(ImageRow.project_id == doomed)).all()
    if api.ctx.db.engine.dialect.name == "sqlite":  # the wrapped key is gone from the files, not just the row
        for path in _files_under(data_dir):
            assert wrapped_dek not in path.read_bytes(), f"wrapped DEK still readable in {path}"
    assert kek_id and backup  # a copy of the blobs and of the wrapped DEK from before the delete...
    with pytest.raises(KeyShredded):  # ...opens with nothing that still exists: the project's key was destroyed
        api.ctx.keyring.unwrap(doomed, wrapped_dek, kek_id)
    base = f"{TRAINING}/projects/{doomed}"
    image_data = f"/veil/v1/projects/{doomed}/images/{doomed_images[0]}/data"
    for path in [base, f"{base}/images", f"{base}/tags", image_data]:
        response = api.client.get(path, headers=api.headers)
        assert response.status_code == 404, path
        assert response.json()["code"] == "NotFoundProject"
    assert api.image_data(kept, kept_image).status_code == 200  # the other project is unharmed


def test_shredded_project_cannot_be_decrypted_even_before_its_rows_go(api: Api, photos: list[Path]) -> None:
    project_id = api.create_project()
    api.upload(project_id, photos[:1])
    with api.ctx.db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        project.wrapped_dek = None  # the first step of a deletion, as if the process died right after it
        project.deleting = True
    with api.ctx.db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        with pytest.raises(Unavailable, match="data key was destroyed"):
            Vault(api.ctx).dek(project)
    with pytest.raises(NotFound):
        image_service.read_image_bytes(api.ctx, OPERATOR, project_id, "any")


def test_image_bytes_at_three_sizes_and_every_read_audited(api: Api, photos: list[Path]) -> None:
    project_id = api.create_project()
    [image_id] = api.upload(project_id, photos[:1])
    sizes = {}
    for size in ("original", "resized", "thumbnail"):
        response = api.client.get(
            f"/veil/v1/projects/{project_id}/images/{image_id}/data", params={"size": size}, headers=api.headers
        )
        assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
        sizes[size] = Image.open(io.BytesIO(response.content)).size
    assert max(sizes["thumbnail"]) <= 256 < max(sizes["original"])
    bad = api.client.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data?size=huge", headers=api.headers)
    assert bad.status_code == 400 and bad.json()["code"] == "BadRequest"
    events = api.client.get("/veil/v1/audit", headers=api.headers).json()
    assert [e["resourceIds"] for e in events if e["action"] == "image.read"] == [[project_id, image_id]] * 3
