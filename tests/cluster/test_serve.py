"""`veil serve` on one node: several API processes on one port (`--workers N`), HTTPS with a minimum TLS version and
HSTS, and one-line refusals of a half-given TLS configuration."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from tests.cluster.harness import VEIL_BIN, VeilProcess
from tests.store.seaweedfs import free_ports

TRAINING = "/customvision/v3.3/training"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _api_pids(server: VeilProcess) -> set[str]:
    return {line.split("[")[1].split("]")[0] for line in server.output if "Started server process" in line}


def _metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_workers_share_one_port(tmp_path: Path) -> None:
    [port] = free_ports(1)
    server = VeilProcess.serve({"VEIL_DATA_DIR": str(tmp_path / "data")}, "127.0.0.1", port, extra=("--workers", "2"))
    server.start()
    try:
        deadline = time.monotonic() + 30
        while len(_api_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_api_pids(server)) == 2, server.log()
        key = server.admin_key
        assert key and sum(1 for line in server.output if "admin key was created" in line) == 1

        def create(i: int) -> int:
            with httpx.Client(base_url=server.url or "", headers={"Training-Key": key}, timeout=60) as http:
                return http.post(f"{TRAINING}/projects", params={"name": f"p{i}"}).status_code

        with ThreadPoolExecutor(8) as pool:  # concurrent writers through both processes, one SQLite database
            assert set(pool.map(create, range(24))) == {200}
        with httpx.Client(base_url=server.url or "", headers={"Training-Key": key}) as http:
            assert len(http.get(f"{TRAINING}/projects").json()) == 24
            # Whichever process answers a scrape, it reports the requests of both.
            for _ in range(4):
                created = _metric(http.get("/metrics").text, "veil_http_request_duration_seconds_count",
                                  method="POST", route=f"{TRAINING}/projects", status="200")  # fmt: skip
                assert created == 24
    finally:
        server.stop()
    assert server.process is not None and server.process.returncode == 0, server.log()


def test_tls_with_minimum_version_and_hsts(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    [port] = free_ports(1)
    extra = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-min-version", "1.3")
    server = VeilProcess.serve({"VEIL_DATA_DIR": str(tmp_path / "data")}, "127.0.0.1", port, extra=extra)
    server.start(verify=str(cert))
    try:
        response = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=str(cert))
        assert response.status_code == 200 and response.http_version == "HTTP/1.1"
        assert response.headers["strict-transport-security"].startswith("max-age=31536000")

        old_client = ssl.create_default_context(cafile=str(cert))
        old_client.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=old_client)
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port gets no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        server.stop()


def test_plain_http_sends_no_hsts(tmp_path: Path) -> None:
    [port] = free_ports(1)
    server = VeilProcess.serve({"VEIL_DATA_DIR": str(tmp_path / "data")}, "127.0.0.1", port).start()
    try:
        assert "strict-transport-security" not in httpx.get(f"{server.url}/healthz").headers
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", "CERT"], "--tls-cert and --tls-key go together"),
        (["--tls-cert", "CERT", "--tls-key", "MISSING"], "not found"),
        (["--tls-cert", "CERT", "--tls-key", "KEY", "--tls-min-version", "1.0"], "expected 1.2 or 1.3"),
    ],
)
def test_bad_tls_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    cert, key = _self_signed(tmp_path)
    paths = {"CERT": str(cert), "KEY": str(key), "MISSING": str(tmp_path / "missing.pem")}
    command = [VEIL_BIN, "serve", "--data-dir", str(tmp_path / "data"), *[paths.get(a, a) for a in args]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
