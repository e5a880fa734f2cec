"""`veil edge run` configuration: one YAML file, validated by pydantic before any camera is opened.

Lines and zones use Azure Spatial Analysis' SPACEANALYTICS_CONFIG shape (normalized coordinates,
`events[]` with `type` and `config: {trigger, threshold, focus, output_frequency}`), so an existing Spatial
Analysis deployment can paste its zones in unchanged. Everything else (source, detector, tracker, sinks) is
Veil's own.

Example::

    >>> cfg = EdgeConfig.model_validate({"cameras": [{"id": "door",
    ...     "source": {"type": "file", "path": "a.mp4"},
    ...     "lines": [{"name": "door", "line": {"start": {"x": 0, "y": 0.5}, "end": {"x": 1, "y": 0.5}},
    ...                "events": [{"type": "linecrossing"}]}]}]})
    >>> cfg.cameras[0].lines[0].events[0].config.focus
    'footprint'
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

Focus = Literal["footprint", "bottom_center", "center"]
Trigger = Literal["event", "interval"]


class Strict(BaseModel):
    """Unknown keys are errors: a typo in a config must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- Spatial Analysis operations
class OperationConfig(Strict):
    """The `config` block of one Spatial Analysis event."""

    trigger: Trigger = "event"
    # Spatial Analysis 2.0: a ratio of the frame width; a person must be this far past a line/zone
    # edge to count.
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    focus: Focus = "footprint"
    # Every Nth event is sent (1 = all of them).
    output_frequency: int = Field(default=1, ge=1)
    # Period of `trigger: interval` events, in seconds.
    interval_seconds: float = Field(default=1.0, gt=0.0)


class DistanceConfig(OperationConfig):
    minimum_distance_threshold: float = Field(default=6.0, ge=0.0)  # feet (or the ground-plane unit)
    maximum_distance_threshold: float | None = Field(default=None, gt=0.0)
    aggregation_method: Literal["average", "mode"] = "average"


class CountEvent(Strict):
    type: Literal["count"]
    config: OperationConfig = OperationConfig()


class ZoneCrossingEvent(Strict):
    type: Literal["zonecrossing"]
    config: OperationConfig = OperationConfig()


class ZoneDwellEvent(Strict):
    type: Literal["zonedwelltime"]
    config: OperationConfig = OperationConfig()


class DistanceEvent(Strict):
    type: Literal["persondistance"]
    config: DistanceConfig = DistanceConfig()


class LineCrossingEvent(Strict):
    type: Literal["linecrossing"]
    config: OperationConfig = OperationConfig()


ZoneEvent = Annotated[CountEvent | ZoneCrossingEvent | ZoneDwellEvent | DistanceEvent, Field(discriminator="type")]


class Point(Strict):
    x: float = Field(ge=0.0, le=1.0)
    y: float = Field(ge=0.0, le=1.0)


class LineGeometry(Strict):
    start: Point
    end: Point

    @model_validator(mode="after")
    def _not_a_point(self) -> LineGeometry:
        if self.start == self.end:
            raise ValueError("line start and end must differ")
        return self


class LineSpec(Strict):
    name: str = Field(min_length=1)
    line: LineGeometry
    events: list[LineCrossingEvent] = Field(min_length=1)


class ZoneSpec(Strict):
    name: str = Field(min_length=1)
    polygon: list[tuple[float, float]]
    events: list[ZoneEvent] = Field(min_length=1)

    @field_validator("polygon")
    @classmethod
    def _valid_polygon(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return _normalized_polygon(points)


class Homography(Strict):
    """Image → ground plane for `persondistance`: 4+ normalized image points and their ground positions."""

    image_points: list[tuple[float, float]] = Field(min_length=4)
    ground_points: list[tuple[float, float]] = Field(min_length=4)

    @model_validator(mode="after")
    def _same_length(self) -> Homography:
        if len(self.image_points) != len(self.ground_points):
            raise ValueError("image_points and ground_points must have the same number of points")
        return self


# ---------------------------------------------------------------- sources
class FileSource(Strict):
    type: Literal["file"]
    path: Path
    realtime: bool = False  # true: pace frames at the file's native rate (a stand-in for a live camera)
    loop: bool = False


class StreamSource(Strict):
    type: Literal["stream"]
    url: str = Field(pattern=r"^(rtsp|rtsps|http|https|rtmp|udp|tcp)://")
    reconnect_initial_seconds: float = Field(default=0.5, gt=0)
    reconnect_max_seconds: float = Field(default=30.0, gt=0)
    max_reconnects: int | None = Field(default=None, ge=0)  # None = forever
    open_timeout_seconds: float = Field(default=10.0, gt=0)


class WebcamSource(Strict):
    type: Literal["webcam"]
    index: int = Field(default=0, ge=0)


class FolderSource(Strict):
    type: Literal["folder"]
    path: Path
    fps: float = Field(default=25.0, gt=0)
    pattern: str = "*.jpg"


SourceSpec = Annotated[FileSource | StreamSource | WebcamSource | FolderSource, Field(discriminator="type")]


def _normalized_polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) > 3 and points[0] == points[-1]:
        points = points[:-1]  # Spatial Analysis' samples repeat the first vertex to close the ring
    if len(points) < 3:
        raise ValueError("a polygon needs at least 3 distinct vertices")
    if any(not (0.0 <= v <= 1.0) for point in points for v in point):
        raise ValueError("polygon coordinates are normalized: every x and y must be within [0, 1]")
    return points


class CameraSpec(Strict):
    id: str = Field(min_length=1)
    source: SourceSpec
    lines: list[LineSpec] = []
    zones: list[ZoneSpec] = []
    # Privacy zones: normalized polygons whose pixels are blanked before detection, so nobody inside them is
    # detected, tracked, counted, previewed or recorded.
    exclude: list[list[tuple[float, float]]] = []
    homography: Homography | None = None

    @field_validator("exclude")
    @classmethod
    def _valid_exclusions(cls, polygons: list[list[tuple[float, float]]]) -> list[list[tuple[float, float]]]:
        return [_normalized_polygon(points) for points in polygons]

    @model_validator(mode="after")
    def _distance_needs_homography(self) -> CameraSpec:
        wants_distance = any(e.type == "persondistance" for z in self.zones for e in z.events)
        if wants_distance and self.homography is None:
            raise ValueError("a persondistance event needs `homography` (image_points → ground_points) on its camera")
        return self


# ---------------------------------------------------------------- detector / tracker
DetectorKind = Literal["yolox", "hog", "yolo", "veil"]
DEFAULT_MODEL = "yolox-nano"  # shipped inside Veil's package (Apache-2.0): what a config naming no detector gets


class DetectorSpec(Strict):
    """The people detector. Nothing set: the shipped YOLOX-Nano. `model` names a registered model (`veil models
    list`); `kind` + `path` name a file: `yolox` (any YOLOX size), `yolo` (YOLO v5/v8/v11 ONNX), `veil` (a detector
    exported by Veil's trainer), or `hog` (OpenCV's built-in people detector: no file, modest accuracy)."""

    model: str | None = Field(default=None, min_length=1)
    kind: DetectorKind | None = None
    path: Path | None = None
    yolo_layout: Literal["auto", "v5", "v8"] = "auto"  # v11 shares v8's output layout
    # Class index of `person`; unset: found by name (`person_label`) in the model's class names, COCO's for
    # 80-class YOLOX files, 0 for YOLO exports.
    person_class: int | None = Field(default=None, ge=0)
    person_label: str = "person"
    # Chosen on MOT17 (tune split, docs/BENCHMARKS.md) for the shipped YOLOX-Nano with the tracker defaults below.
    confidence: float = Field(default=0.3, ge=0.0, le=1.0)
    iou: float = Field(default=0.45, gt=0.0, le=1.0)
    # Frames wider than this are shrunk before detection (boxes are mapped back); YOLOX runs at this width
    # (rounded down to a multiple of 32), its height following the frame's aspect ratio.
    detect_width: int = Field(default=960, ge=64, le=4096)
    # Process every (frame_skip + 1)th frame only (detector, tracker and operators); the tracker is told the
    # reduced frame rate so its lost-track buffer still spans the same time.
    frame_skip: int = Field(default=0, ge=0, le=30)

    @model_validator(mode="after")
    def _one_way_to_name_it(self) -> DetectorSpec:
        if self.model is not None and (self.kind is not None or self.path is not None):
            raise ValueError("give either `model` (a registered name) or `kind`/`path`, not both")
        if self.kind in ("yolo", "veil") and self.path is None:
            raise ValueError(f"detector kind {self.kind!r} needs `path` to an .onnx file")
        if self.kind == "hog" and self.path is not None:
            raise ValueError("detector kind 'hog' takes no `path`")
        return self


class TrackerSpec(Strict):
    lost_track_buffer: int = Field(default=30, ge=0)
    # The two confidence gates were chosen with the shipped YOLOX-Nano on MOT17's tune split (docs/BENCHMARKS.md):
    # its scores for real people are often 0.4–0.6, which ByteTrack's stock 0.5 / 0.6 left untracked.
    track_activation_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    minimum_iou_threshold: float = Field(default=0.1, ge=0.0, le=1.0)
    minimum_consecutive_frames: int = Field(default=1, ge=1)
    high_conf_det_threshold: float = Field(default=0.5, ge=0.0, le=1.0)


# ---------------------------------------------------------------- sinks
class StdoutSink(Strict):
    type: Literal["stdout"]


class FileSink(Strict):
    type: Literal["file"]
    path: Path
    max_bytes: int = Field(default=10_000_000, ge=1024)
    backup_count: int = Field(default=5, ge=0)


class WebhookSink(Strict):
    type: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = {}
    queue_size: int = Field(default=1000, ge=1)
    max_retries: int = Field(default=5, ge=0)
    backoff_initial_seconds: float = Field(default=0.5, gt=0)
    backoff_max_seconds: float = Field(default=30.0, gt=0)
    timeout_seconds: float = Field(default=5.0, gt=0)


class MqttTls(Strict):
    ca_certs: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    insecure: bool = False  # skip hostname verification (self-signed test brokers only)


class MqttSink(Strict):
    type: Literal["mqtt"]
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    topic: str = Field(default="veil/edge/{camera}/{event_type}", min_length=1)
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: MqttTls | None = None
    keepalive: int = Field(default=30, ge=5)
    # While the broker is unreachable, up to this many messages wait in memory; then the oldest are dropped.
    buffer_size: int = Field(default=10_000, ge=1)


class AzureIotHubSink(Strict):
    """Device-to-cloud messages to Azure IoT Hub (what Spatial Analysis deployments read events from): MQTT 3.1.1
    over TLS to `<hub>:8883`, authenticated with a SAS token made from the device connection string."""

    type: Literal["azure_iot_hub"]
    # HostName=<hub>.azure-devices.net;DeviceId=<id>;SharedAccessKey=<base64>[;ModuleId=<id>][;GatewayHostName=<h>]
    connection_string: SecretStr
    port: int = Field(default=8883, ge=1, le=65535)
    ca_certs: Path | None = None  # None: the system's trusted roots (IoT Hub's DigiCert / Microsoft roots)
    qos: Literal[0, 1] = 1  # IoT Hub does not support QoS 2
    token_ttl_seconds: int = Field(default=3600, ge=60, le=365 * 24 * 3600)
    keepalive: int = Field(default=60, ge=5, le=1177)  # IoT Hub's maximum is 1177 s
    buffer_size: int = Field(default=10_000, ge=1)
    properties: dict[str, str] = {}  # extra application properties on every message (for IoT Hub routing)

    @field_validator("connection_string")
    @classmethod
    def _parseable(cls, value: SecretStr) -> SecretStr:
        parse_connection_string(value.get_secret_value())
        return value


@dataclass(frozen=True)
class DeviceConnection:
    host_name: str
    device_id: str
    key: bytes
    module_id: str | None = None
    gateway: str | None = None


def parse_connection_string(text: str) -> DeviceConnection:
    """An IoT Hub device (or module) connection string; errors never echo the key."""
    fields: dict[str, str] = {}
    for part in text.strip().split(";"):
        if part:
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"connection string part {name[:20]!r} is not NAME=VALUE")
            fields[name] = value
    if "x509" in fields:
        raise ValueError("X.509 device authentication is not supported; use a SharedAccessKey connection string")
    missing = [k for k in ("HostName", "DeviceId", "SharedAccessKey") if not fields.get(k)]
    if missing:
        raise ValueError(
            f"connection string lacks {', '.join(missing)} (HostName=...;DeviceId=...;SharedAccessKey=...)"
        )
    try:
        key = base64.b64decode(fields["SharedAccessKey"], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("SharedAccessKey is not base64 (copy the device's primary key from the portal)") from None
    return DeviceConnection(
        fields["HostName"],
        fields["DeviceId"],
        key,
        fields.get("ModuleId") or None,
        fields.get("GatewayHostName") or None,
    )


SinkSpec = Annotated[StdoutSink | FileSink | WebhookSink | MqttSink | AzureIotHubSink, Field(discriminator="type")]


class MetricsSpec(Strict):
    port: int | None = Field(default=None, ge=1, le=65535)  # None: no HTTP endpoint (metrics still counted)
    host: str = "127.0.0.1"


class RecorderSpec(Strict):
    """Off by default. When on: short clips around events, faces hidden, encrypted, deleted later."""

    enabled: bool = False
    directory: Path = Path("./edge-clips")
    seconds_before: float = Field(default=2.0, ge=0.0, le=30.0)
    seconds_after: float = Field(default=2.0, ge=0.0, le=30.0)
    retention_hours: float = Field(default=24.0, gt=0.0)
    event_types: list[str] = ["personLineEvent", "personZoneEnterExitEvent"]


class EdgeConfig(Strict):
    cameras: list[CameraSpec] = Field(min_length=1)
    detector: DetectorSpec = DetectorSpec()
    tracker: TrackerSpec = TrackerSpec()
    sinks: list[SinkSpec] = [StdoutSink(type="stdout")]
    metrics: MetricsSpec = MetricsSpec()
    recorder: RecorderSpec = RecorderSpec()
    # A person missing this many frames is gone: zones emit its Exit (side "") then.
    track_timeout_frames: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> EdgeConfig:
        ids = [c.id for c in self.cameras]
        if len(ids) != len(set(ids)):
            raise ValueError(f"camera ids must be unique, got {ids}")
        return self


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the field and what is allowed."""


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    extra = f" ({error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{extra}"


def parse_config(data: object) -> EdgeConfig:
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid edge config: {_describe(exc)}") from None


def load_config(path: Path) -> EdgeConfig:
    """Read and validate a YAML config; relative paths inside it are taken relative to the file."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping with a `cameras` list")
    config = parse_config(raw)
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: EdgeConfig, base: Path) -> EdgeConfig:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p)

    cameras = []
    for cam in config.cameras:
        src = cam.source
        if isinstance(src, FileSource | FolderSource):
            src = src.model_copy(update={"path": fix(src.path)})
        cameras.append(cam.model_copy(update={"source": src}))
    detector = config.detector
    if detector.path is not None:
        detector = detector.model_copy(update={"path": fix(detector.path)})
    sinks = [_resolve_sink(s, fix) for s in config.sinks]
    recorder = config.recorder.model_copy(update={"directory": fix(config.recorder.directory)})
    return config.model_copy(update={"cameras": cameras, "detector": detector, "sinks": sinks, "recorder": recorder})


def _resolve_sink(sink: SinkSpec, fix: Callable[[Path], Path]) -> SinkSpec:
    if isinstance(sink, FileSink):
        return sink.model_copy(update={"path": fix(sink.path)})
    if isinstance(sink, AzureIotHubSink) and sink.ca_certs is not None:
        return sink.model_copy(update={"ca_certs": fix(sink.ca_certs)})
    return sink
