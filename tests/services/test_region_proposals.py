"""Region proposals on real street photos (Penn-Fudan): before any detector is trained, YOLOX-Nano's class-agnostic
objectness proposes boxes that cover the people a user would draw."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from tests.conftest import dataset_path

from veil.config import get_settings
from veil.security.auth import OPERATOR
from veil.services.context import AppContext
from veil.services.errors import NotFound
from veil.services.images import Upload, add_images
from veil.services.projects import create_project
from veil.services.region_proposals import MAX_PROPOSALS, propose
from veil.vision.data import Sample

DETECTION_DOMAIN = "da2e3a8a-40a5-4171-82f4-58522f70fbc1"


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    inter = max(0.0, min(ax1, bx1) - max(a[0], b[0])) * max(0.0, min(ay1, by1) - max(a[1], b[1]))
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_untrained_detection_project_gets_objectness_proposals_covering_the_people(tmp_path: Path) -> None:
    from veil.vision.datasets import load_dataset

    samples = load_dataset(dataset_path("pedestrians-det") / "PennFudanPed", "pascal-v1")[:4]
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data"))
    try:
        with ctx.db.session() as session:
            project_id = create_project(ctx, session, OPERATOR, "street", domain_id=DETECTION_DOMAIN).id
        found = people = 0
        for sample in samples:
            image = add_images(ctx, OPERATOR, project_id, [Upload(_png(sample), sample.key)]).results[0].image
            assert image is not None
            result = propose(ctx, project_id, image.id)
            assert result.source == "yolox-nano" and 0 < len(result.proposals) <= MAX_PROPOSALS
            confidences = [p.confidence for p in result.proposals]
            assert confidences == sorted(confidences, reverse=True)
            assert all(p.box[0] >= 0 and p.box[1] >= 0 and p.box[0] + p.box[2] <= 1 + 1e-6 for p in result.proposals)
            for box in sample.boxes:
                people += 1
                truth = (box.left, box.top, box.width, box.height)
                found += any(_iou(truth, p.box) >= 0.5 for p in result.proposals)
        assert found >= 0.8 * people, f"{found} of {people} people covered by a proposal (IoU ≥ 0.5)"
        with pytest.raises(NotFound) as missing:
            propose(ctx, project_id, "no-such-image")
        assert missing.value.code == "NotFoundImage"
    finally:
        ctx.close()


def _png(sample: Sample) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(sample.rgb()).save(buffer, format="PNG")
    return buffer.getvalue()
