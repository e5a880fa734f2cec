"""Shared pieces of the portal tests: the running server's address and admin key, signing in and opening a page,
and the REST steps that set a scene up (a tagged ants/bees project, a training waited for)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from tests.conftest import dataset_path

if TYPE_CHECKING:
    from playwright.sync_api import Page

TRAINING = "/customvision/v3.3/training"


@dataclass(frozen=True)
class Server:
    url: str
    admin_key: str
    data_dir: Path

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Training-Key": self.admin_key}


def sign_in(page: Page, server: Server, key: str) -> None:
    """Open the server's root (it redirects to the portal) and sign in with `key`."""
    page.goto(f"{server.url}/")
    page.fill("#api-key", key)
    page.click("button:has-text('Sign in')")


def open_portal(page: Page, server: Server, hash_: str, key: str | None = None) -> None:
    """Sign in (the admin key unless `key`), wait for the project list, then open `hash_` (e.g. `#/projects/x`)."""
    sign_in(page, server, key or server.admin_key)
    page.locator("h1:has-text('Projects')").wait_for()
    page.goto(f"{server.url}/portal/{hash_}")


def training_client(server: Server) -> httpx.Client:
    """The Custom Vision training API of the server, with the admin key (close it when done)."""
    return httpx.Client(base_url=server.url + TRAINING, headers=server.admin_headers, timeout=60)


def upload(client: httpx.Client, project_id: str, photos: list[Path], tag_id: str | None = None) -> list[str]:
    """Upload photos (multipart, as the portal does), tagged when `tag_id`; returns the new image ids."""
    files = [("imageData", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
    params = {"tagIds": tag_id} if tag_id else {}
    response = client.post(f"/projects/{project_id}/images", params=params, files=files)
    assert response.status_code == 200, response.text
    return [r["image"]["id"] for r in response.json()["images"]]


def ants_bees_project(client: httpx.Client, name: str, per_tag: int, domain_id: str | None = None) -> str:
    """A classification project with `per_tag` ants/bees training photos per tag (tags `ants`, `bees`)."""
    params = {"name": name, **({"domainId": domain_id} if domain_id else {})}
    project_id = str(client.post("/projects", params=params).json()["id"])
    for tag in ("ants", "bees"):
        tag_id = client.post(f"/projects/{project_id}/tags", params={"name": tag}).json()["id"]
        upload(client, project_id, sorted((dataset_path("ants-bees") / "train" / tag).glob("*.jpg"))[:per_tag], tag_id)
    return project_id


def train_and_wait(client: httpx.Client, project_id: str, timeout_s: float = 300, **params: str) -> dict[str, Any]:
    """Train through the API and poll until the iteration leaves `Training`; returns it (asserted Completed)."""
    iteration = client.post(f"/projects/{project_id}/train", params=params).json()
    deadline = time.monotonic() + timeout_s
    while iteration["status"] in ("Training", "Queued"):
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(1)
        iteration = client.get(f"/projects/{project_id}/iterations/{iteration['id']}").json()
    assert iteration["status"] == "Completed", iteration.get("trainingErrorDetails")
    return dict(iteration)
