"""Region proposals (Custom Vision's `get_image_region_proposals`): class-agnostic boxes to accept in one click.

Where they come from, in order:
1. the project's latest trained detector (its boxes for every tag, merged across tags): it has seen what this
   project labels, so its boxes are the ones a user wants;
2. else YOLOX-Nano's objectness, shipped with Veil (`veil/edge/models/yolox_nano.onnx`, Apache-2.0): YOLOX scores
   "is there an object in this cell" separately from "which of COCO's 80 classes", so its objectness head is a
   class-agnostic proposal source by construction, trained on 118k photos of everyday scenes, run torch-free.

Boxes are normalized left/top/width/height, most confident first, overlapping ones (IoU ≥ 0.5) merged.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv
from PIL import Image as PILImage
from sqlalchemy import select

from veil.services.context import AppContext
from veil.services.errors import NotFound
from veil.services.models import MODELS
from veil.services.projects import get_project
from veil.services.vault import Vault
from veil.store.models import Image, Iteration, Project
from veil.store.records import COMPLETED

if TYPE_CHECKING:
    from veil.vision.yolox_runtime import YoloxModel

YOLOX_NANO = Path(__file__).resolve().parents[1] / "edge" / "models" / "yolox_nano.onnx"
MAX_PROPOSALS = 20
MIN_CONFIDENCE = 0.1  # below this, boxes are mostly background texture: not worth a click
MERGE_IOU = 0.5


@dataclass(frozen=True)
class Proposal:
    confidence: float
    box: tuple[float, float, float, float]  # normalized left, top, width, height


@dataclass(frozen=True)
class RegionProposals:
    project_id: str
    image_id: str
    proposals: list[Proposal]
    source: str  # "iteration:<id>" or "yolox-nano"


_objectness: YoloxModel | None = None
_objectness_lock = threading.Lock()


def propose(ctx: AppContext, project_id: str, image_id: str) -> RegionProposals:
    """Class-agnostic boxes for one image of the project."""
    with ctx.db.read_session() as session:
        project = get_project(session, project_id)
        image = session.get(Image, image_id)
        if image is None or image.project_id != project_id:
            raise NotFound(f"image {image_id} not found in project {project_id}", code="NotFoundImage")
        detector = session.scalars(
            select(Iteration)
            .where(Iteration.project_id == project_id, Iteration.status == COMPLETED)
            .order_by(Iteration.trained_at.desc())
        ).first()
        if project.project_type != "ObjectDetection":
            detector = None
        session.expunge_all()
    rgb = _pixels(ctx, project, image)
    if detector is not None and detector.model_blob_id:
        found = MODELS.get(ctx, project, detector).detect(rgb, threshold=MIN_CONFIDENCE)
        source = f"iteration:{detector.id}"
    else:
        found = _objectness_boxes(rgb)
        source = "yolox-nano"
    return RegionProposals(project_id, image_id, _normalized(found, rgb.shape[1], rgb.shape[0]), source)


def _pixels(ctx: AppContext, project: Project, image: Image) -> np.ndarray:
    with PILImage.open(io.BytesIO(Vault(ctx).get(project, image.blob_id))) as decoded:
        return np.asarray(decoded.convert("RGB"))


def _objectness_boxes(rgb: np.ndarray) -> sv.Detections:
    from veil.vision.yolox_runtime import decode

    model = _objectness_model()
    raw, placement = model.raw(rgb)
    xyxy, _scores = decode(raw, model.size)
    objectness = raw[:, 4]
    keep = objectness >= MIN_CONFIDENCE
    height, width = rgb.shape[:2]
    return sv.Detections(
        xyxy=placement.to_frame(xyxy[keep], width, height),
        confidence=objectness[keep].astype(np.float32),
        class_id=np.zeros(int(keep.sum()), dtype=int),
    )


def _objectness_model() -> YoloxModel:
    global _objectness
    with _objectness_lock:
        if _objectness is None:
            from veil.vision.yolox_runtime import YoloxModel

            _objectness = YoloxModel.load(YOLOX_NANO)
        return _objectness


def _normalized(found: sv.Detections, width: int, height: int) -> list[Proposal]:
    if len(found) == 0:
        return []
    confidence = found.confidence if found.confidence is not None else np.ones(len(found), dtype=np.float32)
    merged = sv.Detections(xyxy=found.xyxy, confidence=confidence, class_id=np.zeros(len(found), dtype=int))
    merged = merged.with_nms(threshold=MERGE_IOU, class_agnostic=True)
    order = np.argsort(-np.asarray(merged.confidence))[:MAX_PROPOSALS]
    proposals = []
    for index in order:
        x0, y0, x1, y1 = (float(v) for v in merged.xyxy[index])
        x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
        if x1 <= x0 or y1 <= y0:
            continue
        box = (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
        proposals.append(Proposal(float(np.asarray(merged.confidence)[index]), box))
    return proposals
