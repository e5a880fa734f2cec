"""A live `veil serve` subprocess with a fresh data directory, and the official Custom Vision SDK aimed at it.

Everything here is real: the CLI creates the keys, the server is a separate process on a free port, and the
clients are `azure.cognitiveservices.vision.customvision` with msrest credentials as a user writes them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

VEIL = [str(Path(sys.executable).with_name("veil"))]
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VeilServer:
    """A running `veil serve` and the keys made for it with `veil keys create`."""

    data_dir: Path
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    serve_args: tuple[str, ...] = ()  # extra `veil serve` options, e.g. ("--no-worker",)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*VEIL, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"veil {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def create_key(self, role: str, *extra: str) -> str:
        out = self.cli("keys", "create", "--role", role, *extra).stdout.strip().splitlines()
        key = out[-1].strip()
        assert re.fullmatch(r"[A-Za-z0-9_\-.]{20,}", key), f"last stdout line is not a key: {key!r}"
        return key

    def start(self) -> None:
        assert self.process is None
        self.log_path = self.data_dir.parent / f"serve-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*VEIL, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.serve_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"veil serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.endpoint}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"veil serve not healthy after {START_TIMEOUT_S}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""


def make_server(tmp: Path, **env_extra: str) -> VeilServer:
    data_dir = tmp / "veil-data"
    env = {
        **os.environ,
        "VEIL_DATA_DIR": str(data_dir),
        "PYTHONUNBUFFERED": "1",
        **env_extra,
    }
    if "VEIL_DATABASE_URL" not in env_extra:
        env.pop("VEIL_DATABASE_URL", None)  # the default: SQLite inside the data directory
    return VeilServer(data_dir=data_dir, port=free_port(), env=env)


@pytest.fixture(scope="session")
def veil_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VeilServer]:
    """One server for the SDK session tests: admin (training) and predictor keys made with the real CLI."""
    # A short Regular detection budget keeps the suite within minutes (the engine's default is longer).
    server = make_server(tmp_path_factory.mktemp("compat"), VEIL_REGULAR_TRAINING_MINUTES="1")
    server.start()
    server.keys["admin"] = server.create_key("admin")
    server.keys["predictor"] = server.create_key("predictor")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trainer(veil_server: VeilServer):  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    credentials = ApiKeyCredentials(in_headers={"Training-key": veil_server.keys["admin"]})
    return CustomVisionTrainingClient(veil_server.endpoint, credentials)


@pytest.fixture(scope="session")
def predictor(veil_server: VeilServer):  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from msrest.authentication import ApiKeyCredentials

    credentials = ApiKeyCredentials(in_headers={"Prediction-key": veil_server.keys["predictor"]})
    return CustomVisionPredictionClient(veil_server.endpoint, credentials)


@pytest.fixture()
def http(veil_server: VeilServer) -> Iterator[httpx.Client]:
    """Raw HTTP with the admin key as `Training-Key`, for shapes and errors the SDK does not reach."""
    with httpx.Client(
        base_url=veil_server.endpoint, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60
    ) as client:
        yield client
