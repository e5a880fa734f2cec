"""The web portal: static pages served by the API app, talking to the same REST API a user would call.

Owns HTML/JS/CSS only (`static/`) and `mount_portal`, which serves them at `/portal/`.
Must not reach into the store or services directly: every byte the portal shows comes through the REST API,
with the key the user pasted, so the portal can do nothing a curl user could not.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parent / "static"
PORTAL_PATH = "/portal"

# The portal only ever talks to its own origin; images are shown from blob: URLs made after an
# authenticated fetch. A strict policy means an injected string can never run script or leak a key.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # The shell is tiny; always revalidate so an upgraded server never runs yesterday's scripts.
    "Cache-Control": "no-cache",
}


class PortalFiles(StaticFiles):
    """StaticFiles with the portal's security headers on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def mount_portal(app: FastAPI) -> None:
    """Serve the portal at `/portal/` and send visitors of `/` there."""

    def to_portal() -> RedirectResponse:
        return RedirectResponse(url=f"{PORTAL_PATH}/")

    for path in ("/", PORTAL_PATH):
        app.add_api_route(path, to_portal, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(PORTAL_PATH, PortalFiles(directory=STATIC_DIR, html=True), name="portal")
