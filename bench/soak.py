"""Soak: 8 predictors + 2 uploaders for 60 s against one live `veil serve`, once quiet and once with a wrong-key
flooder sending from another client address (127.0.0.2), so the per-address throttle is what protects the
valid keys. Per class: requests, requests/s, p50/p99 latency, errors; the server's peak memory (resident set of
its process group, sampled every 0.25 s); the flood/quiet ratio of the valid classes' p99 (target ≤ 1.5×).

Starts a real `veil serve` with a fresh data directory, trains a small ants/bees classifier (Regular, 5 photos
per tag) and publishes it. Predictors post held-out photos to `classify/.../image/nostore`; uploaders post
photos to another project (each one a new image: a 320 px copy with its own random 16 px patch, so none is an
`OKDuplicate`); the flooder posts to the prediction route with a new wrong key each time. Errors: a predictor
or uploader answer other than 200, a flooder answer other than 401/429, or any transport failure.

    python -m bench soak               # or: make bench BENCH=soak
    VEIL_BENCH_SECONDS=20 python -m bench soak
"""

from __future__ import annotations

import io
import os
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bench.prediction import PREDICTION, TRAINING, _free_port, _key, _photos, _start_server, _train_classifier

SECONDS = float(os.environ.get("VEIL_BENCH_SECONDS", "60"))
PREDICTORS, UPLOADERS = 8, 2
FLOOD_ADDRESS = "127.0.0.2"


@dataclass
class ClassStats:
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0


@dataclass(frozen=True)
class Row:
    name: str
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    statuses: dict[int, int]


def _variants(count: int) -> list[bytes]:
    """`count` distinct JPEGs: 320 px copies of training photos, each with its own random patch."""
    rng = np.random.default_rng(13)
    bases = [Image.open(io.BytesIO(b)).convert("RGB") for b in _photos("train/ants", 10) + _photos("train/bees", 10)]
    out = []
    for i in range(count):
        image = bases[i % len(bases)].copy()
        image.thumbnail((320, 320))
        patch = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        image.paste(patch, (int(rng.integers(0, image.width - 16)), int(rng.integers(0, image.height - 16))))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _loop(
    stats: ClassStats,
    stop_at: float,
    client: httpx.Client,
    send: Callable[[httpx.Client, int], httpx.Response],
    ok: Callable[[httpx.Response], bool],
) -> None:
    index = 0
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            response = send(client, index)
            stats.statuses[response.status_code] = stats.statuses.get(response.status_code, 0) + 1
            stats.errors += not ok(response)
        except httpx.HTTPError:
            stats.errors += 1
        stats.latencies_s.append(time.perf_counter() - started)
        index += 1
    client.close()


def _group_rss_bytes(group: int) -> int:
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if int(stat[2]) != group:
                continue
            total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")  # rss, in pages
        except (OSError, IndexError, ValueError):
            continue
    return total


def _run(
    endpoint: str, keys: dict[str, str], ids: dict[str, str], uploads: list[bytes], photos: list[bytes],
    flood: bool, group: int,
) -> tuple[list[Row], int]:  # fmt: skip
    predict = f"{endpoint}{PREDICTION}/{ids['predict']}/classify/iterations/bench/image/nostore"
    upload = f"{endpoint}{TRAINING}/projects/{ids['upload']}/images"
    stop_at = time.monotonic() + SECONDS
    classes = {"predict": ClassStats(), "upload": ClassStats(), "wrong-key flood": ClassStats()}
    next_upload = iter(range(len(uploads)))
    lock = threading.Lock()

    def upload_one(client: httpx.Client, _index: int) -> httpx.Response:
        with lock:
            data = uploads[next(next_upload) % len(uploads)]
        return client.post(upload, content=data, headers={"Content-Type": "application/octet-stream"})

    threads = []
    for i in range(PREDICTORS):
        client = httpx.Client(headers={"Prediction-Key": keys["predictor"]}, timeout=60)
        send = lambda c, n, i=i: c.post(predict, content=photos[(i + n) % len(photos)])  # noqa: E731
        ok = lambda r: r.status_code == 200 and bool(r.json().get("predictions"))  # noqa: E731
        threads.append(threading.Thread(target=_loop, args=(classes["predict"], stop_at, client, send, ok)))
    for _ in range(UPLOADERS):
        client = httpx.Client(headers={"Training-Key": keys["admin"]}, timeout=60)
        ok = lambda r: r.status_code == 200  # noqa: E731
        threads.append(threading.Thread(target=_loop, args=(classes["upload"], stop_at, client, upload_one, ok)))
    if flood:
        client = httpx.Client(transport=httpx.HTTPTransport(local_address=FLOOD_ADDRESS), timeout=60)
        send = lambda c, n: c.post(predict, content=photos[0], headers={"Prediction-Key": secrets.token_hex(32)})  # noqa: E731
        ok = lambda r: r.status_code in (401, 429)  # noqa: E731
        threads.append(threading.Thread(target=_loop, args=(classes["wrong-key flood"], stop_at, client, send, ok)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, _group_rss_bytes(group))
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    rows = []
    for name, stats in classes.items():
        if not stats.latencies_s:
            continue
        p50, p99 = (float(np.percentile(stats.latencies_s, q)) * 1000 for q in (50, 99))
        rate = len(stats.latencies_s) / elapsed
        rows.append(
            Row(name, len(stats.latencies_s), rate, p50, p99, stats.errors, dict(sorted(stats.statuses.items())))
        )
    return rows, peak


def main() -> None:
    console = Console()
    print(f"load before: {os.getloadavg()[0]:.1f} (1-min average, {os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="veil-soak-") as tmp:
        data_dir, port = Path(tmp) / "data", _free_port()
        process, endpoint = _start_server(data_dir, port)
        try:
            keys = {"admin": _key(data_dir, "admin"), "predictor": _key(data_dir, "predictor")}
            ids = {"predict": _train_classifier(endpoint, keys["admin"])}
            with httpx.Client(base_url=endpoint, headers={"Training-Key": keys["admin"]}, timeout=60) as http:
                ids["upload"] = http.post(f"{TRAINING}/projects", params={"name": "soak uploads"}).json()["id"]
            photos = _photos("val/ants", 10) + _photos("val/bees", 10)
            uploads = _variants(4000)
            warm = f"{endpoint}{PREDICTION}/{ids['predict']}/classify/iterations/bench/image/nostore"
            for data in photos[:4]:  # the model loads on the first call
                httpx.post(warm, content=data, headers={"Prediction-Key": keys["predictor"]}, timeout=120)
            results = {}
            for flood in (False, True):
                results[flood] = _run(endpoint, keys, ids, uploads[:2000] if not flood else uploads[2000:], photos,
                                      flood, process.pid)  # fmt: skip
            load_after = os.getloadavg()[0]
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    table = Table(
        title=f"Soak: {PREDICTORS} predictors + {UPLOADERS} uploaders × {SECONDS:.0f} s, quiet vs wrong-key flood"
    )
    for column in ("run", "class", "requests", "req/s", "p50 ms", "p99 ms", "errors", "statuses", "server RSS peak"):
        table.add_column(column)
    lines = ["| run | class | requests | req/s | p50 ms | p99 ms | errors | statuses | server RSS peak |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for flood, (rows, peak) in results.items():
        run = "with flooder" if flood else "quiet"
        for row in rows:
            statuses = " ".join(f"{k}×{v}" for k, v in row.statuses.items())
            cells = [run, row.name, str(row.requests), f"{row.rate:.1f}", f"{row.p50_ms:.0f}", f"{row.p99_ms:.0f}",
                     str(row.errors), statuses, f"{peak / 2**20:.0f} MiB"]  # fmt: skip
            table.add_row(*cells)
            lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    print("\n".join(lines))
    quiet = {row.name: row for row in results[False][0]}
    for row in results[True][0]:
        if row.name in quiet:
            print(f"{row.name}: p99 with flooder / quiet = {row.p99_ms / quiet[row.name].p99_ms:.2f}×, "
                  f"req/s ratio {row.rate / quiet[row.name].rate:.2f}×")  # fmt: skip
    print(f"load after: {load_after:.1f}; command: python -m bench soak")


if __name__ == "__main__":
    main()
