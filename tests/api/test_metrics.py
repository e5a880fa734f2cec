"""`GET /metrics` of the API: request latency by route template (never by the ids in a URL), job queue depth read
from the shared queue, blob store errors and the model's own prediction time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from veil.api.app import create_app
from veil.config import get_settings
from veil.jobs import queue
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key

TRAINING = "/customvision/v3.3/training"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], AppContext]]:
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data"))
    key = bootstrap_admin_key(ctx)
    assert key
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, {"Training-Key": key}, ctx
    ctx.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_request_latency_is_labelled_by_route_template(
    served: tuple[TestClient, dict[str, str], AppContext],
) -> None:
    client, headers, _ctx = served
    before = _samples(client.get("/metrics").text)
    project_id = client.post(f"{TRAINING}/projects", params={"name": "m"}, headers=headers).json()["id"]
    for _ in range(3):
        assert client.get(f"{TRAINING}/projects/{project_id}", headers=headers).status_code == 200
    assert client.get(f"{TRAINING}/projects/{project_id}").status_code == 401  # no key

    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    assert project_id not in response.text  # ids never become label values
    after = _samples(response.text)
    route = f"{TRAINING}/projects/{{projectId}}"
    name = "veil_http_request_duration_seconds_count"
    ok = _value(after, name, method="GET", route=route, status="200") - _value(
        before, name, method="GET", route=route, status="200"
    )
    assert ok == 3
    assert _value(after, name, method="GET", route=route, status="401") >= 1
    assert _value(after, name, method="POST", route=f"{TRAINING}/projects", status="200") >= 1


def test_job_queue_depth_and_store_metrics(served: tuple[TestClient, dict[str, str], AppContext]) -> None:
    client, _headers, ctx = served
    queue.enqueue(ctx.db, "train", project_id=None, payload={})
    queue.enqueue(ctx.db, "train", project_id=None, payload={})
    queue.enqueue(ctx.db, "export", project_id=None, payload={})
    text = client.get("/metrics").text
    samples = _samples(text)
    assert _value(samples, "veil_jobs", kind="train", status="queued") == 2
    assert _value(samples, "veil_jobs", kind="export", status="queued") == 1
    assert _value(samples, "veil_jobs", kind="train", status="running") == 0
    assert "veil_blob_store_errors_total" in text or "veil_blob_store_errors" in text
    assert "veil_prediction_model_seconds" in text
