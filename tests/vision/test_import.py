"""`veil import` loads a local dataset into a real running Veil (server subprocess, key made by the CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from tests.compat.conftest import make_server
from tests.conftest import dataset_path

TRAINING = "/customvision/v3.3/training"


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
