"""Per-image crypto-shredding through Veil's API, on SQLite and PostgreSQL: someone who copied an image's blob and
its project's data key before the image was deleted (through the API, or by the retention purge) decrypts nothing
afterwards; the project's other images are untouched."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from tests.conftest import dataset_path
from tests.store.conftest import new_pg_schema

from veil.api.app import create_app
from veil.config import get_settings
from veil.jobs.retention import purge_expired
from veil.security.crypto import IntegrityError, KeyShredded, open_blob
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key
from veil.store.models import BlobKey, Image, Project, utcnow

TRAINING = "/customvision/v3.3/training"


@pytest.fixture(params=["sqlite", "postgresql"])
def veil(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AppContext, TestClient, dict[str, str]]]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'data' / 'veil.db'}"])
    else:
        urls = new_pg_schema()
    url = next(urls)
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", database_url=url))
    key = bootstrap_admin_key(ctx)
    assert key is not None
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield ctx, client, {"Training-Key": key}
    ctx.close()
    next(urls, None)  # drops the PostgreSQL schema


def _upload(client: TestClient, headers: dict[str, str], count: int) -> tuple[str, list[str]]:
    project_id = client.post(f"{TRAINING}/projects", params={"name": f"p{secrets.token_hex(3)}"}, headers=headers)
    project_id = project_id.json()["id"]
    photos = sorted(dataset_path("ants-bees").rglob("*.jpg"))[:count]
    parts = [("imageData", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    response = client.post(f"{TRAINING}/projects/{project_id}/images", files=parts, headers=headers)
    assert response.status_code == 200, response.text
    return project_id, [r["image"]["id"] for r in response.json()["images"]]


def _what_a_thief_copies(ctx: AppContext, project_id: str, image_id: str) -> tuple[str, bytes, bytes, bytes]:
    """The blob id, a copy of the blob, the project's data key, and the blob's wrapped key, before the delete."""
    with ctx.db.read_session() as session:
        project = session.get(Project, project_id)
        image = session.get(Image, image_id)
        assert project is not None and image is not None and project.wrapped_dek and project.kek_id
        key = session.get(BlobKey, image.blob_id)
        assert key is not None, "a new image is sealed under a key of its own"
        dek = ctx.keyring.unwrap(project_id, project.wrapped_dek, project.kek_id)
        return image.blob_id, ctx.blobs.get(project_id, image.blob_id), dek, key.wrapped_key


def _nothing_opens(ctx: AppContext, project_id: str, blob_id: str, blob: bytes, dek: bytes, wrapped: bytes) -> None:
    with pytest.raises(KeyShredded):
        open_blob(dek, project_id, blob_id, blob, None)
    with ctx.db.read_session() as session:
        assert session.get(BlobKey, blob_id) is None
        for other in session.scalars(select(BlobKey.wrapped_key)):  # no key left in the database opens it
            with pytest.raises(IntegrityError):
                open_blob(dek, project_id, blob_id, blob, other)
    if ctx.db.engine.dialect.name == "sqlite":  # secure_delete + checkpoint: no trace of the key in the files
        for path in ctx.settings.data_dir.rglob("*"):
            if path.is_file():
                assert wrapped not in path.read_bytes(), f"the deleted image's key is still in {path}"


def test_deleting_one_image_leaves_nothing_decryptable(veil: tuple[AppContext, TestClient, dict[str, str]]) -> None:
    ctx, client, headers = veil
    project_id, (doomed, kept) = _upload(client, headers, 2)
    blob_id, blob, dek, wrapped = _what_a_thief_copies(ctx, project_id, doomed)
    served = client.get(f"/veil/v1/projects/{project_id}/images/{doomed}/data", headers=headers).content
    assert open_blob(dek, project_id, blob_id, blob, wrapped) == served  # the copies do open... before the delete

    response = client.delete(f"{TRAINING}/projects/{project_id}/images", params={"imageIds": doomed}, headers=headers)
    assert response.status_code == 204, response.text

    _nothing_opens(ctx, project_id, blob_id, blob, dek, wrapped)
    assert client.get(f"/veil/v1/projects/{project_id}/images/{kept}/data", headers=headers).status_code == 200


def test_retention_purge_shreds_the_expired_image(veil: tuple[AppContext, TestClient, dict[str, str]]) -> None:
    ctx, client, headers = veil
    project_id, (expiring, kept) = _upload(client, headers, 2)
    blob_id, blob, dek, wrapped = _what_a_thief_copies(ctx, project_id, expiring)
    with ctx.db.session() as session:  # as if its retention ran out an hour ago
        session.execute(update(Image).where(Image.id == expiring).values(expires_at=utcnow() - timedelta(hours=1)))

    report = purge_expired(ctx.db, ctx.blobs)

    assert report.images == 1
    _nothing_opens(ctx, project_id, blob_id, blob, dek, wrapped)
    assert client.get(f"/veil/v1/projects/{project_id}/images/{kept}/data", headers=headers).status_code == 200
    assert os.environ.get("VEIL_KEY_PROVIDER") is None  # the default key store served this test
