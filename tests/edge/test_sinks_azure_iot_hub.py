"""The Azure IoT Hub sink against a real Mosquitto TLS listener (a test CA, passwords required) standing in for the
hub: the broker only lets the sink in with the exact username and SAS token it computed, and the test checks that
token independently (its own HMAC), the device-to-cloud topic with IoT Hub's property bag, and the payload."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tests.edge.conftest import MOSQUITTO, free_port, wait_for_port
from tests.edge.test_mqtt_tls import _certificate, _write

from veil.edge.config import AzureIotHubSink, ConfigError, parse_config
from veil.edge.events import EventMessage, FrameInfo, PersonEvent
from veil.edge.metrics import EdgeMetrics
from veil.edge.sinks import AzureIotHubEventSink

HUB, DEVICE = "veil-test.azure-devices.net", "door-cam"


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("veil test CA", ca_key, None, None, ca=True)
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key, ca=False)
    pem = serialization.Encoding.PEM
    key_bytes = server_key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return (
        _write(tmp_path / "ca.pem", ca.public_bytes(pem)),
        _write(tmp_path / "server.pem", server.public_bytes(pem)),
        _write(tmp_path / "server.key", key_bytes),
    )


def _start_broker(
    tmp_path: Path, port: int, users: dict[str, str], tls: tuple[Path, Path, Path]
) -> subprocess.Popen[bytes]:
    passwords = tmp_path / "passwords"
    for number, (user, password) in enumerate(users.items()):
        create = ["-c"] if number == 0 else []
        subprocess.run(
            ["mosquitto_passwd", "-b", *create, str(passwords), user, password], check=True, capture_output=True
        )
    ca_file, cert_file, key_file = tls
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        f"cafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}\npersistence false\n"
        f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    process = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_for_port(port):
        process.terminate()
        pytest.skip("mosquitto did not start with the TLS listener")
    return process


def _message() -> EventMessage:
    event = PersonEvent("personLineEvent", "door", ("a" * 32,), {"trackingId": "a" * 32, "status": "CrossLeft"})
    return EventMessage(event, FrameInfo("door cam/1", 7, 640, 480, 0.7), ())


def _sink(port: int, ca_file: Path, key: bytes, metrics: EdgeMetrics | None = None) -> AzureIotHubEventSink:
    connection = (
        f"HostName={HUB};DeviceId={DEVICE};SharedAccessKey={base64.b64encode(key).decode()};GatewayHostName=127.0.0.1"
    )
    spec = AzureIotHubSink(
        type="azure_iot_hub",
        connection_string=connection,  # type: ignore[arg-type]
        port=port,
        ca_certs=ca_file,
        properties={"site": "north"},
    )
    return AzureIotHubEventSink(spec, metrics or EdgeMetrics())


def _check_sas(password: str, key: bytes) -> None:
    """IoT Hub's SAS token, verified from the documented recipe rather than Veil's code."""
    assert password.startswith("SharedAccessSignature ")
    fields = dict(part.split("=", 1) for part in password.removeprefix("SharedAccessSignature ").split("&"))
    assert set(fields) == {"sr", "sig", "se"}
    assert urllib.parse.unquote(fields["sr"]) == f"{HUB}/devices/{DEVICE}"
    assert abs(int(fields["se"]) - (time.time() + 3600)) < 30  # the default one-hour token
    expected = hmac.new(key, f"{fields['sr']}\n{fields['se']}".encode(), hashlib.sha256).digest()
    assert base64.b64decode(urllib.parse.unquote(fields["sig"])) == expected


@pytest.mark.skipif(
    not MOSQUITTO.exists() or shutil.which("mosquitto_passwd") is None, reason="mosquitto and mosquitto_passwd needed"
)
def test_device_to_cloud_messages_reach_the_hub_with_a_sas_token_and_iot_hub_properties(tmp_path: Path) -> None:
    tls = _tls_files(tmp_path)
    port, key = free_port(), secrets.token_bytes(32)
    sink = _sink(port, tls[0], key)  # connects (and retries) in the background
    assert sink.username == f"{HUB}/{DEVICE}/?api-version=2021-04-12"
    _check_sas(sink.password, key)
    broker = _start_broker(tmp_path, port, {sink.username: sink.password, "reader": "r3ad"}, tls)
    received: list[tuple[str, bytes]] = []
    ready = threading.Event()
    reader = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    reader.username_pw_set("reader", "r3ad")
    reader.tls_set(ca_certs=str(tls[0]))
    reader.on_connect = lambda c, u, f, r, p: c.subscribe(f"devices/{DEVICE}/messages/events/#", qos=1)
    reader.on_subscribe = lambda c, u, m, r, p: ready.set()
    reader.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    try:
        reader.connect("127.0.0.1", port)
        reader.loop_start()
        assert ready.wait(5)
        message = _message()
        sink.send(message)
        sink.close(20)  # waits for the broker's PUBACK: the broker accepted this username and token
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = _sink(port, tls[0], secrets.token_bytes(32))  # the same device with a wrong key
        deadline = time.monotonic() + 10
        while (
            refused._metrics.value("veil_edge_sink_errors_total", sink=refused.name) == 0
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        refused_errors = refused._metrics.value("veil_edge_sink_errors_total", sink=refused.name)
        refused.close(0.5)
    finally:
        reader.disconnect()
        reader.loop_stop()
        broker.terminate()
        broker.wait(5)
    assert len(received) == 1
    topic, payload = received[0]
    prefix = f"devices/{DEVICE}/messages/events/"
    assert topic.startswith(prefix)
    properties = dict(urllib.parse.parse_qsl(topic.removeprefix(prefix), strict_parsing=True))
    assert properties == {
        "$.mid": message.event.id,
        "$.ct": "application/json",
        "$.ce": "utf-8",
        "eventType": "personLineEvent",
        "cameraId": "door cam/1",
        "site": "north",
    }
    assert json.loads(payload) == message.to_dict()
    assert refused_errors >= 1  # a token signed with another key is not let in


def test_a_bad_connection_string_is_refused_without_echoing_the_key() -> None:
    secret = base64.b64encode(b"k" * 32).decode()
    cases = [
        (f"HostName={HUB};SharedAccessKey={secret}", "lacks DeviceId"),
        (f"HostName={HUB};DeviceId=d;SharedAccessKey=not*base64", "SharedAccessKey is not base64"),
        (f"HostName={HUB};DeviceId=d;x509=true", "X.509 device authentication is not supported"),
    ]
    for connection, message in cases:
        raw = {
            "cameras": [{"id": "c", "source": {"type": "folder", "path": "."}}],
            "sinks": [{"type": "azure_iot_hub", "connection_string": connection}],
        }
        with pytest.raises(ConfigError, match=message) as caught:
            parse_config(raw)
        assert secret not in str(caught.value) and "not*base64" not in str(caught.value)
