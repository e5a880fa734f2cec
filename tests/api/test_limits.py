"""Resources are bounded before work is done: bodies refused by size before they are read or parsed (413),
field lengths and list sizes (400), `$filter` size (400) — each with a message saying the limit."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.api.conftest import TRAINING, Api, open_api

from veil.config import MB
from veil.services.labels import FILTER_SCAN_PAGE


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


def _tiny_pngs(count: int) -> list[str]:
    """`count` different 16x16 PNGs, base64 (distinct bytes: the same bytes twice are one image)."""
    encoded = []
    for i in range(count):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (i % 256, (i * 7) % 256, 128)).save(buffer, format="PNG")
        encoded.append(base64.b64encode(buffer.getvalue()).decode())
    return encoded


def test_a_filter_scan_stops_at_its_time_budget(tmp_path: Path) -> None:
    # A budget of 0 s: the scan may read one page (FILTER_SCAN_PAGE images), never a second one.
    with open_api(tmp_path / "data", filter_time_budget_s=0.0) as api:
        project_id = api.new_project()
        images = _tiny_pngs(FILTER_SCAN_PAGE + 1)
        for start in range(0, len(images), 64):
            batch = {"images": [{"contents": c} for c in images[start : start + 64]], "metadata": {"site": "a"}}
            response = api.client.post(
                f"{TRAINING}/projects/{project_id}/images/files", json=batch, headers=api.training
            )
            assert response.status_code == 200, response.text[:300]
        listing = f"{TRAINING}/projects/{project_id}/images"
        # A page the first scan page fills is answered (the scan stops once it has skip + take matches) ...
        response = api.client.get(listing, params={"$filter": "site eq 'a'", "take": 10}, headers=api.training)
        assert response.status_code == 200 and len(response.json()) == 10, response.text[:300]
        # ... a count needs the whole project: past the budget it is a 400 saying so, not a long scan.
        for route, params in [(f"{listing}/count", {}), (listing, {"skip": FILTER_SCAN_PAGE})]:
            response = api.client.get(route, params={"$filter": "site eq 'a'", **params}, headers=api.training)
            assert response.status_code == 400, response.text[:300]
            assert f"budget after {FILTER_SCAN_PAGE} images" in response.json()["message"]
        # Without a filter the same count is exact (all 65 were stored).
        response = api.client.get(f"{listing}/count", headers=api.training)
        assert response.json() == FILTER_SCAN_PAGE + 1
