"""Veil as a cluster of real processes: `veil serve` / `veil worker` nodes, optionally each in a network namespace
the test makes, sharing PostgreSQL (127.0.0.1:5432, or its Unix socket from inside a namespace) and SeaweedFS.

    >>> with ClusterNetwork.create(2) as net:                      # a bridge + one veth pair per namespace
    ...     node = VeilProcess.serve(env, host=net.nodes[0].ip, netns=net.nodes[0].name).start()

Addresses come from 198.18.0.0/15 (RFC 2544's range for lab networks), one random /24 per test so parallel runs
do not collide; nothing is routed off the machine.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
VEIL_BIN = str(Path(sys.executable).with_name("veil"))
PG_ADMIN_URL = os.environ.get("VEIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SOCKET_DIR = "/var/run/postgresql"


# --- PostgreSQL --------------------------------------------------------------------------------------------


def pg_unreachable_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # any driver/network failure means: skip, saying why
        return f"PostgreSQL at {PG_ADMIN_URL} unreachable: {exc}".splitlines()[0]


@dataclass(frozen=True)
class PgSchema:
    name: str

    @property
    def tcp_url(self) -> str:
        return f"{PG_ADMIN_URL}?options=-csearch_path%3D{self.name}"

    @property
    def socket_url(self) -> str:
        """The same database through the server's Unix socket: reachable from any network namespace."""
        database = PG_ADMIN_URL.rsplit("/", 1)[1]
        return f"postgresql+psycopg://postgres@/{database}?host={PG_SOCKET_DIR}&options=-csearch_path%3D{self.name}"


@contextmanager
def pg_schema() -> Iterator[PgSchema]:
    import psycopg

    schema = PgSchema(f"veil_cluster_{secrets.token_hex(5)}")
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema.name}"')
    try:
        yield schema
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema.name}" CASCADE')


def master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# --- network namespaces ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    name: str  # the namespace
    ip: str


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@dataclass
class ClusterNetwork:
    """A bridge in the root namespace (the host of PostgreSQL and SeaweedFS) and one namespace per node,
    each joined to it by a veth pair."""

    bridge: str
    host_ip: str
    nodes: list[Node]
    _links: list[str] = field(default_factory=list)

    @staticmethod
    def unavailable_reason() -> str | None:
        if shutil.which("ip") is None:
            return "the `ip` command (iproute2) is missing"
        if os.geteuid() != 0:
            return "making network namespaces needs root"
        probe = f"veilp{secrets.token_hex(3)}"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            return f"cannot make a network namespace here: {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
        return None

    @classmethod
    @contextmanager
    def create(cls, count: int) -> Iterator[ClusterNetwork]:
        tag = secrets.token_hex(3)
        subnet = f"198.{18 + secrets.randbelow(2)}.{secrets.randbelow(256)}"
        net = cls(bridge=f"vb{tag}", host_ip=f"{subnet}.254", nodes=[])
        try:
            _ip("link", "add", net.bridge, "type", "bridge")
            net._links.append(net.bridge)
            _ip("addr", "add", f"{net.host_ip}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
            for index in range(count):
                node = Node(name=f"veil-{tag}-{index}", ip=f"{subnet}.{index + 1}")
                _ip("netns", "add", node.name)
                net.nodes.append(node)
                inside, outside = f"vi{tag}{index}", f"vo{tag}{index}"
                _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
                net._links.append(outside)
                _ip("link", "set", inside, "netns", node.name)
                _ip("link", "set", outside, "master", net.bridge)
                _ip("link", "set", outside, "up")
                _ip("-n", node.name, "addr", "add", f"{node.ip}/24", "dev", inside)
                _ip("-n", node.name, "link", "set", inside, "up")
                _ip("-n", node.name, "link", "set", "lo", "up")
            yield net
        finally:
            net.destroy()

    def destroy(self) -> None:
        for node in self.nodes:
            subprocess.run(["ip", "netns", "del", node.name], capture_output=True)
        for link in reversed(self._links):
            subprocess.run(["ip", "link", "del", link], capture_output=True)


# --- Veil processes ----------------------------------------------------------------------------------------


@dataclass
class VeilProcess:
    """One `veil serve` or `veil worker` process (in its own session, so a kill takes its job children too)."""

    args: list[str]
    env: dict[str, str]
    netns: str | None = None
    url: str | None = None  # for `serve`: where /healthz answers
    hostname: str | None = None  # a host name of its own (a UTS namespace), as on another machine
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @classmethod
    def serve(
        cls, env: dict[str, str], host: str, port: int, netns: str | None = None, extra: tuple[str, ...] = ()
    ) -> VeilProcess:
        scheme = "https" if "--tls-cert" in extra else "http"
        args = ["serve", "--host", host, "--port", str(port), *extra]
        return cls(args=args, env=env, netns=netns, url=f"{scheme}://{host}:{port}")

    @classmethod
    def worker(
        cls, env: dict[str, str], netns: str | None = None, poll_seconds: float = 0.5, hostname: str | None = None
    ) -> VeilProcess:
        return cls(args=["worker", "--poll-seconds", str(poll_seconds)], env=env, netns=netns, hostname=hostname)

    @property
    def admin_key(self) -> str | None:
        for line in self.output:
            if re.fullmatch(r"[0-9a-f]{64}", line.strip()):
                return line.strip()
        return None

    def start(self, timeout_s: float = 90, verify: str | bool = True) -> VeilProcess:
        command = [VEIL_BIN, *self.args]
        if self.hostname:  # its own UTS namespace: other nodes cannot judge its processes by pid, only by lease
            script = 'hostname "$VEIL_TEST_HOSTNAME" && exec "$@"'
            command = ["unshare", "--uts", "--", "sh", "-c", script, "sh", *command]
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        self.output.clear()
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env, "VEIL_TEST_HOSTNAME": self.hostname or ""},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"veil {self.args[0]} exited {self.process.returncode}: {self.log()}")
            if self._ready(verify):
                return self
            time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"veil {self.args[0]} not ready after {timeout_s:.0f} s: {self.log()}")

    def _ready(self, verify: str | bool) -> bool:
        if self.url is None:  # a worker: ready once it says so
            return any(line.startswith("Veil worker") for line in self.output)
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2, verify=verify).status_code == 200
        except httpx.HTTPError:
            return False

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def log(self, lines: int = 40) -> str:
        return "".join(self.output[-lines:])

    def kill(self) -> None:
        """SIGKILL to the whole process group: the server or worker and any job process it spawned."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(15)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
