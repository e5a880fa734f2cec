"""Events in Azure Spatial Analysis' JSON (schemaVersion "2.0"), so consumers written for it keep working.

One message per event, as Spatial Analysis sends them::

    {"events": [{"id", "type", "detectionIds", "properties", "zone"[, "trigger"]}],
     "sourceInfo": {"id", "timestamp", "width", "height", "frameId", "imagePath"},
     "detections": [{"type": "person", "id", "region": {"type": "RECTANGLE", "points": [{x,y}, {x,y}]},
                     "confidence", "metadata": {...}}],
     "schemaVersion": "2.0"}

Points are normalized to [0, 1]; metadata values are strings, as in the service's samples.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import supervision as sv

SCHEMA_VERSION = "2.0"

# Spatial Analysis sends `trigger` only on these event types.
_TYPES_WITH_TRIGGER = frozenset({"personCountEvent", "personDistanceEvent"})


def new_id() -> str:
    """A random 32-hex id (event ids and per-run pseudonymous tracking ids)."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class FrameInfo:
    """Where and when a frame came from; `media_seconds` drives dwell times and intervals."""

    camera_id: str
    frame_id: int
    width: int
    height: int
    media_seconds: float
    wall_time: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True)
class PersonEvent:
    """One Spatial Analysis event, before it is wrapped with its detections and source info."""

    type: str
    zone: str
    detection_ids: tuple[str, ...]
    properties: dict[str, object]
    trigger: str = "event"
    id: str = field(default_factory=new_id)


@dataclass(frozen=True)
class EventMessage:
    """What a sink sends: one event plus the detections it refers to, for one camera frame."""

    event: PersonEvent
    frame: FrameInfo
    detections: tuple[dict[str, object], ...]

    def to_dict(self) -> dict[str, object]:
        event: dict[str, object] = {
            "id": self.event.id,
            "type": self.event.type,
            "detectionIds": list(self.event.detection_ids),
            "properties": self.event.properties,
            "zone": self.event.zone,
        }
        if self.event.type in _TYPES_WITH_TRIGGER:
            event["trigger"] = self.event.trigger
        return {
            "events": [event],
            "sourceInfo": {
                "id": self.frame.camera_id,
                "timestamp": _iso_millis(self.frame.wall_time),
                "width": self.frame.width,
                "height": self.frame.height,
                "frameId": str(self.frame.frame_id),
                "imagePath": "",
            },
            "detections": list(self.detections),
            "schemaVersion": SCHEMA_VERSION,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def detection_records(
    people: sv.Detections, frame: FrameInfo, footprints: np.ndarray, ground: np.ndarray | None
) -> dict[str, dict[str, object]]:
    """The `detections[]` entries of every tracked person in a frame, keyed by tracking id."""
    records: dict[str, dict[str, object]] = {}
    tracking_ids = people.data.get("tracking_id", np.array([], dtype=object))
    confidences = people.confidence if people.confidence is not None else np.ones(len(people))
    for i, tracking_id in enumerate(tracking_ids):
        x1, y1, x2, y2 = (float(v) for v in people.xyxy[i])
        metadata: dict[str, str] = {
            "trackingId": str(tracking_id),
            "footprintX": repr(float(footprints[i, 0]) / frame.width),
            "footprintY": repr(float(footprints[i, 1]) / frame.height),
        }
        if ground is not None:
            metadata["centerGroundPointX"] = repr(float(ground[i, 0]))
            metadata["centerGroundPointY"] = repr(float(ground[i, 1]))
        records[str(tracking_id)] = {
            "type": "person",
            "id": str(tracking_id),
            "region": {
                "type": "RECTANGLE",
                "points": [
                    {"x": _clip(x1 / frame.width), "y": _clip(y1 / frame.height)},
                    {"x": _clip(x2 / frame.width), "y": _clip(y2 / frame.height)},
                ],
            },
            "confidence": float(confidences[i]),
            "metadata": metadata,
        }
    return records


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))
