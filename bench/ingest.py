"""Keeping the user's pixels: upload latency and stored bytes of Veil's ingest (a JPEG's compressed data kept,
metadata segments dropped) against the re-encode it replaced (decode, then JPEG quality 95), on the same photos
in the same run, alternating photo by photo so both see the same load.

Photos: the real JPEGs of ../shared/datasets larger than 300 KB (given EXIF/GPS, XMP and an ICC profile, as a
phone would write them) and, as in `bench crypto`, one real photo enlarged to about 1 MB.

    python -m bench ingest            # or: make bench BENCH=ingest
    VEIL_BENCH_ROUNDS=2 python -m bench ingest   # a quick run
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.crypto import OUT, one_mb_jpeg
from veil.config import get_settings
from veil.images.ingest import JPEG_QUALITY, IngestLimits, decode_image, keep_pixels

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"
ROUNDS = int(os.environ.get("VEIL_BENCH_ROUNDS", "5"))
MIN_BYTES = 300_000


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, "big") + payload


def _as_a_phone_writes_it(jpeg: bytes) -> bytes:
    """EXIF with GPS, XMP and an sRGB ICC profile in front of the photo's own segments."""
    import piexif
    from PIL import ImageCms

    exif = piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: b"bench-phone"},
            "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (29, 1))},
        }
    )
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>" + b"<rdf:li>bench</rdf:li>" * 200 + b"</x:xmpmeta>"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return (
        jpeg[:2]
        + _segment(0xE1, exif)
        + _segment(0xE1, xmp)
        + _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + icc)
        + jpeg[2:]
    )


def photos() -> list[Photo]:
    found = sorted(p for p in DATASETS.rglob("*.jp*g") if p.stat().st_size > MIN_BYTES)
    chosen = [Photo(p.name[:40], _as_a_phone_writes_it(p.read_bytes())) for p in found]
    return [*chosen, Photo("ants photo enlarged to ~1 MB (bench crypto)", _as_a_phone_writes_it(one_mb_jpeg()))]


def reencode(data: bytes, limits: IngestLimits) -> bytes:
    """What ingest did before: the bounded decode, then a fresh JPEG at quality 95."""
    image, _ = decode_image(data, limits)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def psnr(a: bytes, b: bytes) -> float:
    x = np.asarray(Image.open(io.BytesIO(a)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.float64)
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _timed(run: object, *args: object) -> tuple[float, bytes]:
    start = time.perf_counter()
    out = run(*args)  # type: ignore[operator]
    return time.perf_counter() - start, out


def in_process(shots: list[Photo], limits: IngestLimits) -> dict[str, dict[str, list[float] | bytes]]:
    """Per photo: seconds of each path over ROUNDS (alternating), and each path's kept bytes."""
    results: dict[str, dict[str, list[float] | bytes]] = {}
    for photo in shots:
        kept_times: list[float] = []
        old_times: list[float] = []
        kept = old = b""
        for _ in range(ROUNDS):
            seconds, kept = _timed(lambda d: keep_pixels(d, limits).data, photo.data)
            kept_times.append(seconds)
            seconds, old = _timed(reencode, photo.data, limits)
            old_times.append(seconds)
        results[photo.name] = {"kept": kept_times, "old": old_times, "kept_bytes": kept, "old_bytes": old}
    return results


def api_latencies(workdir: Path, shots: list[Photo]) -> list[float]:
    """Seconds per upload of every photo through a real `veil serve` (SQLite), ROUNDS times."""
    from tests.support.in_process import TRAINING, Server

    server = Server(data_dir=workdir / "server", database_url=f"sqlite:///{workdir / 'server' / 'veil.db'}").start()
    try:
        headers = {"Training-Key": server.admin_key or "", "Content-Type": "application/octet-stream"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            project_id = client.post(f"{TRAINING}/projects", params={"name": "bench"}).json()["id"]
            url = f"{TRAINING}/projects/{project_id}/images"
            client.post(url, content=shots[0].data).raise_for_status()  # warm-up
            seconds = []
            for _ in range(ROUNDS):
                for photo in shots:
                    start = time.perf_counter()
                    client.post(url, content=photo.data).raise_for_status()
                    seconds.append(time.perf_counter() - start)
            return seconds
    finally:
        server.stop()


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> None:
    console = Console()
    limits = IngestLimits.from_settings(get_settings())
    shots = photos()
    results = in_process(shots, limits)
    table = Table(
        title=f"ingest of {len(shots)} JPEGs × {ROUNDS} rounds: kept data vs re-encode at quality {JPEG_QUALITY}"
    )
    for column in ("photo", "upload KB", "kept / upload", "re-encode / upload", "re-encode PSNR dB",
                   "kept p50 ms", "re-encode p50 ms", "kept / re-encode (p50)"):  # fmt: skip
        table.add_column(column, justify="left" if column == "photo" else "right")
    all_kept: list[float] = []
    all_old: list[float] = []
    kept_total = old_total = sent_total = 0
    for photo in shots:
        row = results[photo.name]
        kept_bytes, old_bytes = row["kept_bytes"], row["old_bytes"]
        kept_times, old_times = row["kept"], row["old"]
        assert isinstance(kept_bytes, bytes) and isinstance(old_bytes, bytes)
        assert isinstance(kept_times, list) and isinstance(old_times, list)
        assert psnr(kept_bytes, photo.data) == float("inf"), f"{photo.name}: kept pixels differ"
        all_kept += kept_times
        all_old += old_times
        kept_total, old_total, sent_total = (
            kept_total + len(kept_bytes),
            old_total + len(old_bytes),
            sent_total + len(photo.data),
        )
        table.add_row(
            photo.name,
            f"{len(photo.data) / 1024:.0f}",
            f"{len(kept_bytes) / len(photo.data):.3f}",
            f"{len(old_bytes) / len(photo.data):.2f}",
            f"{psnr(old_bytes, photo.data):.1f}",
            f"{_ms(kept_times):.0f}",
            f"{_ms(old_times):.0f}",
            f"{_ms(kept_times) / _ms(old_times):.2f}",
        )
    table.add_row(
        "all photos",
        f"{sent_total / 1024:.0f}",
        f"{kept_total / sent_total:.3f}",
        f"{old_total / sent_total:.2f}",
        "",
        f"{_ms(all_kept):.0f}",
        f"{_ms(all_old):.0f}",
        f"{_ms(all_kept) / _ms(all_old):.2f}",
    )
    console.print(table)

    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-", dir=OUT))
    try:
        api = api_latencies(workdir, shots)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(
        f"API (veil serve, SQLite; HTTP → gate → keep → seal → fsync → commit): p50 {_ms(api):.0f} ms over "
        f"{len(api)} uploads; API / in-process kept path (p50) {_ms(api) / _ms(all_kept):.2f}"
    )


if __name__ == "__main__":
    main()
