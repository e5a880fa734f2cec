"""Two Veil nodes in network namespaces the test makes (each `veil serve --no-worker` + `veil worker`), sharing
only PostgreSQL (through its Unix socket) and a SeaweedFS S3 store (on the host side of the bridge): a project
uploaded through node A trains on a worker and predicts through node B; nothing lands on either node's disk; with
node B gone, node A still answers everything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.cluster.harness import (
    ClusterNetwork,
    PgSchema,
    VeilProcess,
    master_key,
    pg_schema,
    pg_unreachable_reason,
)
from tests.conftest import dataset_path
from tests.store.seaweedfs import SeaweedFS, unavailable_reason

TRAINING = "/customvision/v3.3/training"
PREDICTION = "/customvision/v3.0/prediction"
PER_CLASS = 6


LEASE_SECONDS = 6


@dataclass
class Cluster:
    net: ClusterNetwork
    storage: SeaweedFS
    prefix: str
    serve: list[VeilProcess]
    workers: list[VeilProcess]
    data_dirs: list[Path]
    env: dict[str, str]
    schema: PgSchema

    def start_worker(self, node: int, hostname: str | None = None) -> VeilProcess:
        env = {**self.env, "VEIL_DATA_DIR": str(self.data_dirs[node])}
        worker = VeilProcess.worker(env, netns=self.net.nodes[node].name, hostname=hostname).start()
        self.workers.append(worker)
        return worker

    def client(self, node: int, key: str | None = None) -> httpx.Client:
        url = self.serve[node].url
        assert url is not None
        key = key or self.serve[0].admin_key
        assert key, "node A printed no admin key"
        return httpx.Client(base_url=url, headers={"Training-Key": key, "Prediction-Key": key}, timeout=60)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    for reason in (ClusterNetwork.unavailable_reason(), unavailable_reason(), pg_unreachable_reason()):
        if reason:
            pytest.skip(reason)
    with ClusterNetwork.create(2) as net, pg_schema() as schema:
        storage = SeaweedFS.start(tmp_path / "seaweedfs", ip=net.host_ip)
        prefix = "two-nodes"
        shared = {
            "VEIL_DATABASE_URL": schema.socket_url,
            "VEIL_BLOB_URL": f"s3://{storage.bucket}/{prefix}",
            "VEIL_MASTER_KEY": master_key(),
            "VEIL_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            **storage.env(),
        }
        serve: list[VeilProcess] = []
        workers: list[VeilProcess] = []
        data_dirs = [tmp_path / f"node-{i}" for i in range(2)]
        try:
            for node, data_dir in zip(net.nodes, data_dirs, strict=True):
                env = {**shared, "VEIL_DATA_DIR": str(data_dir)}
                serve.append(VeilProcess.serve(env, node.ip, 8080, netns=node.name, extra=("--no-worker",)).start())
            yield Cluster(net, storage, prefix, serve, workers, data_dirs, shared, schema)
        finally:
            for process in [*workers, *serve]:
                process.stop()
            storage.stop()


def _ok(response: httpx.Response) -> dict:  # type: ignore[type-arg]
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()  # type: ignore[no-any-return]


def _upload_ants_bees(http: httpx.Client) -> str:
    root = dataset_path("ants-bees") / "train"
    project_id = _ok(http.post(f"{TRAINING}/projects", params={"name": "two nodes"}))["id"]
    for tag, folder in (("ant", "ants"), ("bee", "bees")):
        tag_id = _ok(http.post(f"{TRAINING}/projects/{project_id}/tags", params={"name": tag}))["id"]
        files = sorted((root / folder).glob("*.jpg"))[:PER_CLASS]
        parts = [("imageData", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
        result = _ok(http.post(f"{TRAINING}/projects/{project_id}/images", params={"tagIds": tag_id}, files=parts))
        assert result["isBatchSuccessful"], result
    return str(project_id)


def _wait_trained(http: httpx.Client, project_id: str, iteration_id: str, timeout_s: float = 300) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while True:
        iteration = _ok(http.get(f"{TRAINING}/projects/{project_id}/iterations/{iteration_id}"))
        if iteration["status"] != "Training":
            return iteration
        assert time.monotonic() < deadline, f"iteration still training after {timeout_s:.0f} s"
        time.sleep(1)


def test_upload_through_a_predict_through_b_then_lose_b(cluster: Cluster) -> None:
    cluster.start_worker(0)
    cluster.start_worker(1)
    a, b = cluster.client(0), cluster.client(1)
    project_id = _upload_ants_bees(a)
    # Node B sees the project and its images at once: the same database and the same blob store.
    assert _ok(b.get(f"{TRAINING}/projects/{project_id}/images/count")) == 2 * PER_CLASS
    images = _ok(b.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 1}))
    data = b.get(f"/veil/v1/projects/{project_id}/images/{images[0]['id']}/data")
    assert data.status_code == 200 and data.content.startswith(b"\xff\xd8\xff")

    iteration = _ok(a.post(f"{TRAINING}/projects/{project_id}/train", params={"backbone": "lite0"}))
    done = _wait_trained(b, project_id, iteration["id"])
    workers_log = "".join(worker.log() for worker in cluster.workers)
    assert done["status"] == "Completed", f"{done.get('trainingErrorDetails')}: {workers_log}"
    _ok(a.post(f"{TRAINING}/projects/{project_id}/iterations/{iteration['id']}/publish",
               params={"publishName": "prod", "predictionId": "ignored"}))  # fmt: skip

    # A replica (re)started after the publish loads the model from the blob store before any request asks.
    cluster.serve[1].stop()
    cluster.serve[1].start()
    deadline = time.monotonic() + 60
    while "model cache: 1 published model(s) loaded" not in cluster.serve[1].log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "model cache: 1 published model(s) loaded from the blob store" in cluster.serve[1].log()

    held_out = sorted((dataset_path("ants-bees") / "val" / "bees").glob("*.jpg"))[:3]
    for photo in held_out:  # node B loads the model (from S3) it never trained
        url = f"{PREDICTION}/{project_id}/classify/iterations/prod/image/nostore"
        result = _ok(b.post(url, content=photo.read_bytes(), headers={"Content-Type": "application/octet-stream"}))
        assert {p["tagName"] for p in result["predictions"]} == {"ant", "bee"}

    # The official SDK, as a Custom Vision user runs it, against either node.
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    key = cluster.serve[0].admin_key
    for node in cluster.serve:
        trainer = CustomVisionTrainingClient(node.url, ApiKeyCredentials(in_headers={"Training-key": key}))
        assert project_id in {project.id for project in trainer.get_projects()}
        predictor = CustomVisionPredictionClient(node.url, ApiKeyCredentials(in_headers={"Prediction-key": key}))
        result = predictor.classify_image_with_no_store(project_id, "prod", held_out[0].read_bytes())
        assert {p.tag_name for p in result.predictions} == {"ant", "bee"}

    # Nothing another node needs is on a node's disk: no blob anywhere under the data directories.
    for data_dir in cluster.data_dirs:
        assert not [p for p in data_dir.rglob("*") if p.is_file() and "blobs" in p.parts]
    assert len(cluster.storage.keys(f"{cluster.prefix}/{project_id}/")) > 2 * PER_CLASS  # images + model artifacts

    # Node B goes away (server and worker, kill -9): node A still answers everything, nothing is lost.
    cluster.serve[1].kill()
    cluster.workers[1].kill()
    with pytest.raises(httpx.HTTPError):
        b.get("/healthz", timeout=3)
    assert _ok(a.get(f"{TRAINING}/projects/{project_id}/images/count")) == 2 * PER_CLASS
    url = f"{PREDICTION}/{project_id}/classify/iterations/prod/image/nostore"
    result = _ok(a.post(url, content=held_out[0].read_bytes(), headers={"Content-Type": "application/octet-stream"}))
    assert result["predictions"]


def _job_row(schema: PgSchema, job_iteration: str) -> tuple[str, str | None, int]:
    import psycopg

    url = schema.tcp_url.replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, claimed_by, attempts FROM jobs WHERE payload::text LIKE %s", (f"%{job_iteration}%",)
        ).fetchone()
    assert row is not None
    return row[0], row[1], int(row[2])


def _trained_events(schema: PgSchema, iteration_id: str) -> int:
    import psycopg

    with psycopg.connect(schema.tcp_url.replace("+psycopg", "")) as conn:
        rows = conn.execute("SELECT resource_ids::text FROM audit_events WHERE action = 'iteration.trained'")
        return sum(1 for (ids,) in rows if iteration_id in ids)


def test_a_training_whose_node_dies_is_retried_on_the_other_after_its_lease(cluster: Cluster) -> None:
    """Node B (a host of its own, so only its lease can tell it is gone) dies mid-training: once its lease
    lapses, node A's worker takes the job over and the iteration completes — once — and predicts."""
    cluster.start_worker(1, hostname="veil-node-b")
    a = cluster.client(0)
    project_id = _upload_ants_bees(a)
    iteration = _ok(a.post(f"{TRAINING}/projects/{project_id}/train", params={"backbone": "lite0"}))
    job_url = f"/veil/v1/projects/{project_id}/iterations/{iteration['id']}/job"
    deadline = time.monotonic() + 120
    while True:  # B's training process is under way (past its start-up)
        job = _ok(a.get(job_url))
        if job["status"] == "running" and job["percent"] > 0:
            break
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.3)
    status, claimed_by, attempts = _job_row(cluster.schema, iteration["id"])
    assert status == "running" and (claimed_by or "").startswith("veil-node-b:") and attempts == 1

    cluster.workers[0].kill()  # node B's worker and its training process, kill -9
    cluster.start_worker(0)  # node A's worker: B's job is not its to take until B's lease lapses
    done = _wait_trained(a, project_id, iteration["id"])
    workers_log = "".join(worker.log() for worker in cluster.workers)
    assert done["status"] == "Completed", f"{done.get('trainingErrorDetails')}: {workers_log}"

    job = _ok(a.get(job_url))
    assert job["status"] == "succeeded" and job["attempts"] == 2, job
    _status, claimed_by, _attempts = _job_row(cluster.schema, iteration["id"])
    assert not (claimed_by or "").startswith("veil-node-b:")
    assert "requeued" in workers_log and "veil-node-b" in workers_log
    assert len(_ok(a.get(f"{TRAINING}/projects/{project_id}/iterations"))) == 1
    assert _trained_events(cluster.schema, iteration["id"]) == 1  # exactly one completion
    photo = sorted((dataset_path("ants-bees") / "val" / "ants").glob("*.jpg"))[0]
    _ok(a.post(f"{TRAINING}/projects/{project_id}/iterations/{done['id']}/publish",
               params={"publishName": "retried", "predictionId": "ignored"}))  # fmt: skip
    url = f"{PREDICTION}/{project_id}/classify/iterations/retried/image/nostore"
    assert _ok(a.post(url, content=photo.read_bytes(), headers={"Content-Type": "application/octet-stream"}))[
        "predictions"
    ]
