"""The official SDK's image-classification quickstart, unchanged but for the endpoint and keys, on ants/bees.

Create a project and tags, upload batches (JSON files and multipart data), train, poll, read performance,
publish, predict held-out images with and without storing, query and delete the stored predictions, export
ONNX, download it and run it with onnxruntime, delete the project.
"""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import keep_predictions, photos, wait_for

TRAIN_PER_CLASS = 8
HELD_OUT_PER_CLASS = 6
PUBLISH_NAME = "classifyModel"

pytestmark = pytest.mark.slow


def test_classification_quickstart(veil_server: VeilServer, trainer, predictor) -> None:  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.prediction.models import (
        CustomVisionErrorException as PredErr,
    )
    from azure.cognitiveservices.vision.customvision.training.models import (
        CustomVisionErrorException,
        ImageFileCreateBatch,
        ImageFileCreateEntry,
        PredictionQueryToken,
    )

    root = dataset_path("ants-bees")
    project = trainer.create_project("Ants and bees", description="SDK quickstart against Veil")
    keep_predictions(veil_server.endpoint, veil_server.keys["admin"], project.id)  # for the stored-prediction calls
    assert project.settings.classification_type == "Multiclass"
    ants = trainer.create_tag(project.id, "ant")
    bees = trainer.create_tag(project.id, "bee")

    # Batch 1: JSON files with base64 contents (create_images_from_files), as the quickstart does.
    entries = [
        ImageFileCreateEntry(name=path.name, contents=path.read_bytes(), tag_ids=[tag.id])
        for tag, folder in ((ants, "ants"), (bees, "bees"))
        for path in photos(root / "train" / folder, TRAIN_PER_CLASS // 2)
    ]
    summary = trainer.create_images_from_files(project.id, ImageFileCreateBatch(images=entries))
    assert summary.is_batch_successful, [(i.source_url, i.status) for i in summary.images]
    # Batch 2: raw multipart data, one call per tag (create_images_from_data).
    for tag, folder in ((ants, "ants"), (bees, "bees")):
        for path in photos(root / "train" / folder, TRAIN_PER_CLASS // 2, skip=TRAIN_PER_CLASS // 2):
            result = trainer.create_images_from_data(project.id, path.read_bytes(), tag_ids=[tag.id])
            assert result.is_batch_successful

    assert trainer.get_image_count(project.id) == 2 * TRAIN_PER_CLASS
    assert trainer.get_tag(project.id, ants.id).image_count == TRAIN_PER_CLASS

    iteration = trainer.train_project(project.id)
    assert iteration.status == "Training"
    iteration = wait_for(
        lambda: trainer.get_iteration(project.id, iteration.id),
        lambda it: it.status != "Training",
        "training",
    )
    assert iteration.status == "Completed", iteration.training_error_details

    # Nothing changed since: Custom Vision refuses to train again.
    with pytest.raises(CustomVisionErrorException) as refused:
        trainer.train_project(project.id)
    assert refused.value.error.code == "BadRequestTrainingNotNeeded"

    performance = trainer.get_iteration_performance(project.id, iteration.id, threshold=0.5)
    assert {t.name for t in performance.per_tag_performance} == {"ant", "bee"}
    assert 0.0 <= performance.precision <= 1.0 and 0.0 <= performance.recall <= 1.0
    # Every evaluated image was held out of the model that scored it (k-fold with this few images).
    held_out_images = trainer.get_image_performance_count(project.id, iteration.id)
    assert 0 < held_out_images <= 2 * TRAIN_PER_CLASS
    per_image = trainer.get_image_performances(project.id, iteration.id, take=5)
    assert per_image and all({p.tag_name for p in image.predictions} == {"ant", "bee"} for image in per_image)

    trainer.publish_iteration(project.id, iteration.id, PUBLISH_NAME, "unused-prediction-resource-id")

    # Held-out validation images, never uploaded: the published model must get most of them right.
    correct, total = 0, 0
    for expected, folder in (("ant", "ants"), ("bee", "bees")):
        for path in photos(root / "val" / folder, HELD_OUT_PER_CLASS):
            result = predictor.classify_image_with_no_store(project.id, PUBLISH_NAME, path.read_bytes())
            best = max(result.predictions, key=lambda p: p.probability)
            correct += best.tag_name == expected
            total += 1
    assert correct / total >= 0.75, f"held-out accuracy {correct}/{total}"

    # Stored predictions: two stored (nostore ones above are not) → the query finds exactly these two.
    val_ant = photos(root / "val" / "ants", 1, skip=HELD_OUT_PER_CLASS)[0].read_bytes()
    stored = [predictor.classify_image(project.id, PUBLISH_NAME, val_ant, application="quickstart") for _ in range(2)]
    query = trainer.query_predictions(project.id, PredictionQueryToken(application="quickstart"))
    assert sorted(r.id for r in query.results) == sorted(p.id for p in stored)
    trainer.delete_prediction(project.id, [stored[0].id])
    query = trainer.query_predictions(project.id, PredictionQueryToken())
    assert [r.id for r in query.results] == [stored[1].id]

    with pytest.raises(PredErr) as missing:
        predictor.classify_image(project.id, "no-such-publish-name", val_ant)
    assert missing.value.error.code.startswith("NotFound")

    # Export Veil's ONNX (General is no compact domain, so Azure's formats are refused, as on Azure; flavor Veil
    # is Veil's own), poll, download behind the training key, run it with onnxruntime.
    with pytest.raises(CustomVisionErrorException) as not_compact:
        trainer.export_iteration(project.id, iteration.id, "ONNX")
    assert not_compact.value.error.code == "BadRequestExportValidationFailed"
    export = trainer.export_iteration(project.id, iteration.id, "ONNX", flavor="Veil")
    assert export.status == "Exporting"
    export = wait_for(
        lambda: next(e for e in trainer.get_exports(project.id, iteration.id) if e.platform == "ONNX"),
        lambda e: e.status != "Exporting",
        "export",
    )
    assert export.status == "Done" and export.download_uri
    assert httpx.get(export.download_uri, timeout=30).status_code == 401  # not a public link
    download = httpx.get(export.download_uri, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60)
    assert download.status_code == 200
    _check_exported_model_agrees(download.content, val_ant, predictor, project.id)

    trainer.unpublish_iteration(project.id, iteration.id)
    trainer.delete_project(project.id)
    assert all(p.id != project.id for p in trainer.get_projects())


def _check_exported_model_agrees(bundle: bytes, image_bytes: bytes, predictor, project_id: str) -> None:  # type: ignore[no-untyped-def]
    """The downloaded model, run offline with plain onnxruntime, answers as the service does."""
    import onnxruntime

    from veil.vision.runtime import ModelInfo, preprocess

    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        assert {"model.onnx", "labels.txt", "model_card.json"} <= set(archive.namelist())
        session = onnxruntime.InferenceSession(archive.read("model.onnx"), providers=["CPUExecutionProvider"])
    info = ModelInfo.from_metadata(dict(session.get_modelmeta().custom_metadata_map))
    rgb = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    tensor, _ = preprocess(rgb, info)
    probabilities = session.run(None, {session.get_inputs()[0].name: tensor[None]})[0][0]
    offline = dict(zip(info.labels, probabilities.tolist(), strict=True))
    online = predictor.classify_image_with_no_store(project_id, PUBLISH_NAME, image_bytes)
    assert {p.tag_name for p in online.predictions} == set(offline)
    for prediction in online.predictions:
        assert abs(offline[prediction.tag_name] - prediction.probability) < 1e-4
