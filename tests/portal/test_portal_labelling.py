"""Labelling and administration in the portal, in real Chromium against a real `veil serve`: tag untagged
photos in bulk, draw a box on a detection image, change the privacy policy, create and revoke a key, read the
audit log.

Projects and images are set up through the REST API (that path is tested elsewhere); what is checked here is
that what a person does in the page reaches the server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import dataset_path
from tests.portal.harness import TRAINING, Server, open_portal, sign_in

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"  # Custom Vision's "General" object detection


class Api:
    """The few REST calls the tests use to set the scene and to check what the portal did."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url + TRAINING, headers=server.admin_headers, timeout=60)

    def create_project(self, name: str, domain_id: str | None = None) -> str:
        params = {"name": name, **({"domainId": domain_id} if domain_id else {})}
        response = self.client.post("/projects", params=params)
        response.raise_for_status()
        return str(response.json()["id"])

    def create_tag(self, project_id: str, name: str) -> str:
        response = self.client.post(f"/projects/{project_id}/tags", params={"name": name})
        response.raise_for_status()
        return str(response.json()["id"])

    def upload(self, project_id: str, photos: list[Path]) -> None:
        files = [("imageData", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
        response = self.client.post(f"/projects/{project_id}/images", files=files)
        assert response.status_code == 200, response.text

    def images(self, project_id: str) -> list[dict]:  # type: ignore[type-arg]
        response = self.client.get(f"/projects/{project_id}/images", params={"take": 50})
        response.raise_for_status()
        return list(response.json())

    def delete_project(self, project_id: str) -> None:
        self.client.delete(f"/projects/{project_id}")


@pytest.fixture
def api(veil_server: Server) -> Iterator[Api]:
    client = Api(veil_server)
    yield client
    client.client.close()


_open = open_portal


def test_bulk_tagging_untagged_photos(page: Page, veil_server: Server, api: Api) -> None:
    bees = sorted((dataset_path("ants-bees") / "train" / "bees").glob("*.jpg"))[:3]
    project_id = api.create_project("Portal bulk tagging")
    tag_id = api.create_tag(project_id, "bees")
    api.upload(project_id, bees)
    try:
        _open(page, veil_server, f"#/projects/{project_id}/images")
        expect(page.locator(".segmented")).to_contain_text("Untagged (3)")
        page.locator(".segmented button", has_text="Untagged").click()
        expect(page.locator("#image-grid .tile")).to_have_count(3)
        page.locator("#image-grid .tile").first.hover()
        page.locator("#image-grid .tile .tile-select input").first.check()
        page.locator("#selection-bar button", has_text="Select page").click()
        expect(page.locator("#selection-bar")).to_contain_text("3 selected")
        page.select_option("#bulk-tag", tag_id)
        page.locator("#selection-bar button", has_text="Add tag").click()
        expect(page.locator(".segmented")).to_contain_text("Tagged (3)")
        expect(page.locator("#tag-list li", has_text="bees").locator(".count")).to_have_text("3")
        assert all([t["tagId"] for t in image["tags"]] == [tag_id] for image in api.images(project_id))

        # One image opened large: its tag removed there, the grid and the server agree.
        page.locator(".segmented button", has_text="All").click()
        page.locator("#image-grid .tile .thumb").first.click()
        expect(page.locator("#viewer-image")).to_be_visible()
        page.locator("#viewer-tags button[aria-label='Remove tag bees']").click()
        expect(page.locator("#viewer-tags")).to_contain_text("untagged")
        page.locator("#image-viewer button", has_text="Close").click()
        expect(page.locator(".segmented")).to_contain_text("Tagged (2)")
        assert sum(1 for image in api.images(project_id) if not image.get("tags")) == 1
    finally:
        api.delete_project(project_id)


def test_drawing_a_box_on_a_detection_image(page: Page, veil_server: Server, api: Api) -> None:
    photo = sorted((dataset_path("pedestrians-det") / "PennFudanPed" / "PNGImages").glob("*.png"))[0]
    project_id = api.create_project("Portal boxes", DETECTION_DOMAIN)
    tag_id = api.create_tag(project_id, "person")
    api.upload(project_id, [photo])
    try:
        _open(page, veil_server, f"#/projects/{project_id}/images")
        expect(page.locator("#image-grid .tile")).to_contain_text("no boxes")
        page.locator("#image-grid .tile .thumb").click()
        canvas = page.locator("#region-canvas")
        canvas.wait_for()
        box = canvas.bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.1)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.9, steps=4)
        page.mouse.up()
        expect(page.locator("#region-list li[data-region-id]")).to_have_count(1)
        page.locator("dialog.region-editor button", has_text="Done").click()
        expect(page.locator("#image-grid .tile")).to_contain_text("person")
        expect(page.locator("#image-grid .tile .box-overlay")).to_have_count(1)  # drawn over the thumbnail

        (image,) = api.images(project_id)
        (region,) = image["regions"]
        assert region["tagId"] == tag_id
        # The box drawn from 20 %→60 % across and 10 %→90 % down, normalized as Custom Vision stores it.
        assert region["left"] == pytest.approx(0.2, abs=0.02)
        assert region["top"] == pytest.approx(0.1, abs=0.02)
        assert region["width"] == pytest.approx(0.4, abs=0.02)
        assert region["height"] == pytest.approx(0.8, abs=0.02)
    finally:
        api.delete_project(project_id)


def test_privacy_policy_keys_and_audit(page: Page, veil_server: Server, api: Api) -> None:
    project_id = api.create_project("Portal privacy")
    try:
        _open(page, veil_server, f"#/projects/{project_id}/privacy")
        form = page.locator("#privacy-policy")
        form.locator("input[name=anonymize_on_ingest]").check()
        form.locator("select[name=method]").select_option("dp-pixelate")
        form.locator("input[name=epsilon]").fill("0.5")
        form.locator("input[name=retention_days]").fill("7")
        form.locator("input[name=store_predictions]").check()  # off by default: an admin turns it on
        form.locator("#save-policy").click()
        expect(page.locator(".toast-ok")).to_contain_text("saved")
        policy = httpx.get(
            f"{veil_server.url}/veil/v1/projects/{project_id}/privacy", headers=veil_server.admin_headers
        ).json()
        assert policy["anonymize_on_ingest"] is True
        assert policy["method"] == "dp-pixelate"
        assert policy["epsilon"] == 0.5
        assert policy["retention_days"] == 7
        assert policy["store_predictions"] is True

        # The project's own settings sit on the same tab.
        page.fill("#project-settings input[name=name]", "Portal privacy (renamed)")
        page.locator("#project-settings button[type=submit]").click()
        expect(page.locator("h1")).to_have_text("Portal privacy (renamed)")
        assert api.client.get(f"/projects/{project_id}").json()["name"] == "Portal privacy (renamed)"

        # A new labeler key, shown once, works against the API; revoking it in the portal makes it fail.
        page.locator("#nav a", has_text="Keys").click()
        page.select_option("#create-key select[name=role]", "labeler")
        page.fill("#create-key input[name=name]", "portal test labeler")
        page.locator("#create-key button[type=submit]").click()
        secret = page.locator("#new-key-secret").inner_text().strip()
        labeler = {"Training-Key": secret}
        assert httpx.get(f"{veil_server.url}{TRAINING}/projects", headers=labeler).status_code == 200
        row = page.locator("#keys tr", has_text="portal test labeler")
        row.locator("button", has_text="Revoke").click()
        page.locator("dialog.confirm button[value=ok]").click()
        expect(row).to_contain_text("Revoked")
        assert httpx.get(f"{veil_server.url}{TRAINING}/projects", headers=labeler).status_code == 401

        # The audit log shows the chain intact and the revocation that just happened.
        page.locator("#nav a", has_text="Audit log").click()
        expect(page.locator("#audit-chain")).to_contain_text("Intact")
        expect(page.locator("#audit tbody tr").first).to_be_visible()
        page.fill("input[type=search]", "revoke")
        expect(page.locator("#audit tbody tr")).to_have_count(1)
    finally:
        api.delete_project(project_id)


def test_training_too_few_images_names_the_tag(page: Page, veil_server: Server, api: Api) -> None:
    """The Train button reaches the training route; its refusal (too few images) is shown with the tag's name."""
    ants = sorted((dataset_path("ants-bees") / "train" / "ants").glob("*.jpg"))[:2]
    project_id = api.create_project("Portal too few")
    tag_id = api.create_tag(project_id, "ants")
    api.create_tag(project_id, "bees")
    files = [("imageData", (p.name, p.read_bytes(), "application/octet-stream")) for p in ants]
    api.client.post(f"/projects/{project_id}/images", params={"tagIds": tag_id}, files=files).raise_for_status()
    try:
        _open(page, veil_server, f"#/projects/{project_id}/train")
        expect(page.locator("#iterations, .empty")).to_contain_text("No iterations yet")
        expect(page.locator("#readiness")).to_contain_text("ants: 2 image(s), 3 more needed")
        page.locator("#train-button").click()
        error = page.locator(".train-form .alert-error")
        expect(error).to_contain_text("BadRequestMultiClassClassificationTrainingValidationFailed")
        expect(error).to_contain_text("ants")
        assert api.client.get(f"/projects/{project_id}/iterations").json() == []
    finally:
        api.delete_project(project_id)


def test_an_auditor_sees_metadata_but_never_pixels(page: Page, veil_server: Server, api: Api) -> None:
    """The server refuses an auditor the image bytes; the portal learns the role from that refusal, stops
    asking, and hides what the role cannot do (uploads, tag edits, key management)."""
    ants = sorted((dataset_path("ants-bees") / "train" / "ants").glob("*.jpg"))[:2]
    project_id = api.create_project("Portal auditor view")
    api.create_tag(project_id, "ants")
    api.upload(project_id, ants)
    created = httpx.post(f"{veil_server.url}/veil/v1/keys", json={"role": "auditor"}, headers=veil_server.admin_headers)
    assert created.status_code == 201, created.text
    try:
        sign_in(page, veil_server, created.json()["key"])
        page.locator("h1:has-text('Projects')").wait_for()
        page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/images")
        expect(page.locator("#image-grid .thumb.withheld")).to_have_count(2)
        expect(page.locator("#account")).to_contain_text("auditor")
        assert page.locator("#image-grid img[src^='blob:']").count() == 0
        expect(page.locator("#dropzone")).to_have_count(0)
        expect(page.locator(".add-tag")).to_have_count(0)
        expect(page.locator("#nav")).not_to_contain_text("Keys")
        expect(page.locator("#nav")).to_contain_text("Audit log")
    finally:
        api.delete_project(project_id)


def test_anonymize_a_photo_keeps_nothing(page: Page, veil_server: Server) -> None:
    """The Anonymize page hides the faces of a real photo and Veil keeps nothing: no file, no audit event."""
    photo = sorted((dataset_path("faces-det") / "WIDER_val" / "images" / "19--Couple").glob("*.jpg"))[0]

    def stored_files() -> set[str]:
        return {
            str(p.relative_to(veil_server.data_dir))
            for p in veil_server.data_dir.rglob("*")
            if p.is_file() and ".db" not in p.name and not p.name.endswith(("-wal", "-shm"))
        }

    def audit_events() -> int:
        verify = httpx.get(f"{veil_server.url}/veil/v1/audit/verify", headers=veil_server.admin_headers)
        return int(verify.json()["events"])

    sign_in(page, veil_server, veil_server.admin_key)
    page.locator("h1:has-text('Projects')").wait_for()
    files_before, events_before = stored_files(), audit_events()
    page.locator("#nav a", has_text="Anonymize").click()
    page.set_input_files("#anonymize-file", str(photo))
    caption = page.locator("#anonymized-caption")
    expect(caption).to_contain_text("face(s) hidden", timeout=60_000)
    assert int(caption.inner_text().split()[0]) >= 1  # the couple's faces are found
    expect(page.locator("#anonymized-image")).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.evaluate("document.querySelector('#anonymized-image').naturalWidth") > 0
    assert stored_files() == files_before
    assert audit_events() == events_before
