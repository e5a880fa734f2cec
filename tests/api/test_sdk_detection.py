"""The official SDK's object-detection quickstart, unchanged but for the endpoint and keys, on Penn-Fudan people.

Pick the General object-detection domain, create a project and a tag, upload images with their person boxes
(regions) in batches, train (Regular), poll, read performance, publish, detect held-out images with and without
storing, query the stored predictions, export ONNX and run it offline with onnxruntime: the same boxes as the
service. Training is capped at a fixed number of optimizer steps in tests (`VEIL_TRAINING_MAX_STEPS`, so the
result does not depend on machine load), yet the detector must find most of the people in the held-out photos;
the service must agree with the exported model, and the evaluation must be honest: every performance image was
held out and carries its ground-truth regions. Advanced training of a class no pretrained model was taught
(raccoons) must find the raccoons of unseen photos too, and draw its training curve.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import box_of, keep_predictions, pennfudan_boxes, wait_for

from veil.vision.datasets import load_dataset

TRAIN_IMAGES = 16  # Custom Vision's minimum is 15 per tag for detection
HELD_OUT = 3
PUBLISH_NAME = "detectModel"
TRAINING_TIMEOUT_S = 1200.0  # a hang guard only: training is step-capped, so a loaded machine just takes longer
RACCOON_TRAIN = 30

pytestmark = pytest.mark.slow


def _pennfudan() -> list[tuple[Path, list[tuple[float, float, float, float]]]]:
    root = dataset_path("pedestrians-det") / "PennFudanPed"
    items = []
    for image in sorted((root / "PNGImages").glob("*.png")):
        _w, _h, boxes = pennfudan_boxes(root / "Annotation" / f"{image.stem}.txt")
        items.append((image, boxes))
    return items


def test_object_detection_quickstart(veil_server: VeilServer, trainer, predictor) -> None:  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
        ImageRegionCreateEntry,
        PredictionQueryToken,
        Region,
    )

    detection_domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project("People", domain_id=detection_domain.id)
    keep_predictions(veil_server.endpoint, veil_server.keys["admin"], project.id)  # for the stored-prediction calls
    person = trainer.create_tag(project.id, "person")
    data = _pennfudan()
    training, held_out = data[:TRAIN_IMAGES], data[-HELD_OUT:]

    sent_boxes = 0
    for start in range(0, TRAIN_IMAGES, 8):  # batches, as the quickstart uploads
        entries = [
            ImageFileCreateEntry(
                name=path.name,
                contents=path.read_bytes(),
                regions=[Region(tag_id=person.id, left=x, top=y, width=w, height=h) for x, y, w, h in boxes],
            )
            for path, boxes in training[start : start + 8]
        ]
        sent_boxes += sum(len(entry.regions) for entry in entries)
        summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        assert summary.is_batch_successful, [(i.source_url, i.status) for i in summary.images]

    # The regions come back exactly as sent (normalized left/top/width/height).
    stored = trainer.get_tagged_images(project.id, take=TRAIN_IMAGES)
    assert len(stored) == TRAIN_IMAGES and sum(len(i.regions) for i in stored) == sent_boxes
    sent = sorted(round(v, 6) for _, boxes in training for box in boxes for v in box)
    got = sorted(round(v, 6) for i in stored for r in i.regions for v in (r.left, r.top, r.width, r.height))
    assert got == sent and {r.tag_name for i in stored for r in i.regions} == {"person"}

    iteration = trainer.train_project(project.id)
    iteration = wait_for(
        lambda: trainer.get_iteration(project.id, iteration.id),
        lambda it: it.status != "Training",
        "training",
        TRAINING_TIMEOUT_S,
    )
    assert iteration.status == "Completed", iteration.training_error_details

    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5, overlap_threshold=0.5)
    assert [t.name for t in performance.per_tag_performance] == ["person"]
    assert 0.0 <= performance.average_precision <= 1.0
    evaluated = trainer.get_image_performances(project.id, iteration.id, take=50)
    # Few images (< 40): 3-fold cross-validation, so every image is scored once, by a model that never saw it.
    assert sorted(image.id for image in evaluated) == sorted(image.id for image in stored)
    assert all(image.regions for image in evaluated)  # each with its ground truth to compare against
    # Veil's privacy report: a detection iteration is audited for membership too, on its 3 fold models (each
    # image a member of two, a non-member of one); not trained privately
    privacy = httpx.get(
        f"{veil_server.endpoint}/veil/v1/projects/{project.id}/iterations/{iteration.id}/privacy",
        headers={"Training-Key": veil_server.keys["admin"]},
        timeout=30,
    ).json()
    audit = privacy["audit"]
    assert privacy["differentialPrivacy"] is None and (audit["members"], audit["nonMembers"]) == (32, 16), privacy
    assert [a["name"] for a in audit["attacks"]] == ["loss threshold", "calibrated loss"] and audit["verdict"]

    # Regions one by one (create_image_regions / delete_image_regions), as a labelling tool does.
    target = stored[0]
    box = ImageRegionCreateEntry(image_id=target.id, tag_id=person.id, left=0.1, top=0.2, width=0.3, height=0.4)
    created = trainer.create_image_regions(project.id, regions=[box])
    assert len(created.created) == 1 and created.created[0].tag_name == "person"
    again = trainer.create_image_regions(project.id, regions=[box])
    assert len(again.duplicated) == 1 and not again.created
    trainer.delete_image_regions(project.id, [created.created[0].region_id])
    assert len(trainer.get_images_by_ids(project.id, [target.id])[0].regions) == len(target.regions)

    trainer.publish_iteration(project.id, iteration.id, PUBLISH_NAME, "unused-prediction-resource-id")
    path, _truth = held_out[0]
    result = predictor.detect_image_with_no_store(project.id, PUBLISH_NAME, path.read_bytes())
    assert result.predictions, "a detector answers with scored boxes"
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    for prediction in result.predictions:
        left, top, width, height = box_of(prediction)
        assert prediction.tag_name == "person" and prediction.tag_id == person.id
        assert 0 <= left <= 1 and 0 <= top <= 1 and width >= 0 and height >= 0
        assert left + width <= 1 + 1e-6 and top + height <= 1 + 1e-6

    kept = [predictor.detect_image(project.id, PUBLISH_NAME, p.read_bytes(), application="cam-1") for p, _ in held_out]
    _check_objects_are_found(kept, [truth for _, truth in held_out], 0.4)
    query = trainer.query_predictions(project.id, PredictionQueryToken(application="cam-1"))
    assert sorted(r.id for r in query.results) == sorted(k.id for k in kept)

    # General is no compact domain: Veil's own ONNX (flavor Veil) exports, Azure's layouts do not (as on Azure).
    export = trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="Veil")
    export = wait_for(
        lambda: next(e for e in trainer.get_exports(project.id, iteration.id) if e.platform == "ONNX"),
        lambda e: e.status != "Exporting",
        "export",
    )
    assert export.status == "Done"
    bundle = httpx.get(export.download_uri, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60)
    assert bundle.status_code == 200
    _check_offline_detections_equal_service(bundle.content, path.read_bytes(), result)

    trainer.unpublish_iteration(project.id, iteration.id)
    trainer.delete_project(project.id)


def _check_offline_detections_equal_service(bundle: bytes, image_bytes: bytes, service_result) -> None:  # type: ignore[no-untyped-def]
    """The exported ONNX, run with onnxruntime through Veil's own pre/post-processing, gives the same boxes."""
    import onnxruntime

    from veil.services.predictions import DETECTION_THRESHOLD
    from veil.vision.runtime import ModelInfo, decode_detections, preprocess

    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        session = onnxruntime.InferenceSession(archive.read("model.onnx"), providers=["CPUExecutionProvider"])
    info = ModelInfo.from_metadata(dict(session.get_modelmeta().custom_metadata_map))
    rgb = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    tensor, letterbox = preprocess(rgb, info)
    boxes, scores = session.run(None, {session.get_inputs()[0].name: tensor[None]})
    height, width = rgb.shape[:2]
    offline = decode_detections(boxes[0], scores[0], info, DETECTION_THRESHOLD, letterbox, (width, height))
    assert len(offline) == len(service_result.predictions)
    order = np.argsort(-offline.confidence, kind="stable")
    for index, prediction in zip(order, service_result.predictions, strict=True):
        x0, y0, x1, y1 = offline.xyxy[index]
        expected = (x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
        assert np.allclose(box_of(prediction), expected, atol=1e-4)
        assert abs(float(offline.confidence[index]) - prediction.probability) < 1e-4


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two normalized left/top/width/height boxes."""
    width = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    height = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(0.0, width) * max(0.0, height)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _check_objects_are_found(results, truths: list[list[tuple[float, float, float, float]]], share: float) -> None:  # type: ignore[no-untyped-def]
    """On unseen photos the best boxes land on the annotated objects (IoU ≥ 0.5, Pascal's match rule). The top
    boxes are used rather than a probability cut: after the tests' short budget the scores are not calibrated yet."""
    found = total = 0
    for result, truth in zip(results, truths, strict=True):
        best = [box_of(p) for p in result.predictions[: len(truth) + 2]]  # predictions come sorted by probability
        found += sum(any(_iou(thing, box) >= 0.5 for box in best) for thing in truth)
        total += len(truth)
    # A detector that has not learned the class rarely puts a box at IoU 0.5 on one; the short test budget leaves
    # the delivered model good but not perfect, hence the margin under what repeated runs found.
    assert found >= share * total, f"only {found} of {total} held-out objects found by the top boxes"


def test_advanced_detection_of_a_new_class_finds_unseen_raccoons(  # type: ignore[no-untyped-def]
    veil_server: VeilServer, trainer, predictor
) -> None:
    """Advanced training (reserved budget) on 30 raccoon photos — no COCO or ImageNet detector was taught raccoons
    as a box class — through the SDK; the published iteration must find the raccoons of the 10 photos it never saw."""
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
        Region,
    )

    detection_domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == "General")
    project = trainer.create_project("Raccoons", domain_id=detection_domain.id)
    raccoon = trainer.create_tag(project.id, "raccoon")
    samples = sorted(load_dataset(dataset_path("raccoon"), "voc"), key=lambda s: s.key)
    training, held_out = samples[:RACCOON_TRAIN], samples[RACCOON_TRAIN:]
    root = dataset_path("raccoon") / "images"
    for start in range(0, len(training), 16):
        entries = [
            ImageFileCreateEntry(
                name=sample.key,
                contents=(root / sample.key).read_bytes(),
                regions=[
                    Region(tag_id=raccoon.id, left=b.left, top=b.top, width=b.width, height=b.height)
                    for b in sample.boxes
                ],
            )
            for sample in training[start : start + 16]
        ]
        summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        assert summary.is_batch_successful, [(i.source_url, i.status) for i in summary.images]

    iteration = trainer.train_project(project.id, training_type="Advanced", reserved_budget_in_hours=1)
    iteration = wait_for(
        lambda: trainer.get_iteration(project.id, iteration.id),
        lambda it: it.status != "Training",
        "training",
        TRAINING_TIMEOUT_S,
    )
    assert iteration.status == "Completed", iteration.training_error_details
    assert iteration.training_type == "Advanced" and iteration.reserved_budget_in_hours == 1
    curve = httpx.get(
        f"{veil_server.endpoint}/veil/v1/projects/{project.id}/iterations/{iteration.id}/trainingcurve",
        headers={"Training-Key": veil_server.keys["admin"]},
        timeout=60,
    )
    assert curve.status_code == 200 and curve.content.startswith(b"\x89PNG"), "Advanced training draws its curve"

    trainer.publish_iteration(project.id, iteration.id, PUBLISH_NAME, "unused-prediction-resource-id")
    results = [
        predictor.detect_image_with_no_store(project.id, PUBLISH_NAME, (root / sample.key).read_bytes())
        for sample in held_out
    ]
    truths = [[(b.left, b.top, b.width, b.height) for b in sample.boxes] for sample in held_out]
    assert {p.tag_name for r in results for p in r.predictions} <= {"raccoon"}
    # Measured: passed through the SDK; the same training (Advanced, 120-step cap: 3 folds × 20, delivered model
    # 60 steps) rebuilt with veil.vision.train found 10 of the 11 held-out raccoons by this rule (2026-11-26).
    _check_objects_are_found(results, truths, 0.5)
    trainer.unpublish_iteration(project.id, iteration.id)
    trainer.delete_project(project.id)
