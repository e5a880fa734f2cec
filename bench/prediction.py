"""Prediction throughput: 4 concurrent clients for 30 s against `classify/.../image/nostore` of a live server.

Starts a real `veil serve` on a free port with a fresh data directory, trains a small ants/bees
classifier (Regular, 5 photos per tag) through the REST API, publishes it, then 4 client threads post real
held-out photos for the duration. Reports requests/s, p50/p99 latency and errors, next to Azure Custom Vision
S0's published cap of 20 prediction calls per second (the ratio is Veil's throughput over that cap).

    python -m bench prediction         # or: make bench BENCH=prediction
    VEIL_BENCH_SECONDS=10 python -m bench prediction
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "datasets" / "ants-bees"
VEIL = str(Path(sys.executable).with_name("veil"))
TRAINING = "/customvision/v3.3/training"
PREDICTION = "/customvision/v3.1/prediction"
AZURE_S0_CALLS_PER_SECOND = 20.0  # Custom Vision S0 prediction limit (learn.microsoft.com, "Limits and quotas")
CLIENTS = 4
SECONDS = float(os.environ.get("VEIL_BENCH_SECONDS", "30"))


@dataclass
class ClientStats:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _photos(folder: str, count: int, skip: int = 0) -> list[bytes]:
    files = sorted(p for p in (DATASET / folder).iterdir() if p.suffix.lower() == ".jpg")
    return [p.read_bytes() for p in files[skip : skip + count]]


def _start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "VEIL_DATA_DIR": str(data_dir)}
    env.pop("VEIL_DATABASE_URL", None)
    process = subprocess.Popen(
        [VEIL, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{endpoint}/healthz", timeout=2).status_code == 200:
                return process, endpoint
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("veil serve did not become healthy")


def _key(data_dir: Path, role: str) -> str:
    env = {**os.environ, "VEIL_DATA_DIR": str(data_dir)}
    out = subprocess.run([VEIL, "keys", "create", "--role", role], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def _train_classifier(endpoint: str, key: str) -> str:
    with httpx.Client(base_url=endpoint, headers={"Training-Key": key}, timeout=120) as http:
        project = http.post(f"{TRAINING}/projects", params={"name": "bench"}).json()
        for tag, folder in (("ant", "train/ants"), ("bee", "train/bees")):
            tag_id = http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": tag}).json()["id"]
            for data in _photos(folder, 5):
                http.post(f"{TRAINING}/projects/{project['id']}/images", params={"tagIds": tag_id}, content=data)
        iteration = http.post(f"{TRAINING}/projects/{project['id']}/train").json()
        while iteration["status"] == "Training":
            time.sleep(1)
            iteration = http.get(f"{TRAINING}/projects/{project['id']}/iterations/{iteration['id']}").json()
        if iteration["status"] != "Completed":
            raise RuntimeError(f"training failed: {iteration.get('trainingErrorDetails')}")
        http.post(
            f"{TRAINING}/projects/{project['id']}/iterations/{iteration['id']}/publish",
            params={"publishName": "bench", "predictionId": "none"},
        ).raise_for_status()
        return str(project["id"])


def _client(url: str, key: str, images: list[bytes], stop_at: float, stats: ClientStats) -> None:
    with httpx.Client(headers={"Prediction-Key": key, "Content-Type": "application/octet-stream"}, timeout=30) as c:
        index = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                response = c.post(url, content=images[index % len(images)])
                ok = response.status_code == 200 and bool(response.json().get("predictions"))
            except httpx.HTTPError:
                ok = False
            stats.latencies_s.append(time.perf_counter() - started)
            stats.errors += not ok
            index += 1


def run_load(url: str, key: str, images: list[bytes], seconds: float) -> tuple[list[float], int, float]:
    stats = [ClientStats() for _ in range(CLIENTS)]
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    threads = [threading.Thread(target=_client, args=(url, key, images, stop_at, s)) for s in stats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return [lat for s in stats for lat in s.latencies_s], sum(s.errors for s in stats), elapsed


def main() -> None:
    console = Console()
    with tempfile.TemporaryDirectory(prefix="veil-bench-") as tmp:
        data_dir, port = Path(tmp) / "data", _free_port()
        process, endpoint = _start_server(data_dir, port)
        try:
            admin, predictor = _key(data_dir, "admin"), _key(data_dir, "predictor")
            project_id = _train_classifier(endpoint, admin)
            url = f"{endpoint}{PREDICTION}/{project_id}/classify/iterations/bench/image/nostore"
            images = _photos("val/ants", 10) + _photos("val/bees", 10)
            run_load(url, predictor, images[:4], 3.0)  # warm-up: model load, connection pools
            latencies, errors, elapsed = run_load(url, predictor, images, SECONDS)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    rate = len(latencies) / elapsed
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    table = Table(title=f"Prediction: {CLIENTS} clients × {SECONDS:.0f} s, classify/.../image/nostore")
    for column in ("server", "requests", "requests/s", "p50 ms", "p99 ms", "errors", "vs Azure S0 cap"):
        table.add_column(column)
    ratio = f"{rate / AZURE_S0_CALLS_PER_SECOND:.2f}×"
    table.add_row("Veil (this run)", str(len(latencies)), f"{rate:.1f}", f"{p50:.0f}", f"{p99:.0f}", str(errors), ratio)
    cap = f"≤ {AZURE_S0_CALLS_PER_SECOND:.0f} (published cap)"
    table.add_row("Azure Custom Vision S0", "—", cap, "—", "—", "—", "1.00×")
    console.print(table)
    print("| server | requests | requests/s | p50 ms | p99 ms | errors | vs Azure S0 cap |")
    print("|---|---|---|---|---|---|---|")
    print(f"| Veil | {len(latencies)} | {rate:.1f} | {p50:.0f} | {p99:.0f} | {errors} | "
          f"{rate / AZURE_S0_CALLS_PER_SECOND:.2f}× |")  # fmt: skip
    print(f"| Azure Custom Vision S0 | — | ≤ {AZURE_S0_CALLS_PER_SECOND:.0f} (cap) | — | — | — | 1.00× |")
    print("command: python -m bench prediction")


if __name__ == "__main__":
    main()
