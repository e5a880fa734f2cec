"""Detectors on real ONNX graphs (YOLO v5 and v8/v11 output layouts, wrong shapes refused), HOG on a real
frame, a live HTTP stream that dies and comes back, and the webhook sink's retry/drop against a server."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from tests.conftest import dataset_path
from tests.edge.conftest import panning_frames, write_video
from typer.testing import CliRunner

from veil.edge.config import DetectorSpec, StreamSource, WebhookSink
from veil.edge.detect import DetectorError, HogPeopleDetector, build_detector

SIDE = 64  # model input is SIDE × SIDE


def yolo_model(path: Path, predictions: np.ndarray, input_channels: int = 3) -> Path:
    """An ONNX graph with a real image input whose output is `predictions` (shape [1, a, b]) — the decode is
    what is under test, so the 'network' is a constant plus 0 × mean(image) to keep the input wired in."""
    image = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, input_channels, SIDE, SIDE])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(predictions.shape))
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["preds", "nothing"], ["output0"]),
    ]
    inits = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("preds", TensorProto.FLOAT, predictions.shape, predictions.flatten().tolist()),
    ]
    graph = helper.make_graph(nodes, "yolo", [image], [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


# Three candidates in model pixels (cx, cy, w, h): a confident person, a confident car, a faint person.
CANDIDATES = [
    ((32, 32, 16, 32), 0.9, "person"),
    ((20, 40, 10, 10), 0.95, "car"),
    ((50, 20, 8, 16), 0.1, "person"),
]
CLASSES = ["person", "bicycle", "car"]
ANCHORS = 200  # real exports have thousands of candidate rows, far more than channels


def v8_predictions() -> np.ndarray:
    rows = []
    for box, score, name in CANDIDATES:
        scores = [score if c == name else 0.01 for c in CLASSES]
        rows.append([*box, *scores])
    rows += [[0.0] * (4 + len(CLASSES))] * (ANCHORS - len(rows))
    return np.array(rows, dtype=np.float32).T[None]  # [1, 4 + classes, N]


def v5_predictions() -> np.ndarray:
    rows = []
    for box, score, name in CANDIDATES:
        rows.append([*box, score, *[1.0 if c == name else 0.0 for c in CLASSES]])
    rows += [[0.0] * (5 + len(CLASSES))] * (ANCHORS - len(rows))
    return np.array(rows, dtype=np.float32)[None]  # [1, N, 5 + classes]


@pytest.mark.parametrize("layout", ["v8", "v5"])
def test_yolo_layouts_decode_person_boxes_into_original_pixels(layout: str, tmp_path: Path) -> None:
    predictions = v8_predictions() if layout == "v8" else v5_predictions()
    model = yolo_model(tmp_path / f"yolo{layout}.onnx", predictions)
    detector = build_detector(DetectorSpec(kind="yolo", path=model, confidence=0.5))
    assert layout in detector.name
    # A 64 wide × 128 high frame is letterboxed to 32 × 64 with 16 px of padding on each side.
    found = detector.detect(np.zeros((128, 64, 3), np.uint8))
    assert len(found) == 1  # the car is not a person; the faint person is under the threshold
    np.testing.assert_allclose(found.xyxy[0], [16, 32, 48, 96], atol=1e-4)
    assert found.confidence[0] == pytest.approx(0.9)


def test_yolo_person_class_index_is_configurable(tmp_path: Path) -> None:
    model = yolo_model(tmp_path / "yolo.onnx", v8_predictions())
    cars = build_detector(DetectorSpec(kind="yolo", path=model, person_class=2, confidence=0.5))
    found = cars.detect(np.zeros((SIDE, SIDE, 3), np.uint8))
    np.testing.assert_allclose(found.xyxy[0], [15, 35, 25, 45], atol=1e-4)


@pytest.mark.parametrize(
    ("predictions", "channels", "spec", "message"),
    [
        (np.zeros((1, 3, ANCHORS), np.float32), 3, {}, "leaves no class scores"),
        (np.zeros((1, 6, ANCHORS), np.float32), 1, {}, "expected one image input of shape [1, 3, H, W]"),
        (np.zeros((1, 6, ANCHORS, 1), np.float32), 3, {}, "expected a detection output"),
        (np.zeros((1, 6, ANCHORS), np.float32), 3, {"person_class": 5}, "has only 2 classes"),
    ],
)
def test_wrong_shape_detector_is_refused_with_a_clear_message(
    predictions: np.ndarray, channels: int, spec: dict[str, object], message: str, tmp_path: Path
) -> None:
    model = yolo_model(tmp_path / "bad.onnx", predictions, input_channels=channels)
    with pytest.raises(DetectorError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_detector(DetectorSpec(kind="yolo", path=model, **spec))  # type: ignore[arg-type]


def test_wrong_shape_detector_refused_by_the_cli_in_one_line(tmp_path: Path) -> None:
    from veil.cli.edge import edge_app

    model = yolo_model(tmp_path / "bad.onnx", np.zeros((1, 3, ANCHORS), np.float32))
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"cameras: [{{id: c, source: {{type: folder, path: .}}}}]\ndetector: {{kind: yolo, path: {model}}}\n"
    )
    done = CliRunner().invoke(edge_app, ["validate", str(cfg)])
    assert done.exit_code == 2
    assert done.stderr.strip().count("\n") == 0 and "leaves no class scores" in done.stderr


def test_hog_finds_the_pedestrians_of_a_real_street_frame() -> None:
    frame = next(iter(sorted((dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1").glob("*.jpg"))))
    rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
    found = HogPeopleDetector(DetectorSpec(kind="hog", confidence=0.3)).detect(rgb)
    gt = np.loadtxt(frame.parents[1] / "gt" / "gt.txt", delimiter=",")
    big = gt[(gt[:, 0] == 1) & (gt[:, 6] == 1) & (gt[:, 5] > 150)]  # people tall enough for HOG's 128 px window
    boxes = np.column_stack([big[:, 2], big[:, 3], big[:, 2] + big[:, 4], big[:, 3] + big[:, 5]])
    ious = [max(_iou(b, f) for f in found.xyxy) for b in boxes]
    assert len(boxes) >= 1 and min(ious) > 0.4


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


class _FlakyVideoServer(http.server.ThreadingHTTPServer):
    """Serves an MPEG-TS video; the first connection dies half-way through, later ones are complete."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.requests = payload, 0
        super().__init__(("127.0.0.1", 0), _FlakyHandler)


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    server: _FlakyVideoServer

    def do_GET(self) -> None:
        self.server.requests += 1
        body = self.server.payload
        self.send_response(200)
        self.send_header("Content-Type", "video/mp2t")
        self.send_header("Content-Length", str(len(body)))  # the first response promises more than it sends
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.server.requests == 1 else body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_stream(tmp_path: Path) -> Iterator[tuple[str, int, _FlakyVideoServer]]:
    frames = panning_frames(12)
    payload = write_video(frames, tmp_path / "live.ts").read_bytes()
    server = _FlakyVideoServer(payload)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/live.ts", len(frames), server
    server.shutdown()


def test_a_dying_stream_reconnects_without_crashing(flaky_stream: tuple[str, int, _FlakyVideoServer]) -> None:
    from veil.edge.sources import LiveStreamSource

    url, length, server = flaky_stream
    spec = StreamSource(type="stream", url=url, reconnect_initial_seconds=0.05, max_reconnects=2)
    source = LiveStreamSource(spec, threading.Event())
    frames = list(source)
    assert server.requests == 3 and source.reconnects == 2
    # a part of the cut first connection, then the whole video twice; indices keep counting across reconnects
    assert 2 * length < len(frames) < 3 * length
    assert [f.index for f in frames] == list(range(len(frames)))


def test_an_unreachable_stream_backs_off_and_gives_up_cleanly() -> None:
    from veil.edge.sources import LiveStreamSource

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # a port that is now closed
    spec = StreamSource(
        type="stream",
        url=f"http://127.0.0.1:{port}/x.ts",
        reconnect_initial_seconds=0.01,
        max_reconnects=3,
        open_timeout_seconds=1,
    )
    source = LiveStreamSource(spec, threading.Event())
    assert list(source) == [] and source.reconnects == 3


class _Collector(http.server.ThreadingHTTPServer):
    def __init__(self, fail_first: int) -> None:
        self.bodies: list[dict[str, object]] = []
        self.fail_first = fail_first
        self.calls = 0
        super().__init__(("127.0.0.1", 0), _CollectorHandler)


class _CollectorHandler(http.server.BaseHTTPRequestHandler):
    server: _Collector

    def do_POST(self) -> None:
        self.server.calls += 1
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.server.calls <= self.server.fail_first:
            self.send_response(503)
        else:
            self.server.bodies.append(json.loads(body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _message(n: int):  # type: ignore[no-untyped-def]
    from veil.edge.events import EventMessage, FrameInfo, PersonEvent

    event = PersonEvent("personCountEvent", "z", (), {"personCount": n})
    return EventMessage(event, FrameInfo("cam", n, 10, 10, n / 10), ())


def test_webhook_retries_with_backoff_then_delivers_in_order() -> None:
    from veil.edge.metrics import EdgeMetrics
    from veil.edge.sinks import WebhookEventSink

    server = _Collector(fail_first=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    metrics = EdgeMetrics()
    url = f"http://127.0.0.1:{server.server_address[1]}/events"
    sink = WebhookEventSink(WebhookSink(type="webhook", url=url, backoff_initial_seconds=0.01), metrics)
    for n in range(3):
        sink.send(_message(n))
    sink.close(10)
    server.shutdown()
    assert [b["events"][0]["properties"]["personCount"] for b in server.bodies] == [0, 1, 2]  # type: ignore[index]
    assert metrics.value("veil_edge_sink_errors_total", sink=sink.name) == 2


def test_webhook_queue_is_bounded_and_counts_what_it_drops() -> None:
    from veil.edge.metrics import EdgeMetrics
    from veil.edge.sinks import WebhookEventSink

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]  # nobody listens here any more
    metrics = EdgeMetrics()
    spec = WebhookSink(
        type="webhook",
        url=f"http://127.0.0.1:{port}/",
        queue_size=3,
        max_retries=1,
        backoff_initial_seconds=0.01,
    )
    sink = WebhookEventSink(spec, metrics)
    for n in range(20):
        sink.send(_message(n))
    sink.close(10)
    assert metrics.value("veil_edge_sink_dropped_events_total", sink=sink.name) == 20


def test_a_yolo_file_is_not_accepted_as_a_veil_detector(tmp_path: Path) -> None:
    model = yolo_model(tmp_path / "yolo.onnx", v8_predictions())
    with pytest.raises(DetectorError, match="cannot load Veil model"):
        build_detector(DetectorSpec(kind="veil", path=model))


PERSON_MODEL = Path(__file__).resolve().parents[2] / "artifacts" / "person.onnx"


@pytest.mark.skipif(not PERSON_MODEL.is_file(), reason="artifacts/person.onnx absent (run `make person-model`)")
def test_the_trained_person_model_finds_people_and_refuses_a_missing_label() -> None:
    frame = next(iter(sorted((dataset_path("people-video") / "train" / "MOT17-05-FRCNN" / "img1").glob("*.jpg"))))
    rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
    found = build_detector(DetectorSpec(kind="veil", path=PERSON_MODEL, confidence=0.3)).detect(rgb)
    assert len(found) >= 1 and set(found.data["class_name"]) == {"person"}
    with pytest.raises(DetectorError, match="has no 'pedestrian' label"):
        build_detector(DetectorSpec(kind="veil", path=PERSON_MODEL, person_label="pedestrian"))
