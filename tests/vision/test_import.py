"""`veil import` loads a local dataset into a real running Veil (server subprocess, key made by the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from tests.conftest import dataset_path
from tests.support.live_server import make_server

TRAINING = "/customvision/v3.3/training"
OBJECT_DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"


def test_import_folder_dataset_into_a_project(tmp_path: Path) -> None:
    source = dataset_path("ants-bees") / "train"
    data = tmp_path / "photos"
    for tag in ("ants", "bees"):
        (data / tag).mkdir(parents=True)
        for photo in sorted((source / tag).glob("*.jpg"))[:3]:
            (data / tag / photo.name).symlink_to(photo)
    server = make_server(tmp_path)
    server.start()
    try:
        key = server.create_key("admin")
        with httpx.Client(base_url=server.endpoint, headers={"Training-Key": key}, timeout=60) as http:
            project = http.post(f"{TRAINING}/projects", params={"name": "imported"}).json()
            veil = [sys.executable, "-c", "from veil.cli import main; main()"]
            args = ["import", str(data), "--project", project["id"], "--url", server.endpoint, "--key", key]
            done = subprocess.run([*veil, *args], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            assert "imported 6 of 6 images, 2 tags" in done.stdout
            tags = {t["name"]: t for t in http.get(f"{TRAINING}/projects/{project['id']}/tags").json()}
            assert set(tags) == {"ants", "bees"} and all(t["imageCount"] == 3 for t in tags.values())
            refused = subprocess.run([*veil, *args[:-1], "wrong-key"], capture_output=True, text=True, timeout=300)
            assert refused.returncode != 0 and "Veil answered 401" in refused.stderr
    finally:
        server.stop()


def test_import_voc_detection_dataset_uploads_every_region(tmp_path: Path) -> None:
    from veil.vision.datasets import load_dataset

    source = dataset_path("raccoon")
    data = tmp_path / "raccoons"
    (data / "annotations").mkdir(parents=True)
    (data / "images").mkdir()
    for xml in sorted((source / "annotations").glob("*.xml"))[:4]:
        (data / "annotations" / xml.name).write_bytes(xml.read_bytes())
        image = source / "images" / xml.with_suffix(".jpg").name
        (data / "images" / image.name).symlink_to(image)
    expected = {s.key: s.boxes for s in load_dataset(data, "voc")}
    assert sum(len(boxes) for boxes in expected.values()) >= 4
    server = make_server(tmp_path)
    server.start()
    try:
        key = server.create_key("admin")
        with httpx.Client(base_url=server.endpoint, headers={"Training-Key": key}, timeout=60) as http:
            project = http.post(
                f"{TRAINING}/projects", params={"name": "raccoons", "domainId": OBJECT_DETECTION_DOMAIN}
            ).json()
            veil = [sys.executable, "-c", "from veil.cli import main; main()"]
            args = ["import", str(data), "--project", project["id"], "--url", server.endpoint, "--key", key]
            done = subprocess.run([*veil, *args], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-2000:]
            assert "imported 4 of 4 images, 1 tags" in done.stdout
            images = http.get(f"{TRAINING}/projects/{project['id']}/images/tagged", params={"take": 50}).json()
            assert len(images) == 4
            # Images are matched by their set of regions: Custom Vision's image view carries no file name.
            uploaded = sorted(_rounded(image["regions"]) for image in images)
            wanted = sorted(_rounded([vars(box) for box in boxes]) for boxes in expected.values())
            assert uploaded == wanted
            assert all(r["tagName"] == "raccoon" for image in images for r in image["regions"])
    finally:
        server.stop()


def _rounded(regions: list[dict]) -> list[tuple[float, ...]]:  # type: ignore[type-arg]
    return sorted(tuple(round(r[k], 3) for k in ("left", "top", "width", "height")) for r in regions)
