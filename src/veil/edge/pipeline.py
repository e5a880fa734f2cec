"""The edge pipeline: source → detector → ByteTrack → operators → sinks, one thread per camera.

Frames stay in memory. The only files written are the event sinks' (when a file sink is configured), the
`--preview` debug video (annotated and anonymized) and the recorder's encrypted clips (off by default).

Example::

    >>> from veil.edge.config import parse_config
    >>> cfg = parse_config({"cameras": [{"id": "c", "source": {"type": "folder", "path": "/nonexistent"}}]})
    >>> try:
    ...     EdgePipeline(cfg).run()
    ... except Exception as exc:
    ...     print(exc)
    folder source: /nonexistent is not a directory
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import supervision as sv

from veil.edge.config import CameraSpec, EdgeConfig
from veil.edge.detect import PeopleDetector, build_detector
from veil.edge.events import EventMessage, FrameInfo, PersonEvent, detection_records
from veil.edge.exclude import ExclusionMask
from veil.edge.metrics import EdgeMetrics
from veil.edge.operators import GroundPlane, Operator, Scene, build_operators
from veil.edge.sinks import EventSink, build_sink
from veil.edge.sources import Frame, FrameSource, open_source
from veil.edge.track import PeopleTracker

log = logging.getLogger(__name__)


class CameraRunner:
    """Everything for one camera; `process(frame)` is the per-frame step (also used by the benchmark)."""

    def __init__(
        self,
        camera: CameraSpec,
        config: EdgeConfig,
        detector: PeopleDetector | None,
        sinks: list[EventSink],
        metrics: EdgeMetrics,
        fps: float,
    ) -> None:
        self.camera = camera
        self._detector = detector
        self._sinks = sinks
        self._metrics = metrics
        self._every = config.detector.frame_skip + 1
        self.tracker = PeopleTracker(config.tracker, fps / self._every, config.track_timeout_frames)
        self.operators: list[Operator] = build_operators(camera)
        self._exclude = ExclusionMask(camera.exclude)
        self._ground = GroundPlane(camera.homography) if camera.homography is not None else None
        self.observers: list[Callable[[Frame, sv.Detections, list[EventMessage]], None]] = []
        self._rate_window: list[float] = []
        self.last_people: sv.Detections = empty_detections()  # the tracked people of the latest frame

    @property
    def frame_step(self) -> int:
        """The detector runs on every `frame_step`th frame (`frame_skip + 1`)."""
        return self._every

    def process(self, frame: Frame, detections: sv.Detections | None = None) -> list[EventMessage]:
        """Track and evaluate one frame; `detections` given → the detector is not run (benchmarks, tests)."""
        if frame.index % self._every != 0:
            return []  # frame_skip: the tracker runs at the reduced rate it was configured for
        started = time.perf_counter()
        if self._exclude:  # privacy zones: blanked before the detector, the preview or the recorder see them
            frame = Frame(self._exclude.apply(frame.rgb), frame.index, frame.media_seconds)
        if detections is None:
            assert self._detector is not None
            detections = self._detector.detect(frame.rgb)
        height, width = frame.rgb.shape[:2]
        info = FrameInfo(self.camera.id, frame.index, width, height, frame.media_seconds)
        people = self.tracker.update(detections)
        self.last_people = people
        scene = Scene(people, info)
        events = [event for operator in self.operators for event in operator.update(scene)]
        gone = self.tracker.drop_stale()
        if gone:
            events += [event for operator in self.operators for event in operator.forget(gone, info)]
        messages = self._messages(events, scene)
        for message in messages:
            self._metrics.events.labels(camera=self.camera.id, type=message.event.type).inc()
            for sink in self._sinks:
                sink.send(message)
        for observer in self.observers:
            observer(frame, people, messages)
        self._account(time.perf_counter() - started)
        return messages

    def _messages(self, events: list[PersonEvent], scene: Scene) -> list[EventMessage]:
        if not events:
            return []
        footprints = scene.points("footprint")
        ground = self._ground.to_ground(footprints, scene.frame) if self._ground is not None else None
        records = detection_records(scene.people, scene.frame, footprints, ground)
        return [
            EventMessage(event, scene.frame, tuple(records[i] for i in event.detection_ids if i in records))
            for event in events
        ]

    def _account(self, seconds: float) -> None:
        self._metrics.frames.labels(camera=self.camera.id).inc()
        self._metrics.latency.labels(camera=self.camera.id).observe(seconds)
        now = time.monotonic()
        self._rate_window = [t for t in self._rate_window if now - t < 1.0] + [now]
        self._metrics.fps.labels(camera=self.camera.id).set(len(self._rate_window))


class EdgePipeline:
    """Runs every camera of a config until the sources end, `max_frames` is reached or `stop` is set."""

    def __init__(self, config: EdgeConfig, metrics: EdgeMetrics | None = None, data_dir: Path | None = None) -> None:
        self.config = config
        self.data_dir = data_dir  # registered models and the master key; None: Veil's settings ($VEIL_DATA_DIR)
        self.metrics = metrics or EdgeMetrics()
        self.stop = threading.Event()
        self.sinks: list[EventSink] = []
        self.runners: list[CameraRunner] = []
        self._sources: list[FrameSource] = []
        self.preview_path: Path | None = None
        self.on_frame: Callable[[str, int], None] | None = None  # progress callback (camera id, frame index)
        self._errors: list[BaseException] = []

    def open(self) -> None:
        """Open sources and detectors first, so a bad config fails before any sink connects."""
        for camera in self.config.cameras:
            source = open_source(camera.source, self.stop)
            source.on_dropped = self.metrics.dropped_frames.labels(camera=camera.id).inc
            self._sources.append(source)
        # Each camera runs in its own thread with its own detector: with several cameras, onnxruntime's default
        # (a spinning thread pool per session, one thread per core) puts cameras × cores threads on the cores;
        # measured on 2 cores, 7 cameras: 30 s with the default, 18 s with a core share each.
        cameras = len(self.config.cameras)
        threads = 0 if cameras == 1 else max(1, (os.cpu_count() or 1) // cameras)
        detectors = [build_detector(self.config.detector, self.data_dir, threads) for _ in self.config.cameras]
        self.sinks = [build_sink(spec, self.metrics) for spec in self.config.sinks]
        for camera, source, detector in zip(self.config.cameras, self._sources, detectors, strict=True):
            runner = CameraRunner(camera, self.config, detector, self.sinks, self.metrics, source.fps)
            self.runners.append(runner)
        if self.config.recorder.enabled:
            self._attach_recorders()
        if self.preview_path is not None:
            from veil.edge.preview import PreviewWriter

            self.runners[0].observers.append(
                PreviewWriter(self.runners[0].camera, self.preview_path, self._sources[0].fps)
            )
        if self.config.metrics.port is not None:
            self.metrics.serve(self.config.metrics.port, self.config.metrics.host)

    def _attach_recorders(self) -> None:
        from veil.edge.recorder import ClipRecorder, master_key

        spec = self.config.recorder
        master = master_key(self.data_dir)
        for runner, source in zip(self.runners, self._sources, strict=True):
            runner.observers.append(ClipRecorder(spec, source.fps / runner.frame_step, master))
        log.info("recorder on: %s (retention %.1f h)", spec.directory, spec.retention_hours)

    def run(self, max_frames: int | None = None) -> None:
        if not self.runners:
            self.open()
        threads = [
            threading.Thread(target=self._run_camera, args=(runner, source, max_frames), name=runner.camera.id)
            for runner, source in zip(self.runners, self._sources, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        finally:
            self.stop.set()
            self.close()
        if self._errors:
            raise self._errors[0]

    def _run_camera(self, runner: CameraRunner, source: FrameSource, max_frames: int | None) -> None:
        reconnects = 0
        try:
            for count, frame in enumerate(source, start=1):
                runner.process(frame)
                if source.reconnects != reconnects:
                    self.metrics.reconnects.labels(camera=runner.camera.id).inc(source.reconnects - reconnects)
                    reconnects = source.reconnects
                if self.on_frame is not None:
                    self.on_frame(runner.camera.id, frame.index)
                if max_frames is not None and count >= max_frames:
                    break
        except BaseException as exc:  # surfaced by run(); the other cameras are stopped cleanly
            log.exception("camera %s failed", runner.camera.id)
            self._errors.append(exc)
            self.stop.set()

    def close(self, timeout: float = 10.0) -> None:
        """Flush and close every sink and observer (SIGTERM path included)."""
        for runner in self.runners:
            for observer in runner.observers:
                closer = getattr(observer, "close", None)
                if closer is not None:
                    closer()
        for sink in self.sinks:
            try:
                sink.close(timeout)
            except Exception:  # one broken sink must not keep the others from flushing
                log.exception("closing sink %s failed", sink.name)
        self.sinks = []


def empty_detections() -> sv.Detections:
    return sv.Detections(xyxy=np.zeros((0, 4), dtype=np.float32), confidence=np.zeros(0, dtype=np.float32))
