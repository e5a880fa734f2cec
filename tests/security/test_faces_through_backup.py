"""An anonymizing project used through the official SDK keeps no original face on the backup path either: the
photos go in through `create_images_from_files`, a backup is taken and restored into a new data directory, and
every image fetched back from the restored Veil still has each WIDER ground-truth face hidden (>= 70 % of the
box's pixels changed), while the backup file itself holds no slice of any original photo."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from tests.privacy.conftest import wider_faces
from tests.store.conftest import Served, veil

PHOTOS = ("20_Family_Group_Family_Group_20_108.jpg", "19_Couple_Couple_19_106.jpg")


def _face_share_changed(original: np.ndarray, kept: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    difference = np.abs(original[y1:y2, x1:x2].astype(np.int16) - kept[y1:y2, x1:x2].astype(np.int16)).max(axis=2)
    return float((difference > 4).mean())  # beyond re-encoding noise (see tests/api/test_customvision.py)


def test_faces_stay_hidden_through_backup_and_restore(tmp_path: Path) -> None:
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from azure.cognitiveservices.vision.customvision.training.models import ImageFileCreateBatch, ImageFileCreateEntry
    from msrest.authentication import ApiKeyCredentials

    source_db, target_db = tmp_path / "data" / "veil.db", tmp_path / "restored" / "veil.db"
    photos = {name: wider_faces(name, min_side=40) for name in PHOTOS}
    source = Served(tmp_path / "data", f"sqlite:///{source_db}").start()
    try:
        trainer = CustomVisionTrainingClient(source.url, ApiKeyCredentials(in_headers={"Training-key": source.key}))
        project = trainer.create_project("Faces")
        policy_url = f"{source.url}/veil/v1/projects/{project.id}/privacy"
        headers = {"Training-Key": source.key}
        policy = httpx.get(policy_url, headers=headers).json()
        assert httpx.put(policy_url, headers=headers, json={**policy, "anonymize_on_ingest": True}).status_code == 200
        entries = [ImageFileCreateEntry(name=name, contents=path.read_bytes()) for name, (path, _) in photos.items()]
        created = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        assert created.is_batch_successful
        ids = {entry.source_url: entry.image.id for entry in created.images}
        backup_file = tmp_path / "faces.backup"
        made = veil("backup", "-o", str(backup_file), data_dir=source.data_dir, database_url=f"sqlite:///{source_db}")
        assert made.returncode == 0, made.stderr
    finally:
        source.stop()

    content = backup_file.read_bytes()
    for path, _faces in photos.values():
        original = path.read_bytes()
        assert all(original[i : i + 64] not in content for i in range(1000, len(original) - 64, 4096))

    target = tmp_path / "restored"
    target.mkdir(mode=0o700)
    shutil.copy2(source.data_dir / "master.key", target / "master.key")  # the live key store, brought along
    shutil.copytree(source.data_dir / "project-keys", target / "project-keys")
    restored = veil("restore", str(backup_file), data_dir=target, database_url=f"sqlite:///{target_db}")
    assert restored.returncode == 0, restored.stderr
    made_key = veil("keys", "create", "--role", "trainer", data_dir=target, database_url=f"sqlite:///{target_db}")
    served = Served(target, f"sqlite:///{target_db}", key=made_key.stdout.strip().splitlines()[-1]).start()
    try:
        with served.client() as client:
            for name, (path, faces) in photos.items():
                response = client.get(f"/veil/v1/projects/{project.id}/images/{ids[name]}/data")
                assert response.status_code == 200, response.text
                kept = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
                original = np.asarray(Image.open(path).convert("RGB"))
                assert kept.shape == original.shape
                for face in faces:
                    share = _face_share_changed(original, kept, (face.x1, face.y1, face.x2, face.y2))
                    assert share >= 0.70, f"{name}: only {share:.0%} of the face at {face} is hidden after restore"
    finally:
        served.stop()
