"""A project with `anonymize_on_ingest` never stores a raw face: a real `veil serve`, a real upload, then
the data directory is scanned and the stored image read back."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.privacy.conftest import hidden, read_rgb, wider_faces
from tests.support.live_server import VeilServer, make_server

TRAINING = "/customvision/v3.3/training"
PHOTO = "20_Family_Group_Family_Group_20_108.jpg"  # seven people, faces 73-94 px


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VeilServer]:
    veil = make_server(tmp_path_factory.mktemp("privacy-ingest"))
    veil.start()
    veil.keys["admin"] = veil.create_key("admin")
    yield veil
    veil.stop()


def _client(server: VeilServer) -> httpx.Client:
    return httpx.Client(base_url=server.endpoint, headers={"Training-Key": server.keys["admin"]}, timeout=180)


def _upload(http: httpx.Client, name: str, policy: dict[str, object] | None, photo: bytes) -> tuple[str, str]:
    project = http.post(f"{TRAINING}/projects", params={"name": name}).json()
    if policy is not None:
        response = http.put(f"/veil/v1/projects/{project['id']}/privacy", json=policy)
        assert response.status_code == 200, response.text
    response = http.post(
        f"{TRAINING}/projects/{project['id']}/images",
        content=photo,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    return project["id"], response.json()["images"][0]["image"]["id"]


def _stored_pixels(http: httpx.Client, project_id: str, image_id: str) -> np.ndarray:
    response = http.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data")
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))


def _files(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in root.rglob("*") if p.is_file()]


def test_policy_on_stores_no_raw_face_anywhere(server: VeilServer) -> None:
    path, faces = wider_faces(PHOTO, 40)
    photo, original = path.read_bytes(), read_rgb(path)
    with _client(server) as http:
        policy = {"anonymize_on_ingest": True, "targets": ["faces"], "method": "solid"}
        project_id, image_id = _upload(http, "policy-on", policy, photo)
        stored = _stored_pixels(http, project_id, image_id)
        # Control: the same photo in a project without the policy keeps its faces (the check can fail).
        plain_project, plain_image = _upload(http, "policy-off", None, photo)
        plain = _stored_pixels(http, plain_project, plain_image)
    assert stored.shape == original.shape
    for face in faces:
        rows, cols = face.inner()
        assert hidden(original, stored, face) and stored[rows, cols].max() < 40, f"face {face} reached the store"
        assert not hidden(original, plain, face) and plain[rows, cols].max() > 100
    # On disk: only ciphertext. No copy of the upload, no decodable image, no raw face pixels in any file.
    upload_piece = photo[len(photo) // 2 : len(photo) // 2 + 64]
    face_rows = [original[r, face.inner()[1]].tobytes() for face in faces for r in (face.inner()[0].start,)]
    for data in _files(server.data_dir):
        assert upload_piece not in data
        assert b"JFIF" not in data and b"\x89PNG" not in data
        assert not any(row in data for row in face_rows)
