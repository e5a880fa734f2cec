"""Veil on an S3 blob store (a real SeaweedFS): through the API only ciphertext reaches the bucket and nothing
the local disk; the blob id stays bound into each ciphertext (a swapped object is refused); deleting a project
destroys its key first, then its objects."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import dataset_path
from tests.store.seaweedfs import SeaweedFS

from veil.api.app import create_app
from veil.config import get_settings
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key
from veil.store.models import Image, Project
from veil.store.s3 import S3BlobStore

TRAINING = "/customvision/v3.3/training"
# Whole headers anywhere, short signatures only at the start: in the ~100 KB of ciphertext these four photos
# make, a 3-byte marker turns up by chance in about one run in thirty (CI failed once that way).
IMAGE_MARKERS = (b"JFIF\x00", b"Exif\x00\x00", b"\x89PNG\r\n\x1a\n")
IMAGE_STARTS = (b"\xff\xd8\xff", b"\x89PNG")


@pytest.fixture
def s3_api(s3_env: SeaweedFS, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], AppContext, str]]:
    prefix = f"api-{secrets.token_hex(4)}"
    settings = get_settings(data_dir=tmp_path / "data", blob_url=f"s3://{s3_env.bucket}/{prefix}")
    ctx = AppContext.open(settings)
    assert isinstance(ctx.blobs, S3BlobStore)
    key = bootstrap_admin_key(ctx)
    assert key is not None
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, {"Training-Key": key}, ctx, prefix
    ctx.close()


def _upload(client: TestClient, headers: dict[str, str], project_id: str, files: list[Path]) -> list[str]:
    parts = [("imageData", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
    response = client.post(f"{TRAINING}/projects/{project_id}/images", files=parts, headers=headers)
    assert response.status_code == 200, response.text
    return [r["image"]["id"] for r in response.json()["images"]]


def test_uploads_reach_the_bucket_as_ciphertext_only(
    s3_api: tuple[TestClient, dict[str, str], AppContext, str], s3_env: SeaweedFS, tmp_path: Path
) -> None:
    client, headers, _ctx, prefix = s3_api
    photos = sorted(dataset_path("ants-bees").rglob("*.jpg"))[:4]
    project_id = client.post(f"{TRAINING}/projects", params={"name": "s3 bees"}, headers=headers).json()["id"]
    image_ids = _upload(client, headers, project_id, photos)

    keys = s3_env.keys(f"{prefix}/{project_id}/")
    assert len(keys) == len(photos)
    s3 = s3_env.client()
    for key in keys:
        body = s3.get_object(Bucket=s3_env.bucket, Key=key)["Body"].read()
        assert not body.startswith(IMAGE_STARTS), f"{key} holds a readable image"
        assert not any(marker in body for marker in IMAGE_MARKERS), f"{key} holds an image header"
        for photo in photos:  # and no slice of any photo
            data = photo.read_bytes()
            assert all(data[i : i + 64] not in body for i in range(0, len(data) - 64, 997)), f"{key} holds a photo"
    assert not list((tmp_path / "data").rglob("blobs/*/*")), "a blob was written to the local disk"

    for image_id in image_ids:  # and Veil reads them back whole
        response = client.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data", headers=headers)
        assert response.status_code == 200 and response.content.startswith(b"\xff\xd8\xff")


def test_a_swapped_object_is_refused(
    s3_api: tuple[TestClient, dict[str, str], AppContext, str], s3_env: SeaweedFS
) -> None:
    """Associated data = project id + blob id: an operator with bucket access cannot move one image's
    ciphertext under another's name."""
    client, headers, ctx, prefix = s3_api
    photos = sorted(dataset_path("ants-bees").rglob("*.jpg"))[:2]
    project_id = client.post(f"{TRAINING}/projects", params={"name": "swap"}, headers=headers).json()["id"]
    first, second = _upload(client, headers, project_id, photos)
    with ctx.db.session() as session:
        blob_of = {image.id: image.blob_id for image in session.query(Image).filter(Image.project_id == project_id)}
    s3 = s3_env.client()
    source = f"{prefix}/{project_id}/{blob_of[first]}"
    target = f"{prefix}/{project_id}/{blob_of[second]}"
    s3.put_object(Bucket=s3_env.bucket, Key=target, Body=s3.get_object(Bucket=s3_env.bucket, Key=source)["Body"].read())

    good = client.get(f"/veil/v1/projects/{project_id}/images/{first}/data", headers=headers)
    swapped = client.get(f"/veil/v1/projects/{project_id}/images/{second}/data", headers=headers)
    assert good.status_code == 200
    assert swapped.status_code >= 500 and not swapped.content.startswith(b"\xff\xd8\xff")


def test_project_deletion_shreds_the_key_then_the_objects(
    s3_api: tuple[TestClient, dict[str, str], AppContext, str], s3_env: SeaweedFS
) -> None:
    client, headers, ctx, prefix = s3_api
    photos = sorted(dataset_path("ants-bees").rglob("*.jpg"))[:3]
    project_id = client.post(f"{TRAINING}/projects", params={"name": "shred"}, headers=headers).json()["id"]
    _upload(client, headers, project_id, photos)
    assert len(s3_env.keys(f"{prefix}/{project_id}/")) == 3

    assert client.delete(f"{TRAINING}/projects/{project_id}", headers=headers).status_code == 204
    assert s3_env.keys(f"{prefix}/{project_id}/") == []
    assert project_id not in ctx.blobs.project_ids()
    with ctx.db.session() as session:
        assert session.get(Project, project_id) is None
