"""Store fixtures: a real SeaweedFS (S3) server for the session, a blob store of either backend per test, and an
empty database on SQLite (a file) or PostgreSQL (a fresh schema in the `test` database)."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.store.seaweedfs import SeaweedFS, unavailable_reason

from veil.config import Settings, get_settings
from veil.store.blob_url import open_blob_store
from veil.store.blobs import BlobStore


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    server = SeaweedFS.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The AWS variables of the test server in this process's environment (boto3 reads them, as Veil's users)."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs


@pytest.fixture(params=["file", "s3"])
def blob_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings whose blob store is a local directory or a fresh prefix of the SeaweedFS bucket."""
    if request.param == "file":
        return get_settings(data_dir=tmp_path / "data")
    server: SeaweedFS = request.getfixturevalue("s3_env")
    return get_settings(data_dir=tmp_path / "data", blob_url=f"s3://{server.bucket}/t-{secrets.token_hex(4)}")


@pytest.fixture
def blobs(blob_settings: Settings) -> BlobStore:
    return open_blob_store(blob_settings)


PG_ADMIN_URL = os.environ.get("VEIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_unreachable() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # any driver/network failure means: skip, saying why
        return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


def new_pg_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema of the test database; dropped afterwards."""
    reason = pg_unreachable()
    if reason:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} unreachable: {reason}")
    import psycopg

    schema = f"veil_store_{secrets.token_hex(6)}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'veil.db'}"
        return
    yield from new_pg_schema()


@pytest.fixture
def second_database_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the same kind (where a backup is restored)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'veil.db'}"
        return
    yield from new_pg_schema()


# --- a real `veil serve`, and the `veil` command, as an operator runs them -----------------------------------

VEIL_BIN = str(Path(sys.executable).with_name("veil"))
TRAINING = "/customvision/v3.3/training"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def veil_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    return {**env, "VEIL_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **extra}


def veil(*args: str, data_dir: Path, database_url: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEIL_BIN, *args, "--data-dir", str(data_dir)],
        env=veil_env(database_url, **extra), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@dataclass
class Served:
    """`veil serve` in a subprocess with the admin key it printed on first start (or the one given)."""

    data_dir: Path
    database_url: str
    key: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    worker: bool = False  # run training jobs in this server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Served:
        command = [VEIL_BIN, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        command += [] if self.worker else ["--no-worker"]
        self.process = subprocess.Popen(
            command, env=veil_env(self.database_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.process.stdout:
            if re.fullmatch(r"[0-9a-f]{64}", line.strip()):
                self.key = line.strip()  # printed after the URL on first start only
                break
            if "Application startup complete" in line or time.monotonic() > deadline:
                break
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    threading.Thread(target=self.process.stdout.read, daemon=True).start()
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("veil serve did not become healthy")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Training-Key": self.key}, timeout=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
