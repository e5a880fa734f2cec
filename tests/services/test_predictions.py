"""The prediction request path after its CPU diet, through two real `veil serve` replicas of one data directory
(two processes, each with its own per-process look-up caches): answers equal the exported model run on the previous
preprocessing (decode with a metadata-free copy, RGB conversion, interleaved normalization), and a revoked key, an
unpublished or moved publish name takes effect on the other replica with the very next request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from tests.conftest import dataset_path
from tests.support.http_helpers import (
    PREDICTION,
    TRAINING,
    SmallProject,
    create_ants_bees,
    ok,
    start_training,
    wait_iteration,
)
from tests.support.in_process import free_port
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import photos

from veil.config import get_settings
from veil.images.ingest import IngestLimits, decode_image
from veil.services.context import AppContext
from veil.services.vault import Vault
from veil.store.models import Iteration, Project
from veil.vision.runtime import ExportedModel, fit_to_input

NAME = "fast-path"


@dataclass
class Replicas:
    a: VeilServer  # the session's server (runs the worker)
    b: VeilServer  # a second `veil serve --no-worker` on the same data directory
    project: SmallProject
    iteration_id: str

    def predict(self, server: VeilServer, data: bytes, key: str, name: str = NAME) -> httpx.Response:
        return httpx.post(
            f"{server.endpoint}{PREDICTION}/{self.project.id}/classify/iterations/{name}/image/nostore",
            content=data,
            headers={"Prediction-Key": key, "Content-Type": "application/octet-stream"},
            timeout=60,
        )

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.a.endpoint, headers={"Training-Key": self.a.keys["admin"]}, timeout=60)

    def publish(self, name: str) -> None:
        with self.admin() as http:
            url = f"{TRAINING}/projects/{self.project.id}/iterations/{self.iteration_id}/publish"
            ok(http.post(url, params={"publishName": name, "predictionId": "ignored"}))


@pytest.fixture(scope="module")
def replicas(veil_server: VeilServer) -> Iterator[Replicas]:
    with httpx.Client(
        base_url=veil_server.endpoint, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60
    ) as http:
        project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="fast path")
        iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
        assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
    second = VeilServer(
        data_dir=veil_server.data_dir, port=free_port(), env=veil_server.env, serve_args=("--no-worker",)
    )
    second.start()
    try:
        replicas = Replicas(veil_server, second, project, iteration["id"])
        replicas.publish(NAME)
        yield replicas
    finally:
        second.stop()


def _val(folder: str, count: int) -> list[bytes]:
    return [p.read_bytes() for p in photos(dataset_path("ants-bees") / "val" / folder, count)]


def _previous_path(model: ExportedModel, data: bytes) -> dict[str, float]:
    """What the service computed before: `decode_image` (metadata-free copy), `.convert("RGB")`, resize, then
    normalization on the interleaved float image, transposed afterwards."""
    rgb = np.asarray(decode_image(data, IngestLimits())[0].convert("RGB"))
    fitted, _ = fit_to_input(rgb, model.info)
    pixels = fitted.astype(np.float32)
    normalized = (pixels - np.asarray(model.info.mean, np.float32)) / np.asarray(model.info.std, np.float32)
    batch = np.ascontiguousarray(normalized.transpose(2, 0, 1))[None]
    return dict(zip(model.info.labels, (float(p) for p in model.run(batch)[0][0]), strict=True))


def test_answers_equal_the_exported_model_on_the_previous_preprocessing(replicas: Replicas) -> None:
    ctx = AppContext.open(get_settings(data_dir=replicas.a.data_dir), migrate=False)
    try:
        with ctx.db.read_session() as session:
            project = session.get(Project, replicas.project.id)
            iteration = session.get(Iteration, replicas.iteration_id)
            assert project is not None and iteration is not None and iteration.model_blob_id
            model = ExportedModel(Vault(ctx).get(project, iteration.model_blob_id))
    finally:
        ctx.close()
    key = replicas.a.keys["predictor"]
    for server in (replicas.a, replicas.b):
        for data in _val("ants", 3) + _val("bees", 3):
            answer = ok(replicas.predict(server, data, key))
            assert isinstance(answer, dict)
            served = {p["tagName"]: p["probability"] for p in answer["predictions"]}
            expected = _previous_path(model, data)
            assert served.keys() == expected.keys()
            assert max(abs(served[tag] - expected[tag]) for tag in expected) < 1e-4, (served, expected)


def test_a_revoked_key_is_refused_by_the_other_replica_at_once(replicas: Replicas) -> None:
    data = _val("bees", 1)[0]
    with replicas.admin() as http:
        created = ok(http.post("/veil/v1/keys", json={"role": "predictor", "name": "revoked at once"}), 201)
        assert isinstance(created, dict)
        for _ in range(3):  # both replicas have seen the key (and the publish name) succeed
            for server in (replicas.a, replicas.b):
                assert replicas.predict(server, data, created["key"]).status_code == 200
        revoked = http.delete(f"/veil/v1/keys/{created['id']}")
        assert revoked.status_code == 204, revoked.text
    for server in (replicas.b, replicas.a):
        refused = replicas.predict(server, data, created["key"])
        assert refused.status_code == 401, refused.text


def test_unpublish_and_a_moved_name_take_effect_on_the_other_replica_at_once(replicas: Replicas) -> None:
    data, key = _val("ants", 1)[0], replicas.a.keys["predictor"]
    for server in (replicas.a, replicas.b):
        assert replicas.predict(server, data, key).status_code == 200
    with replicas.admin() as http:
        url = f"{TRAINING}/projects/{replicas.project.id}/iterations/{replicas.iteration_id}/publish"
        assert http.delete(url).status_code == 204
    try:
        for server in (replicas.b, replicas.a):
            gone = replicas.predict(server, data, key)
            assert gone.status_code == 404 and gone.json()["code"] == "NotFoundIteration", gone.text
        replicas.publish(f"{NAME}-moved")  # the same iteration under another name
        assert replicas.predict(replicas.b, data, key, name=f"{NAME}-moved").status_code == 200
        assert replicas.predict(replicas.b, data, key).status_code == 404
    finally:
        replicas.publish(NAME)
    assert replicas.predict(replicas.b, data, key).status_code == 200
