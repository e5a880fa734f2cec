"""The portal shows a project's training-image policy: the Privacy tab sets "forget after training" and a
retention, and the Train tab warns, before anyone trains, that the images will be shredded."""

from __future__ import annotations

import httpx
import pytest
from tests.portal.harness import TRAINING, Server, sign_in

pytest.importorskip("playwright.sync_api", reason="playwright is not installed in the venv")
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser


def test_forget_after_training_is_set_in_privacy_and_announced_on_train(page: Page, veil_server: Server) -> None:
    with httpx.Client(base_url=veil_server.url, headers=veil_server.admin_headers, timeout=60) as http:
        project_id = http.post(f"{TRAINING}/projects", params={"name": "Portal forgetful"}).json()["id"]
        try:
            sign_in(page, veil_server, veil_server.admin_key)
            page.locator("h1:has-text('Projects')").wait_for()
            page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/train")
            page.locator("#readiness").wait_for()
            expect(page.locator("#forget-notice")).to_be_hidden()  # the default keeps training images

            page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/privacy")
            form = page.locator("#privacy-policy")
            form.locator("input[name=forget_images_after_training]").check()
            form.locator("input[name=training_image_retention_days]").fill("30")
            form.locator("#save-policy").click()
            expect(page.locator(".toast-ok")).to_contain_text("saved")
            policy = http.get(f"/veil/v1/projects/{project_id}/privacy").json()
            assert policy["forget_images_after_training"] is True
            assert policy["training_image_retention_days"] == 30

            page.goto(f"{veil_server.url}/portal/#/projects/{project_id}/train")
            expect(page.locator("#forget-notice")).to_be_visible()
            expect(page.locator("#forget-notice")).to_contain_text("shreds its training images")
        finally:
            http.delete(f"{TRAINING}/projects/{project_id}")
