"""`veil keys rotate-master --to pkcs11://...`: a Veil whose keys lived in files moves them onto an HSM token
(SoftHSM2). Every image still opens through the new key store; the old key files open nothing any more."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import dataset_path
from tests.security.conftest import SoftHsm

from veil.api.app import create_app
from veil.config import get_settings
from veil.security.crypto import MasterKeyError
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key

TRAINING = "/customvision/v3.3/training"
VEIL_BIN = str(Path(sys.executable).with_name("veil"))


def _images(ctx: AppContext, key: str, project_ids: list[str]) -> dict[str, bytes]:
    headers = {"Training-Key": key}
    found = {}
    with TestClient(create_app(ctx)) as client:
        for project_id in project_ids:
            for image in client.get(f"{TRAINING}/projects/{project_id}/images/tagged", headers=headers).json():
                url = f"/veil/v1/projects/{project_id}/images/{image['id']}/data"
                found[image["id"]] = client.get(url, headers=headers).content
    return found


def test_file_keys_migrate_to_an_hsm_token(softhsm: SoftHsm, hsm_prefix: str, tmp_path: Path) -> None:
    data_dir, database_url = tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'veil.db'}"
    ctx = AppContext.open(get_settings(data_dir=data_dir, database_url=database_url))
    key = bootstrap_admin_key(ctx)
    assert key is not None
    headers = {"Training-Key": key}
    photos = sorted(dataset_path("ants-bees").rglob("*.jpg"))[:4]
    projects = []
    with TestClient(create_app(ctx)) as client:
        for name, files in (("ants", photos[:2]), ("bees", photos[2:])):
            project_id = client.post(f"{TRAINING}/projects", params={"name": name}, headers=headers).json()["id"]
            tag_id = client.post(f"{TRAINING}/projects/{project_id}/tags", params={"name": name}, headers=headers)
            parts = [("imageData", (p.name, p.read_bytes(), "image/jpeg")) for p in files]
            client.post(f"{TRAINING}/projects/{project_id}/images", params={"tagIds": tag_id.json()["id"]},
                        files=parts, headers=headers)  # fmt: skip
            projects.append(project_id)
    before = _images(ctx, key, projects)
    ctx.close()
    assert len(before) == 4 and len(list((data_dir / "project-keys").glob("*.key"))) == 2

    url = softhsm.url(hsm_prefix)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    migrated = subprocess.run(
        [VEIL_BIN, "keys", "rotate-master", "--to", url, "--data-dir", str(data_dir)],
        env={**env, "VEIL_DATABASE_URL": database_url, **softhsm.env()},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert "2 project key(s) re-wrapped, 2 left in the old key store destroyed" in migrated.stdout

    assert list((data_dir / "project-keys").glob("*.key")) == []  # the file key store holds nothing any more
    with pytest.raises(MasterKeyError, match="p11-"):  # the old master key file alone is refused, naming the HSM
        AppContext.open(get_settings(data_dir=data_dir, database_url=database_url))
    hsm = AppContext.open(
        get_settings(data_dir=data_dir, database_url=database_url, key_provider=url, pkcs11_pin=softhsm.pin)
    )
    try:
        assert hsm.keyring.primary_key_id.startswith("p11-")
        assert _images(hsm, key, projects) == before  # every image opens through the token, byte for byte
    finally:
        hsm.close()
