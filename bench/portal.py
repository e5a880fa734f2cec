"""Portal benchmark: how long a person waits for a page of 48 image thumbnails, against the REST API floor.

A real `veil serve` (temp data dir) gets 48 ants/bees photos. Then, in the same run:
- **portal**: Debian's Chromium (Playwright) opens the project's Images page and waits until all 48 thumbnails
  are decoded on screen (fetched with the key header, four at a time, shown from blob: URLs);
- **API floor**: httpx fetches the same 48 thumbnail URLs with the same key and the same concurrency (4),
  which is the least any client must wait for those bytes (decrypt + resize on the server).
The ratio portal / floor is what the page itself costs (listing, counts, layout, decoding).

    python -m bench portal            # or: make bench BENCH=portal
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "datasets" / "ants-bees" / "train"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
TRAINING = "/customvision/v3.3/training"
IMAGES = 48
CONCURRENCY = 4  # the portal's thumbnail concurrency (static/js/thumbnails.js)
ROUNDS = 9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(data_dir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    veil = str(Path(sys.executable).with_name("veil"))
    env = {**os.environ, "VEIL_DATA_DIR": str(data_dir)}
    env.pop("VEIL_DATABASE_URL", None)
    created = subprocess.run(
        [veil, "keys", "create", "--role", "admin", "--data-dir", str(data_dir)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    key = created.stdout.strip().splitlines()[-1]
    url = f"http://127.0.0.1:{_free_port()}"
    port = url.rsplit(":", 1)[1]
    process = subprocess.Popen(
        [veil, "serve", "--no-worker", "--port", port, "--data-dir", str(data_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url, key
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("veil serve did not start")


def _seed(url: str, key: str) -> tuple[str, list[str]]:
    client = httpx.Client(base_url=url + TRAINING, headers={"Training-Key": key}, timeout=300)
    project = client.post("/projects", params={"name": "Portal benchmark"}).json()
    photos = sorted(PHOTOS.glob("*/*.jpg"))[:IMAGES]
    for i in range(0, len(photos), 16):
        files = [("imageData", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[i : i + 16]]
        client.post(f"/projects/{project['id']}/images", files=files).raise_for_status()
    images = client.get(f"/projects/{project['id']}/images", params={"take": IMAGES}).json()
    return project["id"], [image["thumbnailUri"] for image in images]


def _api_floor(uris: list[str], key: str) -> float:
    with httpx.Client(headers={"Training-Key": key}, timeout=120) as client:
        start = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            sizes = list(pool.map(lambda uri: len(client.get(uri).raise_for_status().content), uris))
        elapsed = time.perf_counter() - start
    assert all(sizes)
    return elapsed


def _measure(url: str, key: str, project_id: str, uris: list[str]) -> tuple[list[float], list[float]]:
    """Rounds alternate portal and floor, so both see the same (shared, drifting) machine load."""
    from playwright.sync_api import expect, sync_playwright

    portal, floors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # Tall enough that every thumbnail is in view (the portal loads only what is on screen).
        page = browser.new_page(viewport={"width": 1280, "height": 4000})
        page.goto(f"{url}/")
        page.fill("#api-key", key)
        page.click("button:has-text('Sign in')")
        page.locator("h1:has-text('Projects')").wait_for()
        for _ in range(ROUNDS):
            page.goto(f"{url}/portal/#/projects")
            page.locator("h1:has-text('Projects')").wait_for()
            start = time.perf_counter()
            page.goto(f"{url}/portal/#/projects/{project_id}/images")
            loaded = page.locator("#image-grid .tile img[src^='blob:']")
            expect(loaded).to_have_count(IMAGES, timeout=120_000)
            portal.append(time.perf_counter() - start)
            floors.append(_api_floor(uris, key))
        browser.close()
    return portal, floors


def main() -> None:
    console = Console()
    if not CHROMIUM.exists() or not PHOTOS.is_dir():
        console.print(f"skipped: needs {CHROMIUM} and {PHOTOS}")
        return
    try:
        import playwright.sync_api  # noqa: F401  (a dev dependency)
    except ImportError:
        console.print("skipped: playwright is not installed (pip install -e '.[dev]')")
        return
    with tempfile.TemporaryDirectory(prefix="veil-bench-portal-") as tmp:
        process, url, key = _start_server(Path(tmp))
        try:
            project_id, uris = _seed(url, key)
            portal, floors = _measure(url, key, project_id, uris)
        finally:
            process.terminate()
            process.wait(timeout=20)
    floor, page = statistics.median(floors), statistics.median(portal)
    table = Table(title=f"{IMAGES} thumbnails, median of {ROUNDS} rounds, concurrency {CONCURRENCY}")
    table.add_column("client")
    table.add_column("median s", justify="right")
    table.add_column("min s", justify="right")
    table.add_column("max s", justify="right")
    table.add_row("portal: Images page until every thumbnail is decoded", f"{page:.2f}", f"{min(portal):.2f}",
                  f"{max(portal):.2f}")  # fmt: skip
    table.add_row("API floor: httpx GET of the same 48 thumbnails", f"{floor:.2f}", f"{min(floors):.2f}",
                  f"{max(floors):.2f}")  # fmt: skip
    console.print(table)
    ratios = sorted(p / f for p, f in zip(portal, floors, strict=True))
    console.print(
        f"portal / API floor = {page / floor:.2f} (medians); per round: median {statistics.median(ratios):.2f}, "
        f"range {ratios[0]:.2f}–{ratios[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
