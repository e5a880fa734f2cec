"""A new user's session: a config with a line and a zone for a real video, `veil edge run`, events on MQTT —
and no frame written anywhere. Plus SIGTERM flushing, a broker that is down, and malformed configs."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import yaml
from tests.edge.conftest import Broker
from typer.testing import CliRunner

from veil.cli.edge import edge_app

pytest.importorskip("trackers", reason="ByteTrack comes from the `trackers` package (make install)")

VEIL = [str(Path(sys.executable).parent / "veil")]

LINE = {
    "name": "kerb",
    "line": {"start": {"x": 0.25, "y": 0.0}, "end": {"x": 0.25, "y": 1.0}},
    "events": [{"type": "linecrossing"}],
}
ZONE = {
    "name": "left-strip",
    "polygon": [[0.02, 0.05], [0.2, 0.05], [0.2, 0.98], [0.02, 0.98]],
    "events": [{"type": "zonecrossing"}, {"type": "count"}],
}
DETECTOR = {"kind": "hog", "detect_width": 480, "confidence": 0.3}


def config(video: Path, sinks: list[dict[str, object]], **source: object) -> dict[str, object]:
    return {
        "cameras": [
            {
                "id": "street",
                "source": {"type": "file", "path": str(video), **source},
                "lines": [copy.deepcopy(LINE)],
                "zones": [copy.deepcopy(ZONE)],
            }
        ],
        "detector": dict(DETECTOR),
        "sinks": sinks,
    }


class Subscriber:
    def __init__(self, port: int, topic: str = "veil/edge/#") -> None:
        self.messages: list[tuple[str, dict[str, object]]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, json.loads(m.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber could not subscribe"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_events_arrive_on_mqtt_and_no_frame_is_written(broker: Broker, people_video: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "tmp").mkdir(parents=True)
    cfg = work / "edge.yaml"
    cfg.write_text(yaml.safe_dump(config(people_video, [{"type": "mqtt", "port": broker.port}])))
    before = files_under(work)
    subscriber = Subscriber(broker.port)
    try:
        env = {**os.environ, "TMPDIR": str(work / "tmp"), "HOME": str(work)}
        try:
            done = subprocess.run(
                [*VEIL, "edge", "run", "-v", str(cfg)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=150,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"veil edge run did not finish: {exc.stderr!r}")
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
            m["events"][0]["type"] == "personLineEvent"
            for _, m in subscriber.messages  # type: ignore[index]
        ):
            time.sleep(0.1)
    finally:
        subscriber.close()
    assert files_under(work) == before, "the edge run wrote files (frames must stay in memory)"

    by_type: dict[str, list[dict[str, object]]] = {}
    for topic, message in subscriber.messages:
        event = message["events"][0]  # type: ignore[index]
        assert topic == f"veil/edge/street/{event['type']}"
        by_type.setdefault(event["type"], []).append(message)
    # The camera pans right, so people move right-to-left across a line drawn top→bottom: standing at its
    # start facing its end (down), they cross from the left-hand side to the right-hand side.
    line_events = by_type["personLineEvent"]
    assert {m["events"][0]["properties"]["status"] for m in line_events} == {"CrossRight"}  # type: ignore[index]
    enters = [m["events"][0] for m in by_type["personZoneEnterExitEvent"]]  # type: ignore[index]
    assert any(e["properties"]["status"] == "Enter" and e["properties"]["side"] == "2" for e in enters)
    assert_spatial_analysis_shape(line_events[0])


def assert_spatial_analysis_shape(message: dict[str, object]) -> None:
    assert message["schemaVersion"] == "2.0"
    (event,) = message["events"]  # type: ignore[misc]
    assert set(event) == {"id", "type", "detectionIds", "properties", "zone"}
    assert len(event["id"]) == 32 and int(event["id"], 16) >= 0
    tracking_id = event["properties"]["trackingId"]
    assert event["detectionIds"] == [tracking_id] and len(tracking_id) == 32
    source = message["sourceInfo"]
    assert source["id"] == "street" and (source["width"], source["height"]) == (480, 480)
    assert source["timestamp"].endswith("Z") and source["frameId"].isdigit()
    (detection,) = message["detections"]  # type: ignore[misc]
    assert detection["type"] == "person" and detection["id"] == tracking_id
    assert detection["region"]["type"] == "RECTANGLE"
    (p1, p2) = detection["region"]["points"]
    assert 0 <= p1["x"] < p2["x"] <= 1 and 0 <= p1["y"] < p2["y"] <= 1
    assert 0 < detection["confidence"] <= 1
    assert detection["metadata"]["trackingId"] == tracking_id


def test_broker_down_buffers_to_bound_then_drops_and_pipeline_keeps_going(broker: Broker, people_video: Path) -> None:
    from veil.edge.config import parse_config
    from veil.edge.pipeline import EdgePipeline

    broker.stop()
    cfg = parse_config(config(people_video, [{"type": "mqtt", "port": broker.port, "buffer_size": 2}]))
    pipeline = EdgePipeline(cfg)
    pipeline.open()
    sink = pipeline.sinks[0]
    for runner, source in zip(pipeline.runners, pipeline._sources, strict=True):
        for frame in source:
            runner.process(frame)
    frames = pipeline.metrics.value("veil_edge_frames_total", camera="street")
    events = sum(s.value for m in pipeline.metrics.events.collect() for s in m.samples if s.name.endswith("_total"))
    dropped = pipeline.metrics.value("veil_edge_sink_dropped_events_total", sink=sink.name)
    assert frames == 12  # every frame processed although nobody receives the events
    assert events > 2
    assert sink.pending == 2  # type: ignore[attr-defined]  # the bounded buffer is full...
    assert dropped == events - 2  # ...and everything past it was dropped and counted
    pipeline.close(timeout=0.5)


def test_events_buffered_while_the_broker_is_down_are_delivered_when_it_returns(broker: Broker) -> None:
    from veil.edge.config import MqttSink
    from veil.edge.events import EventMessage, FrameInfo, PersonEvent
    from veil.edge.metrics import EdgeMetrics
    from veil.edge.sinks import MqttEventSink

    received: list[dict[str, object]] = []
    subscribed = threading.Event()
    # A persistent session (clean_session=False): the broker queues QoS 1 messages for it while it is away.
    subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-test-sub", clean_session=False)
    subscriber.on_connect = lambda c, u, f, r, p: c.subscribe("veil/edge/#", qos=1)
    subscriber.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    subscriber.on_message = lambda c, u, m: received.append(json.loads(m.payload))
    subscriber.reconnect_delay_set(1, 2)
    subscriber.connect("127.0.0.1", broker.port)
    subscriber.loop_start()
    assert subscribed.wait(5)
    metrics = EdgeMetrics()
    sink = MqttEventSink(MqttSink(type="mqtt", port=broker.port, buffer_size=10), metrics)
    try:
        broker.stop()
        for n in range(3):
            event = PersonEvent("personCountEvent", "hall", (), {"personCount": n})
            sink.send(EventMessage(event, FrameInfo("cam", n, 10, 10, n / 10), ()))
        assert sink.pending == 3  # held in memory, not lost
        broker.start()
        sink.close(timeout=20)  # paho reconnects and resends; close waits for the broker's PUBACKs
        deadline = time.monotonic() + 10
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        subscriber.disconnect()
        subscriber.loop_stop()
    counts = sorted(m["events"][0]["properties"]["personCount"] for m in received)  # type: ignore[index]
    assert counts == [0, 1, 2]
    assert metrics.value("veil_edge_sink_dropped_events_total", sink=sink.name) == 0


def test_sigterm_stops_cleanly_and_flushes_the_file_sink(people_video: Path, tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    cfg = tmp_path / "edge.yaml"
    # A file that loops in real time behaves like a camera that never ends.
    cfg.write_text(
        yaml.safe_dump(config(people_video, [{"type": "file", "path": str(events_file)}], realtime=True, loop=True))
    )
    process = subprocess.Popen(
        [*VEIL, "edge", "run", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (events_file.exists() and events_file.stat().st_size > 0):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopped by signal" in stderr
    reported = int(stderr.strip().splitlines()[-1].split(", ")[1].split()[0])
    lines = events_file.read_text().splitlines()
    assert len(lines) == reported > 0
    assert all(json.loads(line)["schemaVersion"] == "2.0" for line in lines)


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        (
            lambda c: c["cameras"][0]["lines"][0]["events"][0].update(config={"focus": "feet"}),
            "cameras.0.lines.0.events.0.config.focus",
            "'footprint', 'bottom_center' or 'center'",
        ),
        (
            lambda c: c["cameras"][0]["zones"][0]["events"].append({"type": "loitering"}),
            "cameras.0.zones.0.events.2",
            "'count', 'zonecrossing', 'zonedwelltime', 'persondistance'",
        ),
        (lambda c: c["detector"].update(kind="ssd"), "detector.kind", "'hog', 'yolo' or 'veil'"),
        (lambda c: c["sinks"].append({"type": "mqtt", "qos": 3}), "sinks.0.mqtt.qos", "0, 1 or 2"),
    ],
)
def test_malformed_config_is_refused_with_one_line_naming_the_field(
    change: object, field: str, allowed: str, people_video: Path, tmp_path: Path
) -> None:
    data = config(people_video, [])
    change(data)  # type: ignore[operator]
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump(data))
    done = CliRunner().invoke(edge_app, ["run", str(cfg)])
    assert done.exit_code == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert field in lines[0] and allowed in lines[0]
    assert done.stdout == ""


def test_preview_writes_an_annotated_video_only_when_asked(people_video: Path, tmp_path: Path) -> None:
    import av

    cfg = tmp_path / "edge.yaml"
    cfg.write_text(yaml.safe_dump(config(people_video, [{"type": "file", "path": str(tmp_path / "ev.jsonl")}])))
    preview = tmp_path / "debug.mp4"
    done = CliRunner().invoke(edge_app, ["run", str(cfg), "--max-frames", "4", "--preview", str(preview)])
    assert done.exit_code == 0, done.stderr
    with av.open(str(preview)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (480, 480, 3)
    # the line (drawn at x = 0.25 in its own colour) is on every frame of the preview
    band = frames[0][:, 116:125].astype(int)  # rows × 9 px × RGB around x = 120
    line_rows = (np.abs(band - [255, 200, 0]).sum(axis=2) < 60).any(axis=1)
    assert line_rows.mean() > 0.8
