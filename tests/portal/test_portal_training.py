"""The portal's main path in real Chromium against a real `veil serve`: train (with the network chosen in the
form), follow the iteration to Completed, read its headline metrics, publish it, and quick-test an unseen photo.

Tagged photos are uploaded through the REST API (tested elsewhere); every step after that is a click."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import dataset_path
from tests.portal.harness import Server, ants_bees_project, open_portal, training_client

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


@pytest.fixture
def tagged_project(veil_server: Server) -> Iterator[tuple[httpx.Client, str]]:
    """An ants/bees project with the minimum five tagged photos per tag."""
    client = training_client(veil_server)
    project_id = ants_bees_project(client, "Portal training", per_tag=5)
    try:
        yield client, project_id
    finally:
        client.delete(f"/projects/{project_id}")
        client.close()


def test_train_publish_and_quick_test(
    page: Page, veil_server: Server, tagged_project: tuple[httpx.Client, str]
) -> None:
    client, project_id = tagged_project
    open_portal(page, veil_server, f"#/projects/{project_id}/train")
    expect(page.locator("#readiness")).to_contain_text("ants: 5 image(s)")
    page.select_option("select[name=backbone]", "efficientnet-lite0")
    page.click("#train-button")

    row = page.locator("#iterations tbody tr").first
    expect(row).to_contain_text("Completed", timeout=180_000)  # the page polls the job until it ends
    expect(row.locator("td.num").first).to_contain_text("%")  # headline precision from the held-out images
    (iteration,) = client.get(f"/projects/{project_id}/iterations").json()
    assert iteration["status"] == "Completed"

    row.locator("a", has_text="Details").click()
    page.locator("#publish input[name=publishName]").fill("portal-model")
    page.locator("#publish button", has_text="Publish").click()
    expect(page.locator("#predict-example")).to_contain_text("portal-model")
    assert client.get(f"/projects/{project_id}/iterations").json()[0]["publishName"] == "portal-model"

    page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/test")
    unseen_bee = sorted((dataset_path("ants-bees") / "val" / "bees").glob("*.jpg"))[0]
    page.set_input_files("#quicktest-file", str(unseen_bee))
    expect(page.locator("#predictions li").first.locator(".tag-name")).to_have_text("bees")
    # "keep the image" was left unchecked: the quick test stored nothing
    stored = client.post(f"/projects/{project_id}/predictions/query", json={}).json()
    assert stored["results"] == []
