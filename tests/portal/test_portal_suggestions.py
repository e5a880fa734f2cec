"""The smart labeler and region proposals in the portal, in real Chromium against a real `veil serve`: the Suggested
view of the untagged images shows the latest iteration's tags, a rejected suggestion leaves its image untagged,
"Accept all shown" labels the rest in bulk (right, on real photos); in the box editor, "Propose boxes" offers
class-agnostic boxes and one click adds one as a region.

The labelled photos and the training are set up through the REST API (tested elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.conftest import dataset_path
from tests.portal.harness import TRAINING, Server, ants_bees_project, sign_in, train_and_wait, training_client, upload

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"


@pytest.fixture
def trained(veil_server: Server) -> Iterator[tuple[httpx.Client, str, dict[str, str]]]:
    """Ants/bees: 6 labelled photos a class, a Regular iteration, then 6 unseen photos uploaded untagged;
    yields the client, the project and each untagged image's true tag id."""
    client = training_client(veil_server)
    project_id = ants_bees_project(client, "Smart labeler", per_tag=6)
    truth: dict[str, str] = {}
    train_and_wait(client, project_id, backbone="lite0")
    tags = {t["name"]: t["id"] for t in client.get(f"/projects/{project_id}/tags").json()}
    for tag in ("ants", "bees"):
        unseen = sorted((dataset_path("ants-bees") / "val" / tag).glob("*.jpg"))[:3]
        truth.update(dict.fromkeys(upload(client, project_id, unseen), tags[tag]))
    try:
        yield client, project_id, truth
    finally:
        client.delete(f"/projects/{project_id}")
        client.close()


def test_suggested_view_rejects_one_and_accepts_the_rest_in_bulk(
    page: Page, veil_server: Server, trained: tuple[httpx.Client, str, dict[str, str]]
) -> None:
    client, project_id, truth = trained
    sign_in(page, veil_server, veil_server.admin_key)
    page.locator("h1:has-text('Projects')").wait_for()
    page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/images")
    page.locator("button.seg", has_text="Suggested").click()

    tiles = page.locator("#image-grid .tile.suggested")
    expect(tiles).to_have_count(6, timeout=60_000)  # every untagged photo gets a suggestion at 50 %
    expect(page.locator("#suggest-bar")).to_contain_text("Iteration 1")
    expect(tiles.first.locator(".chip-suggested")).to_contain_text("%")

    rejected = tiles.first.get_attribute("data-image-id")
    tiles.first.locator(".tile-select").click()
    page.click("#reject-selected")
    expect(tiles).to_have_count(5)

    page.click("#accept-all")
    expect(page.locator("body")).to_contain_text("Labelled 5 image(s)")
    untagged = client.get(f"/projects/{project_id}/images", params={"taggingStatus": "Untagged"}).json()
    assert [image["id"] for image in untagged] == [rejected]  # the rejected one stays untagged
    labelled = client.get(f"/projects/{project_id}/images/id", params={"imageIds": ",".join(set(truth) - {rejected})})
    given = {image["id"]: [t["tagId"] for t in image["tags"]] for image in labelled.json()}
    assert all(len(tags) == 1 for tags in given.values())  # multiclass: the one most probable tag
    right = sum(given[image_id] == [truth[image_id]] for image_id in given)
    assert right >= 4, f"{right} of 5 accepted suggestions are right"


def test_box_editor_adds_a_proposed_box_in_one_click(page: Page, veil_server: Server) -> None:
    client = httpx.Client(base_url=veil_server.url + TRAINING, headers=veil_server.admin_headers, timeout=60)
    project_id = client.post("/projects", params={"name": "Proposals", "domainId": DETECTION_DOMAIN}).json()["id"]
    try:
        client.post(f"/projects/{project_id}/tags", params={"name": "person"}).raise_for_status()
        photo = sorted((dataset_path("pedestrians-det") / "PennFudanPed" / "PNGImages").glob("*.png"))[0]
        [image_id] = upload(client, project_id, [photo])
        sign_in(page, veil_server, veil_server.admin_key)
        page.locator("h1:has-text('Projects')").wait_for()
        page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/images")
        page.locator(f".tile[data-image-id='{image_id}'] .thumb").click()
        page.locator("#region-canvas").wait_for()
        page.click("#propose-boxes")
        proposals = page.locator("#proposal-list li[data-proposal]")
        expect(proposals.first).to_be_visible(timeout=30_000)
        offered = proposals.count()
        proposals.first.locator("button", has_text="Add").click()
        expect(page.locator("#region-list li[data-region-id]")).to_have_count(1)
        expect(proposals).to_have_count(offered - 1)
        [image] = client.get(f"/projects/{project_id}/images/id", params={"imageIds": image_id}).json()
        assert len(image["regions"]) == 1 and image["regions"][0]["tagName"] == "person"
        assert image["regions"][0]["width"] > 0.05  # a real box (a person in the photo), not a click-sized one
    finally:
        client.delete(f"/projects/{project_id}")
        client.close()
