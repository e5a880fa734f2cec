"""A user's session in the portal, in real Chromium against a real `veil serve`: sign in, create a project,
create a tag, upload real photos with it, see them in the grid, and delete the project."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from tests.conftest import dataset_path
from tests.portal.harness import TRAINING, Server, sign_in

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

UPLOAD_RESULTS = "#upload-status li[data-status=ok], #upload-status li[data-status=bad]"
THUMBNAIL_WIDTHS = "[...document.querySelectorAll('#image-grid .tile img')].map(i => i.naturalWidth)"


def _ant_photos(count: int) -> list[Path]:
    ants = sorted((dataset_path("ants-bees") / "train" / "ants").glob("*.jpg"))
    assert len(ants) >= count, "the ants-bees dataset has fewer photos than this test needs"
    return ants[:count]


def test_root_redirects_to_the_portal_with_a_strict_policy(veil_server: Server) -> None:
    response = httpx.get(f"{veil_server.url}/", follow_redirects=True)
    assert response.status_code == 200
    assert str(response.url).endswith("/portal/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert '<script type="module" src="js/main.js">' in response.text


def test_a_wrong_key_shows_an_error_and_is_not_kept(page: Page, veil_server: Server) -> None:
    sign_in(page, veil_server, "not-a-veil-key-" + "0" * 40)
    alert = page.locator(".signin .alert-error")
    alert.wait_for()
    assert "not accepted" in alert.inner_text()
    assert page.evaluate("sessionStorage.getItem('veil.apiKey')") is None
    assert page.locator("#api-key").is_visible()


def test_a_prediction_key_is_told_what_the_portal_needs(page: Page, veil_server: Server) -> None:
    created = httpx.post(
        f"{veil_server.url}/veil/v1/keys",
        json={"role": "predictor", "name": "portal test predictor"},
        headers=veil_server.admin_headers,
    )
    assert created.status_code == 201, created.text
    sign_in(page, veil_server, created.json()["key"])
    alert = page.locator(".signin .alert-error")
    expect(alert).to_contain_text("Prediction keys only call the prediction API")
    assert page.evaluate("sessionStorage.getItem('veil.apiKey')") is None


def test_sign_in_create_tag_upload_see_and_delete(page: Page, veil_server: Server, tmp_path: Path) -> None:
    photos = _ant_photos(2)
    sign_in(page, veil_server, veil_server.admin_key)
    page.locator("h1:has-text('Projects')").wait_for()
    assert page.evaluate("sessionStorage.getItem('veil.apiKey')") == veil_server.admin_key
    assert page.evaluate("localStorage.length") == 0

    # Create a classification project.
    page.click("#new-project")
    page.fill("#create-project input[name=name]", "Portal ants")
    page.select_option("#create-project select[name=projectType]", "Classification")
    page.click("#create-project button[type=submit]")
    page.locator("h1:has-text('Portal ants')").wait_for()  # the new project opens at once
    match = re.search(r"#/projects/([0-9a-f-]{36})/images$", page.url)
    assert match, page.url
    project_id = match.group(1)
    assert "Classification · Multiclass" in page.locator(".page-head").inner_text()

    # Create a tag.
    page.fill("input[name=tagName]", "ants")
    page.click(".add-tag button[type=submit]")
    page.locator("#tag-list li", has_text="ants").wait_for()

    # A misspelt tag is renamed in place (double-click, type, Enter).
    page.fill("input[name=tagName]", "bees")
    page.click(".add-tag button[type=submit]")
    page.locator("#tag-list li .tag-name", has_text="bees").dblclick()
    page.fill("#tag-list input.rename", "wasps")
    page.keyboard.press("Enter")
    expect(page.locator("#tag-list")).to_contain_text("wasps")
    expect(page.locator("#tag-list")).not_to_contain_text("bees")

    # Upload two real photos with the tag, plus one file that is not an image.
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_bytes(b"<html><body>not a photo</body></html>")
    page.locator("#upload-tags label", has_text="ants").locator("input").check()
    page.set_input_files("#file-input", [str(p) for p in photos] + [str(not_an_image)])
    rows = page.locator("#upload-status li")
    expect(page.locator(UPLOAD_RESULTS)).to_have_count(3)
    expect(page.locator("#upload-status li[data-status=ok]")).to_have_count(2)
    refused = rows.filter(has_text="notes.jpg")
    assert refused.get_attribute("data-status") == "bad"
    assert "Error" in refused.inner_text()  # the server's reason is shown, not a generic failure

    # Both photos are in the grid with the tag, their thumbnails decoded from blob: URLs.
    tiles = page.locator("#image-grid .tile")
    expect(tiles).to_have_count(2)
    for i in range(2):
        expect(tiles.nth(i).locator("figcaption")).to_contain_text("ants")
        expect(tiles.nth(i).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    decoded = page.evaluate(THUMBNAIL_WIDTHS)
    assert all(width > 0 for width in decoded), decoded
    assert page.locator("#tag-list li", has_text="ants").locator(".count").inner_text() == "2"
    assert "Tagged (2)" in page.locator(".segmented").inner_text()
    assert page.evaluate("localStorage.length") == 0  # nothing (no image, no key) persisted by the portal

    # The server agrees: two tagged images.
    headers = veil_server.admin_headers
    count = httpx.get(f"{veil_server.url}{TRAINING}/projects/{project_id}/images/count", headers=headers)
    assert count.json() == 2

    # Delete the project from the list, after confirming.
    page.click("a:has-text('Projects')")
    card = page.locator(".project-card", has_text="Portal ants")
    card.locator("button:has-text('Delete')").click()
    page.locator("dialog.confirm button[value=ok]").click()
    card.wait_for(state="detached")
    gone = httpx.get(f"{veil_server.url}{TRAINING}/projects/{project_id}", headers=headers)
    assert gone.status_code == 404

    # Signing out forgets the key in this tab.
    page.locator("#account button", has_text="Sign out").click()
    page.locator("#api-key").wait_for()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_refused_upload_shows_its_reason(page: Page, veil_server: Server, tmp_path: Path) -> None:
    """A batch in which every image is refused (HTTP 400) still shows each file's own reason."""
    project = httpx.post(
        f"{veil_server.url}{TRAINING}/projects",
        params={"name": "Portal refusals"},
        headers=veil_server.admin_headers,
    ).json()
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and nothing decodable
    try:
        sign_in(page, veil_server, veil_server.admin_key)
        page.locator("h1:has-text('Projects')").wait_for()
        page.goto(f"{veil_server.url}/portal/#/projects/{project['id']}/images")
        page.set_input_files("#file-input", [str(tiny)])
        row = page.locator("#upload-status li", has_text="tiny.png")
        expect(row).to_have_attribute("data-status", "bad")
        assert "ErrorImage" in row.inner_text()  # the per-image status, not only the batch's HTTP error
        expect(page.locator("#image-grid")).to_contain_text("No images here")
    finally:
        url = f"{veil_server.url}{TRAINING}/projects/{project['id']}"
        httpx.delete(url, headers=veil_server.admin_headers)


def test_names_are_shown_as_text_never_as_markup(page: Page, veil_server: Server) -> None:
    """A project, tag or description carrying HTML is displayed literally; nothing in it runs."""
    hostile = "<img src=x onerror=\"document.title='owned'\">"
    project = httpx.post(
        f"{veil_server.url}{TRAINING}/projects",
        params={"name": f"Evil {hostile}", "description": hostile},
        headers=veil_server.admin_headers,
    ).json()
    httpx.post(
        f"{veil_server.url}{TRAINING}/projects/{project['id']}/tags",
        params={"name": hostile},
        headers=veil_server.admin_headers,
    ).raise_for_status()
    try:
        sign_in(page, veil_server, veil_server.admin_key)
        card = page.locator(".project-card", has_text="Evil")
        expect(card.locator(".project-name")).to_have_text(f"Evil {hostile}")
        page.goto(f"{veil_server.url}/portal/#/projects/{project['id']}/images")
        expect(page.locator("#tag-list")).to_contain_text(hostile)
        assert page.locator("img[src='x']").count() == 0
        assert page.title() != "owned"
    finally:
        url = f"{veil_server.url}{TRAINING}/projects/{project['id']}"
        httpx.delete(url, headers=veil_server.admin_headers)
