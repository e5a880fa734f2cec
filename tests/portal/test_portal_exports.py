"""The iteration page's Export menu in real Chromium against a real `veil serve`: it offers the formats the
iteration's `exportableTo` lists (a compact classifier: Azure's ONNX, float16, OpenVINO, TensorFlow Lite, Core ML,
Docker, and Veil's own ONNX), an export shows its job's progress, then a download link whose zip is Azure's
layout; a running export is cancelled from the menu and reads Failed with the reason.

The tagged photos and the training go through the REST API (tested elsewhere); every export step is a click."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import httpx
import pytest
from tests.portal.harness import Server, ants_bees_project, open_portal, train_and_wait, training_client

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

GENERAL_COMPACT = "0732100f-1a38-4e49-a514-c9b44c697ab5"


@pytest.fixture
def compact_iteration(veil_server: Server) -> Iterator[tuple[httpx.Client, str, dict]]:  # type: ignore[type-arg]
    client = training_client(veil_server)
    project_id = ants_bees_project(client, "Portal exports", per_tag=5, domain_id=GENERAL_COMPACT)
    try:
        yield client, project_id, train_and_wait(client, project_id)
    finally:
        client.delete(f"/projects/{project_id}")
        client.close()


def test_export_menu_offers_the_formats_shows_progress_downloads_and_cancels(
    page: Page,
    veil_server: Server,
    compact_iteration: tuple[httpx.Client, str, dict],  # type: ignore[type-arg]
) -> None:
    client, project_id, iteration = compact_iteration
    open_portal(page, veil_server, f"#/projects/{project_id}/iterations/{iteration['id']}")
    # The menu is filled from the iteration's exportableTo after the page's requests answer: wait for it.
    expect(page.locator("#export-format option")).not_to_have_count(0, timeout=30_000)
    options = page.locator("#export-format option").all_inner_texts()
    assert "ONNX (Azure's layout)" in options and "Veil ONNX (veil predict, edge)" in options
    assert {"OpenVINO IR", "TensorFlow Lite", "Core ML", "Docker (Linux)"} <= set(options)

    # Azure's ONNX: a progress bar while the job runs, then a download link.
    page.select_option("#export-format", label="ONNX (Azure's layout)")
    page.click("#export-start")
    item = page.locator(".export-item").filter(has=page.locator("[data-platform=ONNX][data-flavor='']"))
    expect(item.locator(".progress-block")).to_be_visible()
    expect(item).to_contain_text("Done", timeout=120_000)
    with page.expect_download() as downloading:
        item.locator("button", has_text="Download").click()
    path = downloading.value.path()
    assert path is not None
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        assert {"model.onnx", "labels.txt", "cvexport.manifest"} <= set(archive.namelist())
        assert json.loads(archive.read("cvexport.manifest"))["Platform"] == "ONNX"

    # TensorFlow Lite converts for tens of seconds: cancel it from the menu while it runs.
    page.select_option("#export-format", label="TensorFlow Lite")
    page.click("#export-start")
    tflite = page.locator(".export-item").filter(has=page.locator("[data-flavor=TensorFlowLite]"))
    expect(tflite.locator(".stage")).to_contain_text("converting", timeout=120_000)
    tflite.locator("button", has_text="Cancel").click()
    expect(tflite.locator(".export-error")).to_contain_text("cancelled", timeout=60_000)
    listed = client.get(f"/projects/{project_id}/iterations/{iteration['id']}/export").json()
    assert next(e for e in listed if e["flavor"] == "TensorFlowLite")["status"] == "Failed"
