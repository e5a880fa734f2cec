"""Resources are bounded before work is done: bodies refused by size before they are read or parsed (413),
field lengths and list sizes (400), `$filter` size (400) — each with a message saying the limit."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from tests.api.conftest import TRAINING, Api

from veil.config import MB


def test_declared_oversized_json_image_batch_is_413_before_reading(api: Api) -> None:
    project_id = api.new_project()
    body = b'{"images": [' + b" " * (33 * MB) + b"]}"
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/images/files",
        content=body,
        headers={**api.training, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert "at most" in response.json()["message"]


def test_streamed_body_without_length_is_cut_off_at_the_limit(api: Api) -> None:
    project_id = api.new_project()

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse by, the bytes are counted
        yield b'{"a": "'
        for _ in range(8):
            yield b"x" * MB

    response = api.client.patch(
        f"{TRAINING}/projects/{project_id}",
        content=chunks(),
        headers={**api.training, "Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "BadRequest" and response.json()["message"]  # the SDK's enum has no 413 code


def test_image_upload_limit_is_the_request_limit(api: Api) -> None:
    project_id = api.new_project()
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/images",
        content=b"\xff" * 64,
        headers={**api.training, "Content-Type": "application/octet-stream", "Content-Length": str(300 * MB)},
    )
    assert response.status_code == 413


def test_huge_project_description_is_400(api: Api) -> None:
    response = api.client.post(
        f"{TRAINING}/projects", params={"name": "p", "description": "d" * 4001}, headers=api.training
    )
    assert response.status_code == 400 and "description" in response.json()["message"]
    project_id = api.new_project()
    update = api.client.patch(
        f"{TRAINING}/projects/{project_id}", json={"description": "d" * 50_000}, headers=api.training
    )
    assert update.status_code == 400, update.text
    listed = api.client.get(f"{TRAINING}/projects", headers=api.training)
    assert len(listed.content) < 10_000


def test_privacy_targets_list_is_bounded(api: Api) -> None:
    project_id = api.new_project()
    policy = api.client.get(f"/veil/v1/projects/{project_id}/privacy", headers=api.training).json()
    policy["targets"] = ["faces"] * 100_000
    response = api.client.put(f"/veil/v1/projects/{project_id}/privacy", json=policy, headers=api.training)
    assert response.status_code == 400 and "targets" in response.json()["message"], response.text[:300]


@pytest.mark.parametrize(
    "expression",
    [" or ".join(f"k{i} eq 'v'" for i in range(2000)), "k eq '" + "v" * 5000 + "'"],
    ids=["2000 clauses", "5000 characters"],
)
def test_filter_complexity_is_400(api: Api, expression: str) -> None:
    project_id = api.new_project()
    response = api.client.get(
        f"{TRAINING}/projects/{project_id}/images", params={"$filter": expression}, headers=api.training
    )
    assert response.status_code == 400 and "at most" in response.json()["message"], response.text[:300]


def test_a_filter_within_bounds_still_works(api: Api) -> None:
    project_id = api.new_project()
    expression = " or ".join(f"k{i} eq 'v'" for i in range(32))
    response = api.client.get(
        f"{TRAINING}/projects/{project_id}/images", params={"$filter": expression}, headers=api.training
    )
    assert response.status_code == 200 and json.loads(response.content) == []
