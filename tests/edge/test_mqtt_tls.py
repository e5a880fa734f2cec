"""The MQTT sink against a real Mosquitto that demands TLS and a password."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import pwd
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.edge.conftest import MOSQUITTO, free_port, wait_for_port

from veil.edge.config import MqttSink, MqttTls
from veil.edge.events import EventMessage, FrameInfo, PersonEvent
from veil.edge.metrics import EdgeMetrics
from veil.edge.sinks import MqttEventSink


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey | None,
    ca: bool,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    if not MOSQUITTO.exists() or shutil.which("mosquitto_passwd") is None:
        pytest.skip("mosquitto and mosquitto_passwd are needed (Debian package `mosquitto`)")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("veil test CA", ca_key, None, None, ca=True)
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    ca_file = _write(tmp_path / "ca.pem", ca.public_bytes(pem))
    cert_file = _write(tmp_path / "server.pem", server.public_bytes(pem))
    key_file = _write(
        tmp_path / "server.key",
        server_key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
    )
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "camera", "s3cret"], check=True, capture_output=True
    )
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\npersistence false\n"
        # Started as root, mosquitto would switch to its own user, who cannot read pytest's 0700 tmp dirs.
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    process = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_port(port):
            pytest.skip("mosquitto did not start with the TLS listener")
        yield port, ca_file
    finally:
        process.terminate()
        process.wait(5)


def _message() -> EventMessage:
    event = PersonEvent("personLineEvent", "door", ("a" * 32,), {"trackingId": "a" * 32, "status": "CrossLeft"})
    return EventMessage(event, FrameInfo("door-cam", 7, 640, 480, 0.7), ())


def _subscribe(port: int, ca_file: Path) -> tuple[mqtt.Client, list[dict[str, object]]]:
    received: list[dict[str, object]] = []
    ready = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.username_pw_set("camera", "s3cret")
    client.tls_set(ca_certs=str(ca_file))
    client.on_connect = lambda c, u, f, r, p: c.subscribe("veil/edge/#", qos=1)
    client.on_subscribe = lambda c, u, m, r, p: ready.set()
    client.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(5)
    return client, received


def test_events_are_delivered_over_tls_with_credentials(secure_broker: tuple[int, Path]) -> None:
    port, ca_file = secure_broker
    subscriber, received = _subscribe(port, ca_file)
    metrics = EdgeMetrics()
    spec = MqttSink(type="mqtt", port=port, username="camera", password="s3cret", tls=MqttTls(ca_certs=ca_file))
    sink = MqttEventSink(spec, metrics)
    sink.send(_message())
    sink.close(10)  # waits for the broker's PUBACK
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    subscriber.disconnect()
    subscriber.loop_stop()
    assert [m["events"][0]["properties"]["status"] for m in received] == ["CrossLeft"]  # type: ignore[index]
    assert metrics.value("veil_edge_sink_dropped_events_total", sink=sink.name) == 0


def test_a_wrong_password_is_counted_and_does_not_block(secure_broker: tuple[int, Path]) -> None:
    port, ca_file = secure_broker
    metrics = EdgeMetrics()
    spec = MqttSink(type="mqtt", port=port, username="camera", password="wrong", tls=MqttTls(ca_certs=ca_file))
    sink = MqttEventSink(spec, metrics)
    deadline = time.monotonic() + 10
    while metrics.value("veil_edge_sink_errors_total", sink=sink.name) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sink.send(_message())  # kept in the bounded buffer: the broker refused us
    assert metrics.value("veil_edge_sink_errors_total", sink=sink.name) >= 1
    assert sink.pending == 1
    sink.close(0.5)
    assert metrics.value("veil_edge_sink_dropped_events_total", sink=sink.name) == 1
