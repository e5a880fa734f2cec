"""API fixtures: a real Veil on a fresh SQLite data dir, served in-process, with an admin and a predictor key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from veil.api.app import create_app
from veil.config import get_settings
from veil.security.auth import OPERATOR
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key, create_api_key

TRAINING = "/customvision/v3.3/training"
PREDICTION = "/customvision/v3.0/prediction"


@dataclass
class Api:
    ctx: AppContext
    client: TestClient
    admin_key: str
    predictor_key: str

    @property
    def training(self) -> dict[str, str]:
        return {"Training-Key": self.admin_key}

    def new_project(self, name: str = "hardening") -> str:
        response = self.client.post(f"{TRAINING}/projects", params={"name": name}, headers=self.training)
        assert response.status_code == 200, response.text
        project_id: str = response.json()["id"]
        return project_id


@contextmanager
def open_api(data_dir: Path, **settings: object) -> Iterator[Api]:
    """A Veil on a fresh SQLite data dir with these settings, an admin and a predictor key."""
    ctx = AppContext.open(get_settings(data_dir=data_dir, **settings))
    admin_key = bootstrap_admin_key(ctx)
    assert admin_key
    with ctx.db.session() as session:
        _row, predictor_key = create_api_key(session, OPERATOR, "predictor", None, None, "fuzz predictor")
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
            yield Api(ctx, client, admin_key, predictor_key)
    finally:
        ctx.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with open_api(tmp_path / "data") as opened:
        yield opened
