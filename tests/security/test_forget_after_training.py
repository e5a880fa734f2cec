"""Forget after training: with the policy `forget_images_after_training`, the images an iteration trained on are
shredded once it completes (rows, blob keys and files); the iteration keeps its model and metrics, and training
again is refused with the reason. A retention for training images gives each upload an expiry."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from tests.conftest import dataset_path
from tests.store.conftest import Served
from tests.support.http_helpers import create_ants_bees, start_training, wait_iteration

TRAINING = "/customvision/v3.3/training"
PREDICTION = "/customvision/v3.0/prediction"


def _rows(db: Path, query: str, *args: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(query, args).fetchall()


def test_training_images_are_shredded_once_an_iteration_trained_on_them(tmp_path: Path) -> None:
    db = tmp_path / "data" / "veil.db"
    served = Served(tmp_path / "data", f"sqlite:///{db}", worker=True).start()
    try:
        with httpx.Client(base_url=served.url, headers={"Training-Key": served.key}, timeout=60) as http:
            project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="forgetful")
            policy_url = f"/veil/v1/projects/{project.id}/privacy"
            policy = http.get(policy_url).json()
            assert policy["forget_images_after_training"] is False  # off unless asked
            saved = http.put(policy_url, json={**policy, "forget_images_after_training": True})
            assert saved.status_code == 200, saved.text
            images = _rows(db, "SELECT id, blob_id FROM images WHERE project_id = ?", project.id)
            assert len(images) == 10
            blobs = {blob_id: (tmp_path / "data" / "blobs" / project.id / str(blob_id)).read_bytes()
                     for _, blob_id in images}  # fmt: skip

            iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
            assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]

            assert http.get(f"{TRAINING}/projects/{project.id}/images/count").json() == 0
            for blob_id in blobs:  # row and key of every trained-on image went with the Completed status...
                assert _rows(db, "SELECT 1 FROM blob_keys WHERE blob_id = ?", str(blob_id)) == []
            files = [tmp_path / "data" / "blobs" / project.id / str(blob_id) for blob_id in blobs]
            deadline = time.monotonic() + 30
            while any(f.exists() for f in files) and time.monotonic() < deadline:
                time.sleep(0.2)  # ...the now unreadable files are removed right after that commit
            assert not any(f.exists() for f in files)
            performance = http.get(f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/performance")
            assert performance.status_code == 200 and performance.json()["perTagPerformance"]  # metrics kept
            published = http.post(f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/publish",
                                  params={"publishName": "kept", "predictionId": "x"})  # fmt: skip
            assert published.status_code == 200, published.text
            photo = sorted((dataset_path("ants-bees") / "val" / "bees").glob("*.jpg"))[0].read_bytes()
            answer = http.post(
                f"{PREDICTION}/{project.id}/classify/iterations/kept/image/nostore",
                content=photo,
                headers={"Prediction-Key": served.key, "Content-Type": "application/octet-stream"},
            )
            assert answer.status_code == 200 and answer.json()["predictions"]  # the model still works

            again = http.post(f"{TRAINING}/projects/{project.id}/train")
            assert again.status_code == 400
            assert again.json()["code"] == "BadRequestMultiClassClassificationTrainingValidationFailed"
            assert "forget_images_after_training" in again.json()["message"]
            assert "shredded 10 image(s)" in again.json()["message"]
    finally:
        served.stop()


def test_training_image_retention_gives_each_upload_an_expiry(tmp_path: Path) -> None:
    db = tmp_path / "data" / "veil.db"
    served = Served(tmp_path / "data", f"sqlite:///{db}").start()
    try:
        with httpx.Client(base_url=served.url, headers={"Training-Key": served.key}, timeout=60) as http:
            project = http.post(f"{TRAINING}/projects", params={"name": "kept a week"}).json()["id"]
            policy_url = f"/veil/v1/projects/{project}/privacy"
            policy = http.get(policy_url).json()
            assert http.put(policy_url, json={**policy, "training_image_retention_days": 7}).status_code == 200
            assert http.put(policy_url, json={**policy, "training_image_retention_days": 0}).status_code == 400
            photo = sorted((dataset_path("ants-bees") / "train" / "ants").glob("*.jpg"))[0]
            uploaded = http.post(f"{TRAINING}/projects/{project}/images", content=photo.read_bytes(),
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
            assert uploaded.status_code == 200, uploaded.text
        [(expires,)] = _rows(db, "SELECT expires_at FROM images WHERE project_id = ?", project)
        expiry = datetime.fromisoformat(str(expires)).replace(tzinfo=UTC)
        assert abs(expiry - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
    finally:
        served.stop()
