"""Where events go: stdout JSON lines, a rotating file, an HTTP webhook, an MQTT broker, Azure IoT Hub.

Every sink has `send(message)` (never blocks the video loop for long, never raises for delivery problems) and
`close(timeout)` (flushes what it can). Network sinks buffer in memory up to a bound, then drop with a
counter, so a dead consumer never stops the pipeline.

Example::

    >>> from veil.edge.metrics import EdgeMetrics
    >>> sink = StdoutEventSink(EdgeMetrics())
    >>> sink.close(1.0)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import logging.handlers
import queue
import ssl
import sys
import threading
import time
import urllib.parse
from typing import Any, Protocol

import httpx
import paho.mqtt.client as mqtt

from veil.edge.config import (
    AzureIotHubSink,
    DeviceConnection,
    FileSink,
    MqttSink,
    MqttTls,
    SinkSpec,
    StdoutSink,
    WebhookSink,
    parse_connection_string,
)
from veil.edge.events import EventMessage
from veil.edge.metrics import EdgeMetrics

log = logging.getLogger(__name__)


class EventSink(Protocol):
    name: str

    def send(self, message: EventMessage) -> None: ...

    def close(self, timeout: float) -> None: ...


class StdoutEventSink:
    name = "stdout"

    def __init__(self, metrics: EdgeMetrics) -> None:
        self._metrics = metrics

    def send(self, message: EventMessage) -> None:
        try:
            sys.stdout.write(message.to_json() + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # closed pipe: count it, keep running
            self._metrics.sink_errors.labels(sink=self.name).inc()

    def close(self, timeout: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()


class RotatingFileEventSink:
    """JSON lines in a file rotated by size (logging's RotatingFileHandler)."""

    def __init__(self, spec: FileSink, metrics: EdgeMetrics) -> None:
        self.name = f"file:{spec.path}"
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        self._handler = logging.handlers.RotatingFileHandler(
            spec.path, maxBytes=spec.max_bytes, backupCount=spec.backup_count, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self._metrics = metrics

    def send(self, message: EventMessage) -> None:
        record = logging.LogRecord("veil.edge.events", logging.INFO, "", 0, message.to_json(), None, None)
        self._handler.emit(record)  # emit() reports its own failures through handleError

    def close(self, timeout: float) -> None:
        self._handler.flush()
        self._handler.close()


class _BoundedQueue:
    """A FIFO that drops its OLDEST item when full (fresh events matter more), counting each drop."""

    def __init__(self, size: int, on_drop: Any) -> None:
        self._queue: queue.Queue[EventMessage] = queue.Queue(maxsize=size)
        self._on_drop = on_drop

    def put(self, item: EventMessage) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                    self._on_drop()
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> EventMessage | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def done(self) -> None:
        self._queue.task_done()

    def empty(self) -> bool:
        return self._queue.empty()


class WebhookEventSink:
    """POSTs each message as JSON from a background thread; retries with exponential backoff, then drops."""

    def __init__(self, spec: WebhookSink, metrics: EdgeMetrics) -> None:
        self.name = f"webhook:{spec.url}"
        self._spec, self._metrics = spec, metrics
        self._queue = _BoundedQueue(spec.queue_size, self._count_drop)
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=spec.timeout_seconds, headers=spec.headers)
        self._thread = threading.Thread(target=self._run, name="veil-webhook", daemon=True)
        self._thread.start()

    def _count_drop(self) -> None:
        self._metrics.sink_dropped.labels(sink=self.name).inc()

    def send(self, message: EventMessage) -> None:
        self._queue.put(message)

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            message = self._queue.get(timeout=0.2)
            if message is None:
                continue
            try:
                self._deliver(message)
            finally:
                self._queue.done()

    def _deliver(self, message: EventMessage) -> None:
        delay = self._spec.backoff_initial_seconds
        for attempt in range(self._spec.max_retries + 1):
            try:
                response = self._client.post(
                    self._spec.url, content=message.to_json(), headers={"Content-Type": "application/json"}
                )
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:  # the consumer refuses this event: retrying will not help
                        self._metrics.sink_errors.labels(sink=self.name).inc()
                        self._count_drop()
                    return
            except httpx.HTTPError as exc:
                log.debug("webhook attempt %d failed: %s", attempt + 1, exc)
            self._metrics.sink_errors.labels(sink=self.name).inc()
            if attempt < self._spec.max_retries:
                # While stopping, do not sit out long backoffs: one quick retry, then give up.
                self._stop.wait(min(delay, 0.2) if self._stop.is_set() else delay)
                delay = min(delay * 2, self._spec.backoff_max_seconds)
        self._count_drop()

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)
        self._client.close()


class MqttEventSink:
    """paho-mqtt publisher (QoS 1 by default, TLS and credentials optional).

    While the broker is unreachable paho keeps QoS ≥ 1 messages queued (up to `buffer_size`) and resends them
    when it reconnects; past the bound a message is dropped and counted. The network loop runs in paho's
    thread.
    """

    def __init__(self, spec: MqttSink, metrics: EdgeMetrics) -> None:
        self.name = f"mqtt:{spec.host}:{spec.port}"
        self._spec, self._metrics = spec, metrics
        self._pending: set[int] = set()
        self._acked_early: set[int] = set()
        self._lock = threading.Lock()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=spec.client_id or "", protocol=mqtt.MQTTv311
        )
        if spec.username is not None:
            self._client.username_pw_set(spec.username, spec.password)
        if spec.tls is not None:
            self._client.tls_set(
                ca_certs=str(spec.tls.ca_certs) if spec.tls.ca_certs else None,
                certfile=str(spec.tls.certfile) if spec.tls.certfile else None,
                keyfile=str(spec.tls.keyfile) if spec.tls.keyfile else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            self._client.tls_insecure_set(spec.tls.insecure)
        self._client.max_queued_messages_set(spec.buffer_size)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_publish = self._on_publish
        self._client.on_connect = self._on_connect
        self._client.connect_async(spec.host, spec.port, keepalive=spec.keepalive)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("mqtt %s refused the connection: %s", self.name, reason)
            self._metrics.sink_errors.labels(sink=self.name).inc()
        else:
            log.info("mqtt connected to %s", self.name)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:  # acknowledged before send() recorded it
                self._acked_early.add(mid)

    def topic(self, message: EventMessage) -> str:
        return self._spec.topic.format(camera=message.frame.camera_id, event_type=message.event.type)

    def send(self, message: EventMessage) -> None:
        # Not under self._lock: paho calls on_publish while holding its own message lock, which publish()
        # also takes — holding ours across publish() would invert the lock order and can deadlock.
        info = self._client.publish(self.topic(message), message.to_json(), qos=self._spec.qos)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._metrics.sink_dropped.labels(sink=self.name).inc()
            return
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._metrics.sink_errors.labels(sink=self.name).inc()
            return
        if self._spec.qos > 0:
            with self._lock:
                if info.mid in self._acked_early:
                    self._acked_early.discard(info.mid)
                else:
                    self._pending.add(info.mid)

    @property
    def pending(self) -> int:
        """Messages published but not yet acknowledged by the broker (the in-memory buffer)."""
        with self._lock:
            return len(self._pending)

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pending:
            log.warning("mqtt %s: %d events not acknowledged at shutdown", self.name, self.pending)
            self._metrics.sink_dropped.labels(sink=self.name).inc(self.pending)
        self._client.disconnect()
        self._client.loop_stop()


IOT_HUB_API_VERSION = "2021-04-12"


def sas_token(resource: str, key: bytes, expiry: int) -> str:
    """IoT Hub's shared access signature: HMAC-SHA256 over `<url-encoded resource>\\n<expiry>` with the device key."""
    encoded = urllib.parse.quote(resource, safe="")
    signature = base64.b64encode(hmac.new(key, f"{encoded}\n{expiry}".encode(), hashlib.sha256).digest()).decode()
    return f"SharedAccessSignature sr={encoded}&sig={urllib.parse.quote(signature, safe='')}&se={expiry}"


class AzureIotHubEventSink(MqttEventSink):
    """Device-to-cloud messages on IoT Hub's MQTT endpoint, as its device SDKs send them.

    MQTT 3.1.1 over TLS to `<hub>:8883` (or the connection string's `GatewayHostName`), client id = device id,
    username `<hub>/<device>/?api-version=...`, password a SAS token renewed before each reconnect (IoT Hub drops
    the connection when a token expires). Topic `devices/<device>/messages/events/` followed by the URL-encoded
    property bag: `$.ct=application/json`, `$.ce=utf-8` (so IoT Hub routing can query the JSON body), `$.mid` (the
    event id) and the application properties `eventType`, `cameraId` plus the configured ones.
    """

    def __init__(self, spec: AzureIotHubSink, metrics: EdgeMetrics) -> None:
        self.connection: DeviceConnection = parse_connection_string(spec.connection_string.get_secret_value())
        self._iot = spec
        conn = self.connection
        identity = f"{conn.device_id}/{conn.module_id}" if conn.module_id else conn.device_id
        self.username = f"{conn.host_name}/{identity}/?api-version={IOT_HUB_API_VERSION}"
        self._resource = f"{conn.host_name}/devices/{conn.device_id}" + (
            f"/modules/{conn.module_id}" if conn.module_id else ""
        )
        self._events_topic = f"devices/{conn.device_id}/" + (
            f"modules/{conn.module_id}/messages/events/" if conn.module_id else "messages/events/"
        )
        mqtt_spec = MqttSink(
            type="mqtt",
            host=conn.gateway or conn.host_name,
            port=spec.port,
            qos=spec.qos,
            client_id=identity,
            username=self.username,
            password=self._new_token(),
            tls=MqttTls(ca_certs=spec.ca_certs),
            keepalive=spec.keepalive,
            buffer_size=spec.buffer_size,
        )
        super().__init__(mqtt_spec, metrics)
        self.name = f"azure_iot_hub:{conn.host_name}/{identity}"
        self._client.on_disconnect = self._renew_token

    def _new_token(self) -> str:
        """A SAS token valid for `token_ttl_seconds` from now; `self.password` is the one the client uses."""
        self.password = sas_token(self._resource, self.connection.key, int(time.time()) + self._iot.token_ttl_seconds)
        return self.password

    def _renew_token(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.username_pw_set(self.username, self._new_token())  # used by paho's next automatic reconnect

    def topic(self, message: EventMessage) -> str:
        properties = {
            "$.mid": message.event.id,
            "$.ct": "application/json",
            "$.ce": "utf-8",
            "eventType": message.event.type,
            "cameraId": message.frame.camera_id,
            **self._iot.properties,
        }
        return self._events_topic + urllib.parse.urlencode(properties, quote_via=urllib.parse.quote)


def build_sink(spec: SinkSpec, metrics: EdgeMetrics) -> EventSink:
    if isinstance(spec, AzureIotHubSink):
        return AzureIotHubEventSink(spec, metrics)
    if isinstance(spec, StdoutSink):
        return StdoutEventSink(metrics)
    if isinstance(spec, FileSink):
        return RotatingFileEventSink(spec, metrics)
    if isinstance(spec, WebhookSink):
        return WebhookEventSink(spec, metrics)
    return MqttEventSink(spec, metrics)
