"""A real Veil in this process (`Api`: a TestClient with the admin key), `veil serve` in a subprocess
(`Server`) and the CLI in-process (`run_cli`); the `ctx`, `api`, `database_url` and `photos` fixtures built on
them are in tests/conftest.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from veil.cli import app as cli_app
from veil.services.context import AppContext

REPO = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("VEIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TRAINING = "/customvision/v3.3/training"
VEIL_BIN = str(Path(sys.executable).with_name("veil"))


def postgres_problem() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # any driver/network failure means: skip, saying why
        return f"{exc.__class__.__name__}: {exc}".splitlines()[0]


@dataclass
class Api:
    """A TestClient on a real Veil, with the admin key, plus the steps a user takes."""

    client: TestClient
    key: str
    ctx: AppContext
    headers: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.headers = {"Training-Key": self.key}

    def create_project(self, name: str = "ants and bees", **params: str) -> str:
        response = self.client.post(f"{TRAINING}/projects", params={"name": name, **params}, headers=self.headers)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def create_tag(self, project_id: str, name: str) -> str:
        response = self.client.post(
            f"{TRAINING}/projects/{project_id}/tags", params={"name": name}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def upload(self, project_id: str, files: list[Path], tag_id: str | None = None) -> list[str]:
        parts = [("imageData", (f.name, f.read_bytes(), "image/jpeg")) for f in files]
        params = {"tagIds": tag_id} if tag_id else {}
        response = self.client.post(
            f"{TRAINING}/projects/{project_id}/images", params=params, files=parts, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return [r["image"]["id"] for r in response.json()["images"]]

    def image_data(self, project_id: str, image_id: str) -> httpx.Response:
        return self.client.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data", headers=self.headers)


# --- a real `veil serve` ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`veil serve` in a subprocess; `admin_key` is what it printed on first start."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    admin_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "VEIL_DATABASE_URL": self.database_url, "PYTHONUNBUFFERED": "1"}

    def start(self, timeout_s: float = 60) -> Server:
        self.output.clear()
        command = [
            VEIL_BIN,
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--no-worker",
        ]
        self.process = subprocess.Popen(
            command, cwd=REPO, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        threading.Thread(target=self._drain, args=(self.process,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"veil serve exited {self.process.returncode}: {''.join(self.output)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self._read_admin_key()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"veil serve did not become healthy: {''.join(self.output)}")

    def _drain(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)

    def _read_admin_key(self) -> None:
        for line in list(self.output):
            if re.fullmatch(r"[0-9a-f]{64}", line.strip()):
                self.admin_key = line.strip()

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing — a power cut as far as Veil can tell."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def run_cli(*args: str, data_dir: Path, database_url: str) -> Result:
    """A `veil` command, in-process (the same typer app as the installed entry point), stdout and stderr apart."""
    env = {"VEIL_DATABASE_URL": database_url, "VEIL_DATA_DIR": str(data_dir)}
    saved = {k: os.environ.get(k) for k in env}
    try:
        return CliRunner().invoke(cli_app, [*args, "--data-dir", str(data_dir)], env=env)
    finally:  # the CLI exports VEIL_DATA_DIR for its child processes; do not leak it into other tests
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
