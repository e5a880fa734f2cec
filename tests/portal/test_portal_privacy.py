"""Private training in the portal (real Chromium, real `veil serve`): tick "Differential privacy" with ε = 8 in
the training form, and read on the iteration page the ε spent, how it was spent and the membership-inference
audit."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import dataset_path
from tests.portal.harness import TRAINING, Server, sign_in

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def tagged_project(veil_server: Server) -> Iterator[tuple[httpx.Client, str]]:
    client = httpx.Client(base_url=veil_server.url + TRAINING, headers=veil_server.admin_headers, timeout=60)
    project_id = client.post("/projects", params={"name": "Portal privacy"}).json()["id"]
    for tag in ("ants", "bees"):
        tag_id = client.post(f"/projects/{project_id}/tags", params={"name": tag}).json()["id"]
        photos = sorted((dataset_path("ants-bees") / "train" / tag).glob("*.jpg"))[10:16]
        files = [("imageData", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
        assert client.post(f"/projects/{project_id}/images", params={"tagIds": tag_id}, files=files).status_code == 200
    try:
        yield client, project_id
    finally:
        client.delete(f"/projects/{project_id}")
        client.close()


def test_private_training_from_the_form_shows_epsilon_and_audit(
    page: Page, veil_server: Server, tagged_project: tuple[httpx.Client, str]
) -> None:
    client, project_id = tagged_project
    sign_in(page, veil_server, veil_server.admin_key)
    page.locator("h1:has-text('Projects')").wait_for()
    page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/train")
    expect(page.locator("#dp-epsilon")).to_be_hidden()
    page.check("#dp-toggle")
    page.fill("#dp-epsilon", "8")
    page.click("#train-button")

    row = page.locator("#iterations tbody tr").first
    expect(row).to_contain_text("Completed", timeout=240_000)
    (iteration,) = client.get(f"/projects/{project_id}/iterations").json()
    row.locator("a", has_text="Details").click()
    spent = page.locator("#dp-spent")
    expect(spent).to_contain_text(re.compile(r"ε = (8\.00|7\.9\d)"), timeout=30_000)
    expect(spent).to_contain_text("PRV")
    expect(page.locator("#audit-attacks")).to_contain_text("LiRA")
    expect(page.locator("#audit-attacks")).to_contain_text("loss threshold")
    expect(page.locator("#audit-verdict")).to_contain_text(re.compile(r"leak|guessing"))
    report = httpx.get(
        f"{veil_server.url}/veil/v1/projects/{project_id}/iterations/{iteration['id']}/privacy",
        headers=veil_server.admin_headers,
    ).json()
    assert report["differentialPrivacy"]["targetEpsilon"] == 8
