"""A project that requires anonymization on ingest: faces are hidden before anything is encrypted or stored."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.support.in_process import TRAINING, Api

Box = tuple[int, int, int, int]


def _largest_face() -> tuple[Path, Box, list[Box]]:
    """A WIDER FACE couple photo, its largest not-close-up face and all its faces (x, y, w, h)."""
    root = dataset_path("faces-det")
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().splitlines()
    best: tuple[int, str, Box, list[Box]] | None = None
    i = 0
    while i < len(lines):
        name, count = lines[i].strip(), int(lines[i + 1])
        boxes = [tuple(int(v) for v in line.split()[:4]) for line in lines[i + 2 : i + 2 + max(count, 1)]]
        i += 2 + max(count, 1)
        path = root / "WIDER_val" / "images" / name
        if not name.startswith("19--Couple") or not path.exists():
            continue
        with Image.open(path) as image:
            area = image.width * image.height
        for box in boxes:  # a clear face that leaves most of the photo as background
            if box[2] >= 60 and box[2] * box[3] <= area // 12 and (best is None or box[2] * box[3] > best[0]):
                best = (box[2] * box[3], name, box, boxes)  # type: ignore[assignment]
    assert best is not None
    return root / "WIDER_val" / "images" / best[1], best[2], best[3]


def test_faces_hidden_before_storage(api: Api, database_url: str) -> None:
    if database_url.startswith("postgresql"):
        pytest.skip("the ingest hook runs before the database is involved; covered on SQLite")
    photo, (x, y, w, h), faces = _largest_face()
    project_id = api.create_project("faces")
    policy = {"anonymize_on_ingest": True, "method": "solid", "targets": ["faces"]}
    response = api.client.put(f"/veil/v1/projects/{project_id}/privacy", json=policy, headers=api.headers)
    assert response.status_code == 200, response.text

    [image_id] = api.upload(project_id, [photo])

    image = api.client.get(f"{TRAINING}/projects/{project_id}/images", headers=api.headers).json()[0]
    assert image["id"] == image_id and image["metadata"]["veil.anonymized"] == "solid"
    stored = np.asarray(Image.open(io.BytesIO(api.image_data(project_id, image_id).content)).convert("L"), float)
    original = np.asarray(Image.open(photo).convert("L"), float)
    face = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert stored[face].std() < 0.25 * original[face].std()  # the face became a flat fill...
    background = np.ones_like(original, bool)
    for fx, fy, fw, fh in faces:  # every face, with a margin for the detector's box
        background[max(0, fy - fh // 2) : fy + 3 * fh // 2, max(0, fx - fw // 2) : fx + 3 * fw // 2] = False
    changed = np.abs(stored - original) > 40
    assert changed[background].mean() < 0.01  # ...while the rest of the photo is intact
