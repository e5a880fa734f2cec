"""`--preview FILE`: an annotated debug video (boxes, short track ids, lines, zones, event flashes) with faces
hidden by Veil's anonymizer before anything is drawn or encoded. Off unless asked for on the command line."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import supervision as sv

from veil.edge.config import CameraSpec
from veil.edge.events import EventMessage
from veil.edge.faces import FaceHider
from veil.edge.sources import Frame

_LINE_COLOUR = (255, 200, 0)
_ZONE_COLOUR = (0, 200, 255)


class PreviewWriter:
    """An observer of a camera runner: `__call__(frame, people, messages)` per processed frame."""

    def __init__(self, camera: CameraSpec, path: Path, fps: float) -> None:
        self._camera = camera
        self._hide_faces = FaceHider()
        self._path = path
        self._fps = fps
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._boxes = sv.BoxAnnotator(thickness=2)
        self._labels = sv.LabelAnnotator(text_scale=0.4, text_padding=2)
        self._flash: list[tuple[str, int]] = []

    def __call__(self, frame: Frame, people: sv.Detections, messages: list[EventMessage]) -> None:
        image = self._hide_faces(frame.rgb)
        self._draw_geometry(image)
        if len(people):
            labels = [str(t)[:6] for t in people.data["tracking_id"]]
            image = self._boxes.annotate(image, people)
            image = self._labels.annotate(image, people, labels=labels)
        self._flash = [(text, ttl - 1) for text, ttl in self._flash if ttl > 1]
        for message in messages:
            status = message.event.properties.get("status", message.event.properties.get("personCount", ""))
            self._flash.append((f"{message.event.type} {message.event.zone} {status}", 15))
        for row, (text, _) in enumerate(self._flash[-6:]):
            cv2.putText(image, text, (8, 20 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        self._write(image)

    def _draw_geometry(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        for line in self._camera.lines:
            start = (int(line.line.start.x * w), int(line.line.start.y * h))
            end = (int(line.line.end.x * w), int(line.line.end.y * h))
            cv2.arrowedLine(image, start, end, _LINE_COLOUR, 2, tipLength=0.03)
        for zone in self._camera.zones:
            points = np.array([(x * w, y * h) for x, y in zone.polygon], dtype=np.int32)
            cv2.polylines(image, [points], True, _ZONE_COLOUR, 2)

    def _write(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        if self._container is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self._path), mode="w")
            stream = self._container.add_stream("libx264", rate=max(1, round(self._fps)))
            stream.width, stream.height = w - w % 2, h - h % 2
            stream.pix_fmt = "yuv420p"
            self._stream = stream
        assert self._stream is not None
        even = np.ascontiguousarray(image[: self._stream.height, : self._stream.width])
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._container is not None and self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
