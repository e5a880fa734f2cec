"""Shared pieces of the portal tests: the running server's address and admin key, and the sign-in step."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

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
