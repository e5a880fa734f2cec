"""A live `veil serve` subprocess with a fresh data directory (`make_server`); the `veil_server`, `trainer`,
`predictor` and `http` fixtures built on it are in tests/conftest.py.

Everything here is real: the CLI creates the keys, the server is a separate process on a free port, and the
clients are `azure.cognitiveservices.vision.customvision` with msrest credentials as a user writes them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.support.in_process import free_port

VEIL = [str(Path(sys.executable).with_name("veil"))]
START_TIMEOUT_S = 60.0


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
