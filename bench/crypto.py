"""Encryption cost: Veil's encrypt-and-store / load-and-decrypt of 1 MB blobs against plain file write/read
of the same bytes (same disk, same run, both fsynced), and the latency of uploading a 1 MB JPEG via the API.

    python -m bench crypto            # or: make bench BENCH=crypto
    VEIL_BENCH_BLOBS=20 VEIL_BENCH_UPLOADS=10 python -m bench crypto   # a quick run
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image
from rich.console import Console
from rich.table import Table

from veil.config import get_settings
from veil.images.ingest import IngestLimits, decode_image, encode_image
from veil.security.crypto import new_key, open_, seal
from veil.store.blobs import BlobStore

REPO = Path(__file__).resolve().parents[1]
PHOTO_DIR = REPO.parent / "shared" / "datasets" / "ants-bees"
OUT = REPO / "bench" / "out"  # on the repository's disk, like a data directory (git-ignored)
MB = 1024 * 1024
BLOBS = int(os.environ.get("VEIL_BENCH_BLOBS", "60"))
UPLOADS = int(os.environ.get("VEIL_BENCH_UPLOADS", "40"))


def _throughput(count: int, run: Callable[[int], None]) -> float:
    """MB/s of `run(i)` over `count` one-megabyte blobs."""
    start = time.perf_counter()
    for i in range(count):
        run(i)
    return count / (time.perf_counter() - start)


def _plain_write(folder: Path, name: str, data: bytes) -> None:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_rows(workdir: Path) -> list[tuple[str, float, float]]:
    """(operation, Veil MB/s, plain MB/s) for BLOBS random 1 MB blobs."""
    payloads = [os.urandom(MB) for _ in range(BLOBS)]
    dek, project = new_key(), "bench-project"
    store, plain = BlobStore(workdir / "veil"), workdir / "plain"
    plain.mkdir()
    veil_write = _throughput(BLOBS, lambda i: store.put(project, f"b{i}", seal(dek, project, f"b{i}", payloads[i])))
    plain_write = _throughput(BLOBS, lambda i: _plain_write(plain, f"b{i}", payloads[i]))

    def veil_read(i: int) -> None:
        assert open_(dek, project, f"b{i}", store.get(project, f"b{i}")) == payloads[i]

    def plain_read(i: int) -> None:
        assert (plain / f"b{i}").read_bytes() == payloads[i]

    return [
        ("encrypt + store (atomic, fsync)", veil_write, plain_write),
        ("load + decrypt", _throughput(BLOBS, veil_read), _throughput(BLOBS, plain_read)),
    ]


def one_mb_jpeg() -> bytes:
    """A real photo, enlarged until its JPEG is about 1 MB."""
    source = sorted(PHOTO_DIR.rglob("*.jpg"))[0]
    with Image.open(source) as photo:
        image = photo.convert("RGB")
    scale = 1.0
    while True:
        buffer = io.BytesIO()
        image.resize((int(image.width * scale), int(image.height * scale))).save(buffer, "JPEG", quality=92)
        if buffer.tell() >= MB:
            return buffer.getvalue()
        scale *= 1.25


def upload_latencies(workdir: Path, jpeg: bytes) -> tuple[list[float], list[float]]:
    """Seconds per upload through a real `veil serve`, and per in-process decode + re-encode (the floor)."""
    from tests.support.in_process import TRAINING, Server

    server = Server(data_dir=workdir / "server", database_url=f"sqlite:///{workdir / 'server' / 'veil.db'}").start()
    try:
        headers = {"Training-Key": server.admin_key or "", "Content-Type": "application/octet-stream"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            project_id = client.post(f"{TRAINING}/projects", params={"name": "bench"}).json()["id"]
            url = f"{TRAINING}/projects/{project_id}/images"
            client.post(url, content=jpeg).raise_for_status()  # warm-up
            api = []
            for _ in range(UPLOADS):
                start = time.perf_counter()
                client.post(url, content=jpeg).raise_for_status()
                api.append(time.perf_counter() - start)
    finally:
        server.stop()
    limits = IngestLimits.from_settings(get_settings())
    ingest = []
    for _ in range(UPLOADS):
        start = time.perf_counter()
        image, source_format = decode_image(jpeg, limits)
        encode_image(image, source_format)
        ingest.append(time.perf_counter() - start)
    return api, ingest


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] * 1000


def main() -> None:
    console = Console()
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="crypto-", dir=OUT))
    try:
        table = Table(title=f"1 MB blobs × {BLOBS} (random bytes; both sides fsync every write)")
        for column in ("operation", "Veil MB/s", "plain file MB/s", "Veil / plain"):
            table.add_column(column, justify="right" if "MB" in column or "/" in column else "left")
        for name, veil, plain in blob_rows(workdir):
            table.add_row(name, f"{veil:.0f}", f"{plain:.0f}", f"{veil / plain:.2f}")
        console.print(table)

        jpeg = one_mb_jpeg()
        api, ingest = upload_latencies(workdir, jpeg)
        latency = Table(
            title=f"upload of a {len(jpeg) / MB:.2f} MB JPEG × {UPLOADS} (octet-stream, one image per call)"
        )
        for column in ("path", "p50 ms", "p95 ms"):
            latency.add_column(column, justify="left" if column == "path" else "right")
        latency.add_row(
            "API: veil serve (SQLite), HTTP → ingest → seal → fsync → commit",
            f"{_pct(api, 50):.0f}",
            f"{_pct(api, 95):.0f}",
        )
        latency.add_row(
            "in-process decode + re-encode only (the floor)",
            f"{_pct(ingest, 50):.0f}",
            f"{_pct(ingest, 95):.0f}",
        )
        latency.add_row("API / floor (p50)", f"{_pct(api, 50) / _pct(ingest, 50):.2f}", "")
        console.print(latency)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
