"""Detection of a new class through the official Custom Vision SDK, as a customer would train it (issue 15).

A `veil serve` with a fresh data directory; for each detection domain compared, a project is created with
`CustomVisionTrainingClient`, the first N photos of a set are uploaded with their regions, a Regular training runs
(the product's wall-clock budget: results move with the machine's load, which the table prints), the iteration is
published and every fixed test photo (the set's last ones by name, never uploaded) is sent to
`detect_image_with_no_store` with `CustomVisionPredictionClient`. mAP@0.5 over the SDK's answers, scored by
`veil.vision.metrics` as the service scores its own held-out images.

Domains: "General" (COCO-pretrained YOLOX-Nano, Veil's detection default since issue 15) vs "General (compact)"
(EfficientNet-Lite0 + FPN + FCOS, the default before it), both at 256 px. One training at a time, same server.

    BENCH_SDK_SET=faces BENCH_SDK_IMAGES=30 python -m bench sdk-detection
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path

from bench.prediction import _free_port, _key, _start_server
from bench.training import _detection_sets
from veil.vision.data import Sample
from veil.vision.metrics import Evaluation, ImageResult, ScoredBox, performance

DOMAINS = ("General", "General (compact)")
PUBLISH_NAME = "bench"


def _jpeg(sample: Sample) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(sample.rgb()).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _train_and_score(trainer, predictor, domain_name: str, tag: str, train: list[Sample], test: list[Sample]):  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training.models import (
        ImageFileCreateBatch,
        ImageFileCreateEntry,
        Region,
    )

    domain = next(d for d in trainer.get_domains() if d.type == "ObjectDetection" and d.name == domain_name)
    project = trainer.create_project(f"bench {domain_name}", domain_id=domain.id)
    tag_id = trainer.create_tag(project.id, tag).id
    for start in range(0, len(train), 8):
        entries = [
            ImageFileCreateEntry(
                name=sample.key,
                contents=_jpeg(sample),
                regions=[
                    Region(tag_id=tag_id, left=b.left, top=b.top, width=b.width, height=b.height) for b in sample.boxes
                ],
            )
            for sample in train[start : start + 8]
        ]
        summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
        if not summary.is_batch_successful:
            raise RuntimeError(f"upload failed: {[(i.source_url, i.status) for i in summary.images]}")
    started = time.monotonic()
    iteration = trainer.train_project(project.id)
    while iteration.status == "Training":
        time.sleep(2)
        iteration = trainer.get_iteration(project.id, iteration.id)
    seconds = time.monotonic() - started
    if iteration.status != "Completed":
        raise RuntimeError(f"{domain_name}: training ended {iteration.status}")
    trainer.publish_iteration(project.id, iteration.id, PUBLISH_NAME, "unused-prediction-resource-id")
    results = []
    for sample in test:
        answer = predictor.detect_image_with_no_store(project.id, PUBLISH_NAME, _jpeg(sample))
        boxes = [
            ScoredBox(
                p.tag_name,
                p.probability,
                p.bounding_box.left,
                p.bounding_box.top,
                p.bounding_box.width,
                p.bounding_box.height,
            )
            for p in answer.predictions
        ]
        results.append(ImageResult(sample.key, 0, true_boxes=list(sample.boxes), predicted_boxes=boxes))
    score = performance(Evaluation("detect", "holdout", [tag], results)).mean_average_precision
    own = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5, overlap_threshold=0.5)
    return score, own.average_precision, seconds


def main() -> None:
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient
    from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
    from msrest.authentication import ApiKeyCredentials

    set_name = os.environ.get("BENCH_SDK_SET", "faces")
    count = int(os.environ.get("BENCH_SDK_IMAGES", "30"))
    samples, tested = _detection_sets()[set_name]
    train, test = samples[: min(count, len(samples) - tested)], samples[-tested:]
    tag = train[0].boxes[0].tag
    print(f"set {set_name}: {len(train)} training photos uploaded through the SDK, {len(test)} unseen test photos")
    print("| domain (network) | mAP@0.5, unseen photos, via the SDK | service's own CV mAP | training wall s | load |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "veil-data"
        process, endpoint = _start_server(data_dir, _free_port())
        try:
            key = _key(data_dir, "admin")
            trainer = CustomVisionTrainingClient(endpoint, ApiKeyCredentials(in_headers={"Training-key": key}))
            predictor = CustomVisionPredictionClient(
                endpoint, ApiKeyCredentials(in_headers={"Prediction-key": _key(data_dir, "predictor")})
            )
            for domain_name in DOMAINS:
                score, own, seconds = _train_and_score(trainer, predictor, domain_name, tag, train, test)
                print(
                    f"| {domain_name} | {score:.3f} | {own:.3f} | {seconds:.0f} | {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait(timeout=30)
