"""Exports through the official SDK, as jobs: `export_iteration(platform, flavor)` answers `Exporting` at once,
`get_exports` shows the job's progress until `Done` with a `downloadUri`; the downloaded Azure-layout ONNX, run
as Azure's published consumer runs it, answers as the service does. A refused format is a 400 with the SDK's
error code; a failing export reads `Failed` with its reason; a running export can be cancelled (Veil extension);
`exportableTo` and `get_domains()` list what the converters really build; `veil export --platform` writes them.

One compact-domain classifier (General (compact): Lite0 at 224 px, trained once for the module) serves every test.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import photos, wait_for
from tests.vision.azure_consumer import AzureOnnxConsumer

from veil.vision.export_formats import exportable_platforms

PUBLISH_NAME = "compactModel"
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Compact:
    project_id: str
    iteration_id: str


@pytest.fixture(scope="module")
def compact(trainer) -> Iterator[Compact]:  # type: ignore[no-untyped-def]
    """A General (compact) ants/bees classifier, trained and published once."""
    domain = next(d for d in trainer.get_domains() if d.type == "Classification" and d.name == "General (compact)")
    project = trainer.create_project("Exports", domain_id=domain.id)
    root = dataset_path("ants-bees")
    for tag_name, folder in (("ant", "ants"), ("bee", "bees")):
        tag = trainer.create_tag(project.id, tag_name)
        for path in photos(root / "train" / folder, 5):
            assert trainer.create_images_from_data(project.id, path.read_bytes(), tag_ids=[tag.id]).is_batch_successful
    iteration = trainer.train_project(project.id)
    iteration = wait_for(
        lambda: trainer.get_iteration(project.id, iteration.id), lambda it: it.status != "Training", "training"
    )
    assert iteration.status == "Completed", iteration.training_error_details
    trainer.publish_iteration(project.id, iteration.id, PUBLISH_NAME, "unused-prediction-resource-id")
    yield Compact(project.id, iteration.id)
    trainer.unpublish_iteration(project.id, iteration.id)
    trainer.delete_project(project.id)


def _export_done(trainer, compact: Compact, platform: str, flavor: str | None = None):  # type: ignore[no-untyped-def]
    started = trainer.export_iteration(compact.project_id, compact.iteration_id, platform, flavor=flavor)
    assert started.status == "Exporting"  # a job: the request does not wait for the conversion
    return wait_for(
        lambda: next(
            e
            for e in trainer.get_exports(compact.project_id, compact.iteration_id)
            if e.platform == platform and (e.flavor or None) == flavor
        ),
        lambda e: e.status != "Exporting",
        f"{platform} export",
    )


def _download(veil_server: VeilServer, uri: str) -> zipfile.ZipFile:
    assert httpx.get(uri, timeout=30).status_code == 401  # never a public link
    answer = httpx.get(uri, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60)
    assert answer.status_code == 200, answer.text
    return zipfile.ZipFile(io.BytesIO(answer.content))


def test_domains_and_the_iteration_list_what_the_converters_build(trainer, compact: Compact) -> None:  # type: ignore[no-untyped-def]
    classifiers, detectors = exportable_platforms("classify"), exportable_platforms("detect")
    assert "ONNX" in classifiers and "DockerFile" in classifiers
    assert "TensorFlow" not in detectors  # TensorFlow Lite converts classifiers only (docs/EXPORTS.md)
    for domain in trainer.get_domains():
        expected = (classifiers if domain.type == "Classification" else detectors) if domain.exportable else []
        assert domain.exportable == ("(compact)" in domain.name), domain.name
        assert sorted(domain.exportable_platforms or []) == sorted(expected), domain.name
    iteration = trainer.get_iteration(compact.project_id, compact.iteration_id)
    assert iteration.exportable and sorted(iteration.exportable_to) == sorted(classifiers)


def test_azure_onnx_export_runs_in_azures_consumer_as_the_service_answers(  # type: ignore[no-untyped-def]
    veil_server: VeilServer, trainer, predictor, compact: Compact, tmp_path: Path
) -> None:
    export = _export_done(trainer, compact, "ONNX")
    assert export.status == "Done" and export.download_uri
    with _download(veil_server, export.download_uri) as archive:
        assert {"model.onnx", "labels.txt", "cvexport.manifest"} <= set(archive.namelist())
        (tmp_path / "model.onnx").write_bytes(archive.read("model.onnx"))
        assert json.loads(archive.read("cvexport.manifest"))["DomainType"] == "Classification"
    consumer = AzureOnnxConsumer(tmp_path / "model.onnx")
    assert consumer.input_name == "data" and consumer.size == (224, 224) and consumer.bgr and consumer.range_255
    for folder in ("ants", "bees"):
        # The photo at the model's size: Azure's consumer (PIL) and the service (OpenCV) then resize nothing, so
        # any difference is the model's.
        photo = tmp_path / f"{folder}.png"
        with Image.open(photos(dataset_path("ants-bees") / "val" / folder, 1)[0]) as original:
            original.convert("RGB").resize(consumer.size).save(photo)
        outputs = consumer.run(photo)
        offline: dict[str, float] = outputs["loss"][0]
        served = predictor.classify_image_with_no_store(compact.project_id, PUBLISH_NAME, photo.read_bytes())
        assert {p.tag_name for p in served.predictions} == set(offline)
        for prediction in served.predictions:
            assert abs(offline[prediction.tag_name] - prediction.probability) < 1e-4
        top = max(served.predictions, key=lambda p: p.probability).tag_name
        assert str(outputs["classLabel"][0][0]) == top


def test_formats_the_converters_do_not_build_are_refused_with_the_sdks_code(trainer, compact: Compact) -> None:  # type: ignore[no-untyped-def]
    from azure.cognitiveservices.vision.customvision.training.models import CustomVisionErrorException

    for platform, flavor, says in (
        ("VAIDK", None, "VAIDK"),
        ("TensorFlow", None, "TensorFlowLite"),  # the frozen graph (TensorFlowNormal) is not built
        ("TensorFlow", "TensorFlowNormal", "frozen graph"),
        ("DockerFile", "ARM", "ARM"),
        ("Caffe", None, "unknown export platform"),
    ):
        with pytest.raises(CustomVisionErrorException) as refused:
            trainer.export_iteration(compact.project_id, compact.iteration_id, platform, flavor=flavor)
        assert refused.value.error.code == "BadRequestNotSupported", (platform, flavor)
        assert says in refused.value.error.message, refused.value.error.message
    listed = {(e.platform, e.flavor) for e in trainer.get_exports(compact.project_id, compact.iteration_id)}
    assert ("VAIDK", None) not in listed and ("Caffe", None) not in listed  # a refusal leaves nothing behind


def _export_state(http: httpx.Client, project_id: str, export_id: str) -> dict[str, Any]:
    answer = http.get(f"/veil/v1/projects/{project_id}/exports/{export_id}")
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert isinstance(state, dict)
    return state


def test_a_running_export_shows_its_progress_and_can_be_cancelled(  # type: ignore[no-untyped-def]
    http: httpx.Client, compact: Compact
) -> None:
    base = f"/customvision/v3.3/training/projects/{compact.project_id}/iterations/{compact.iteration_id}"
    # TensorFlow Lite: the slowest converter (about 25 s on 2 cores), so the cancel lands while it converts.
    started = http.post(f"{base}/export", params={"platform": "TensorFlow", "flavor": "TensorFlowLite"})
    assert started.status_code == 200, started.text
    export = started.json()
    assert export["status"] == "Exporting" and export["downloadUri"] is None
    again = http.post(f"{base}/export", params={"platform": "TensorFlow", "flavor": "TensorFlowLite"})
    assert again.status_code == 400 and again.json()["code"] == "BadRequestExportAlreadyInProgress"
    deadline = time.monotonic() + 120
    state = _export_state(http, compact.project_id, export["id"])
    while not (state["stage"] or "").startswith("converting"):
        assert state["status"] == "Exporting", state
        assert time.monotonic() < deadline, f"export not converting after 120 s: {state}"
        time.sleep(0.2)
        state = _export_state(http, compact.project_id, export["id"])
    assert 0 < state["percent"] < 100
    cancelled = http.post(f"/veil/v1/projects/{compact.project_id}/exports/{export['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    while state["status"] == "Exporting":
        assert time.monotonic() < deadline, f"export not stopped after 120 s: {state}"
        time.sleep(0.2)
        state = _export_state(http, compact.project_id, export["id"])
    assert state["status"] == "Failed" and "cancelled" in state["errorDetails"], state
    listed = next(e for e in http.get(f"{base}/export").json() if e["id"] == export["id"])
    assert listed["status"] == "Failed" and listed["downloadUri"] is None
    job = http.get(f"/veil/v1/projects/{compact.project_id}/exports/{export['id']}/job").json()
    assert job["kind"] == "export" and job["status"] == "cancelled", job
    not_running = http.post(f"/veil/v1/projects/{compact.project_id}/exports/{export['id']}/cancel")
    assert not_running.status_code == 400


def test_veil_export_writes_a_platform_with_a_progress_bar_and_refuses_an_unknown_one(  # type: ignore[no-untyped-def]
    veil_server: VeilServer, trainer, compact: Compact, tmp_path: Path
) -> None:
    out = tmp_path / "fp16.zip"
    exported = veil_server.cli(
        "export", compact.project_id, "--platform", "ONNX", "--flavor", "OnnxFloat16", "-o", str(out)
    )
    assert f"wrote {out}" in exported.stdout
    with zipfile.ZipFile(out) as archive:
        (tmp_path / "model.onnx").write_bytes(archive.read("model.onnx"))
    consumer = AzureOnnxConsumer(tmp_path / "model.onnx")
    assert consumer.dtype == np.float16 and consumer.input_name == "data"
    listed = trainer.get_exports(compact.project_id, compact.iteration_id)
    assert any(e.flavor == "OnnxFloat16" and e.status == "Done" for e in listed)  # a job like the API's

    refused = veil_server.cli("export", compact.project_id, "--platform", "VAIDK", "-o", str(out), check=False)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "VAIDK" in refused.stderr


def test_a_failing_export_reads_failed_with_its_reason(trainer, compact: Compact) -> None:  # type: ignore[no-untyped-def]
    """int8 TensorFlow Lite calibrates on the project's own images; with none left, the job fails and says why.
    (Last in the module: it deletes the project's images.)"""
    trainer.delete_images(compact.project_id, all_images=True)
    export = _export_done(trainer, compact, "TensorFlow", "TensorFlowLiteInt8")
    assert export.status == "Failed" and export.download_uri is None
    listed = trainer.get_exports(compact.project_id, compact.iteration_id, raw=True).response.json()
    failed = next(e for e in listed if e["flavor"] == "TensorFlowLiteInt8")
    assert "calibration images" in failed["errorDetails"], failed
