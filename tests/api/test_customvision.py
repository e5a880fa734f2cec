"""Raw HTTP against a live `veil serve`: shapes, status and error codes the SDK does not reach, 501 routes,
limits, nostore writing nothing, stored predictions and their retention purge (real `veil purge`)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import dataset_path
from tests.privacy.conftest import wider_faces
from tests.support.http_helpers import (
    PREDICTION,
    TRAINING,
    SmallProject,
    create_ants_bees,
    ok,
    start_training,
    wait_iteration,
)
from tests.support.live_server import VeilServer
from tests.support.sdk_helpers import keep_predictions, photos

from veil.privacy.obfuscate import MASK_SCALES
from veil.privacy.settings import AnonymizeSettings

PUBLISHED = "contract"


@pytest.fixture(scope="module")
def trained(veil_server: VeilServer) -> Iterator[SmallProject]:
    """A published ants/bees classifier trained on 5 photos per tag (the minimum), via raw HTTP."""
    root = dataset_path("ants-bees")
    with httpx.Client(
        base_url=veil_server.endpoint, headers={"Training-Key": veil_server.keys["admin"]}, timeout=60
    ) as http:
        project = create_ants_bees(http, root, per_class=5)
        keep_predictions(veil_server.endpoint, veil_server.keys["admin"], project.id)  # off by default
        iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
        assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
        ok(
            http.post(
                f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/publish",
                params={"publishName": PUBLISHED, "predictionId": "ignored"},
            )
        )
        yield project


def _val_photo(name: str = "bees", skip: int = 0) -> bytes:
    return photos(dataset_path("ants-bees") / "val" / name, 1, skip=skip)[0].read_bytes()


def _predict(server: VeilServer, project_id: str, data: bytes, nostore: bool, **params: str) -> httpx.Response:
    suffix = "/nostore" if nostore else ""
    return httpx.post(
        f"{server.endpoint}{PREDICTION}/{project_id}/classify/iterations/{PUBLISHED}/image{suffix}",
        content=data,
        params=params,
        headers={"Prediction-Key": server.keys["predictor"], "Content-Type": "application/octet-stream"},
        timeout=60,
    )


def _snapshot(data_dir: Path) -> dict[str, str]:
    """Every file under the data directory with a digest of its bytes. SQLite's `-shm` file is left out: it is
    the WAL's shared-memory index (reader marks, frame hashes), which any read touches and which holds no data."""
    return {
        str(path.relative_to(data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(data_dir.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")
    }


@pytest.mark.parametrize(("method", "route"), [("GET", "/projects/{p}/artifacts?path=x")])  # the one left
@pytest.mark.parametrize("version", ["v3.3", "v3.4-preview"])
def test_unimplemented_routes_answer_501_naming_the_route(
    http: httpx.Client, method: str, route: str, version: str
) -> None:
    path = route.format(p="00000000-0000-0000-0000-000000000001", i="00000000-0000-0000-0000-000000000002")
    response = http.request(method, f"/customvision/{version}/training{path}")
    assert response.status_code == 501
    body = response.json()
    assert body["code"] == "BadRequestNotSupported"
    assert route.split("?")[0].replace("{p}", "{projectId}").replace("{i}", "{imageId}") in body["message"]


def test_unknown_paths_and_ids_answer_json_not_a_bare_404(http: httpx.Client) -> None:
    missing = http.get(f"{TRAINING}/projects/00000000-0000-0000-0000-000000000009/iterations")
    assert missing.status_code == 404 and missing.json()["code"].startswith("NotFound")
    unknown = http.get("/customvision/v3.3/training/no/such/route")
    assert unknown.status_code == 404 and "no/such/route" in unknown.json()["message"]


def test_keys_and_roles_on_the_new_routes(veil_server: VeilServer, trained: SmallProject) -> None:
    iterations = f"{veil_server.endpoint}{TRAINING}/projects/{trained.id}/iterations"
    assert httpx.get(iterations).status_code == 401
    assert httpx.get(iterations, headers={"Training-Key": "not-a-key"}).status_code == 401
    denied = httpx.get(iterations, headers={"Training-Key": veil_server.keys["predictor"]})
    assert denied.status_code == 403 and denied.json()["code"] == "Forbidden"
    # A training key is not a prediction key header: prediction routes read Prediction-Key only.
    no_key = httpx.post(
        f"{veil_server.endpoint}{PREDICTION}/{trained.id}/classify/iterations/{PUBLISHED}/image/nostore",
        content=_val_photo(),
        headers={"Training-Key": veil_server.keys["admin"]},
    )
    assert no_key.status_code == 401


def test_training_refusals_carry_custom_vision_codes(http: httpx.Client, trained: SmallProject) -> None:
    again = http.post(f"{TRAINING}/projects/{trained.id}/train")
    assert again.status_code == 400 and again.json()["code"] == "BadRequestTrainingNotNeeded"

    project = ok(http.post(f"{TRAINING}/projects", params={"name": "too-few"}))
    assert isinstance(project, dict)
    tag = ok(http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": "lonely-ant"}))
    assert isinstance(tag, dict)
    for path in photos(dataset_path("ants-bees") / "train" / "ants", 3, skip=40):
        ok(http.post(f"{TRAINING}/projects/{project['id']}/images", params={"tagIds": tag["id"]},
                     content=path.read_bytes()))  # fmt: skip
    refused = http.post(f"{TRAINING}/projects/{project['id']}/train")
    assert refused.status_code == 400
    assert refused.json()["code"] == "BadRequestMultiClassClassificationTrainingValidationFailed"
    assert "lonely-ant" in refused.json()["message"] and "3 image" in refused.json()["message"]
    bad_type = http.post(f"{TRAINING}/projects/{project['id']}/train", params={"trainingType": "Magic"})
    assert bad_type.status_code == 400


def test_negative_tag_rules(http: httpx.Client) -> None:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "negatives"}))
    assert isinstance(project, dict)
    pid = project["id"]
    regular = ok(http.post(f"{TRAINING}/projects/{pid}/tags", params={"name": "ant"}))
    negative = ok(http.post(f"{TRAINING}/projects/{pid}/tags", params={"name": "none", "type": "Negative"}))
    assert isinstance(regular, dict) and isinstance(negative, dict) and negative["type"] == "Negative"
    second = http.post(f"{TRAINING}/projects/{pid}/tags", params={"name": "none2", "type": "Negative"})
    assert second.status_code == 400
    image = ok(http.post(f"{TRAINING}/projects/{pid}/images", params={"tagIds": regular["id"]},
                         content=_val_photo("ants")))  # fmt: skip
    assert isinstance(image, dict)
    image_id = image["images"][0]["image"]["id"]
    mixed = http.post(
        f"{TRAINING}/projects/{pid}/images/tags",
        json={"tags": [{"imageId": image_id, "tagId": negative["id"]}]},
    )
    assert mixed.status_code == 400 and mixed.json()["code"] == "BadRequestNegativeAndRegularTagOnSameImage"
    renamed = ok(http.patch(f"{TRAINING}/projects/{pid}/tags/{regular['id']}", json={"name": "formica"}))
    assert isinstance(renamed, dict) and renamed["name"] == "formica" and renamed["imageCount"] == 1
    to_negative = http.patch(f"{TRAINING}/projects/{pid}/tags/{regular['id']}", json={"type": "Negative"})
    assert to_negative.status_code == 400

    domains = ok(http.get(f"{TRAINING}/domains"))
    assert isinstance(domains, list)
    detection = next(d for d in domains if d["type"] == "ObjectDetection" and d["name"] == "General")
    det = ok(http.post(f"{TRAINING}/projects", params={"name": "det", "domainId": detection["id"]}))
    assert isinstance(det, dict)
    in_detection = http.post(f"{TRAINING}/projects/{det['id']}/tags", params={"name": "none", "type": "Negative"})
    assert in_detection.status_code == 400 and in_detection.json()["code"] == "BadRequestTagType"
    regions_on_classifier = http.post(
        f"{TRAINING}/projects/{pid}/images/regions",
        json={"regions": [{"imageId": image_id, "tagId": regular["id"], "left": 0.1, "top": 0.1, "width": 0.2,
                           "height": 0.2}]},
    )  # fmt: skip
    assert regions_on_classifier.status_code == 400 and regions_on_classifier.json()["code"] == "BadRequestImageRegions"


def test_url_routes_are_off_by_default(veil_server: VeilServer, http: httpx.Client, trained: SmallProject) -> None:
    urls = http.post(
        f"{TRAINING}/projects/{trained.id}/images/urls",
        json={"images": [{"url": "http://169.254.169.254/x.jpg"}]},
    )
    assert urls.status_code == 400 and urls.json()["code"] == "BadRequestImageUrl"
    assert "disabled" in urls.json()["message"]
    predict = httpx.post(
        f"{veil_server.endpoint}{PREDICTION}/{trained.id}/classify/iterations/{PUBLISHED}/url",
        json={"url": "http://127.0.0.1:5432/"},
        headers={"Prediction-Key": veil_server.keys["predictor"]},
    )
    assert predict.status_code == 400 and predict.json()["code"] == "BadRequestImageUrl"


def test_prediction_input_errors(veil_server: VeilServer, trained: SmallProject) -> None:
    garbage = _predict(veil_server, trained.id, b"<html>not an image</html>", nostore=True)
    assert garbage.status_code == 400 and garbage.json()["code"] == "BadRequestImageFormat"
    empty = _predict(veil_server, trained.id, b"", nostore=True)
    assert empty.status_code == 400
    oversized = _predict(veil_server, trained.id, b"\xff\xd8" + b"\0" * (7 * 1024 * 1024), nostore=True)
    assert oversized.status_code in (400, 413) and oversized.json()["code"] == "BadRequestImageSizeBytes"
    detect_on_classifier = httpx.post(
        f"{veil_server.endpoint}{PREDICTION}/{trained.id}/detect/iterations/{PUBLISHED}/image/nostore",
        content=_val_photo(),
        headers={"Prediction-Key": veil_server.keys["predictor"]},
    )
    assert detect_on_classifier.status_code == 400
    assert httpx.get(f"{veil_server.endpoint}/healthz").status_code == 200


def test_nostore_writes_nothing_anywhere(veil_server: VeilServer, trained: SmallProject) -> None:
    photo = _val_photo("ants")
    _predict(veil_server, trained.id, photo, nostore=True)  # warm the model cache first
    before = _snapshot(veil_server.data_dir)
    for _ in range(3):
        answer = ok(_predict(veil_server, trained.id, photo, nostore=True, application="nostore-check"))
        assert isinstance(answer, dict) and {p["tagName"] for p in answer["predictions"]} == {"ant", "bee"}
    assert _snapshot(veil_server.data_dir) == before
    with sqlite3.connect(veil_server.data_dir / "veil.db") as db:
        assert db.execute("select count(*) from predictions where application = 'nostore-check'").fetchone() == (0,)


def test_stored_predictions_query_delete_and_retention_purge(
    veil_server: VeilServer, http: httpx.Client, trained: SmallProject
) -> None:
    stored = [ok(_predict(veil_server, trained.id, _val_photo("bees", i), nostore=False, application="shop"))
              for i in range(3)]  # fmt: skip
    ids = [p["id"] for p in stored if isinstance(p, dict)]
    page = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query",
                        json={"application": "shop", "maxCount": 2, "orderBy": "Oldest"}))  # fmt: skip
    assert isinstance(page, dict) and [r["id"] for r in page["results"]] == ids[:2]
    rest = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query", json=page["token"]))
    assert isinstance(rest, dict) and [r["id"] for r in rest["results"]] == ids[2:]
    bee = trained.tags["bee"]
    confident = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query",
                             json={"application": "shop", "tags": [{"id": bee, "minThreshold": 0.0,
                                                                    "maxThreshold": 0.0001}]}))  # fmt: skip
    assert isinstance(confident, dict) and confident["results"] == []  # bees scored as bees, not near 0
    kept = http.get(page["results"][0]["originalImageUri"])
    assert kept.status_code == 200 and kept.headers["content-type"].startswith("image/")

    too_many = http.post(f"{TRAINING}/projects/{trained.id}/predictions/query", json={"maxCount": 1000})
    assert too_many.status_code == 400

    # A stored prediction becomes a training image (Custom Vision's "images from predictions").
    images_before = ok(http.get(f"{TRAINING}/projects/{trained.id}/images/count"))
    made = ok(http.post(f"{TRAINING}/projects/{trained.id}/images/predictions",
                        json={"images": [{"id": ids[2], "tagIds": [bee]}]}))  # fmt: skip
    assert isinstance(made, dict) and made["isBatchSuccessful"], made
    assert made["images"][0]["image"]["tags"][0]["tagName"] == "bee"
    assert ok(http.get(f"{TRAINING}/projects/{trained.id}/images/count")) == images_before + 1  # type: ignore[operator]
    ok(http.delete(f"{TRAINING}/projects/{trained.id}/images", params={"imageIds": made["images"][0]["image"]["id"]}),
       204)  # fmt: skip

    ok(http.delete(f"{TRAINING}/projects/{trained.id}/predictions", params={"ids": ids[0]}), 204)
    blobs = veil_server.data_dir / "blobs" / trained.id
    blobs_before = {p.name for p in blobs.iterdir()}
    # A day passes... beyond the project's retention: age the rows, then run the real `veil purge`.
    with sqlite3.connect(veil_server.data_dir / "veil.db") as db:
        past = (datetime.now(UTC) - timedelta(days=1)).isoformat(sep=" ")
        db.execute("update predictions set expires_at = ? where id in (?, ?)", (past, ids[1], ids[2]))
    purge = veil_server.cli("purge")
    assert "2 stored prediction" in purge.stdout
    left = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query", json={"application": "shop"}))
    assert isinstance(left, dict) and left["results"] == []
    assert len(blobs_before - {p.name for p in blobs.iterdir()}) == 2


def test_quick_test_stores_when_the_policy_allows_and_can_skip_storing(
    http: httpx.Client, trained: SmallProject
) -> None:
    iteration = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations"))[0]  # type: ignore[index]
    quick = ok(http.post(f"{TRAINING}/projects/{trained.id}/quicktest/image",
                         params={"iterationId": iteration["id"]}, content=_val_photo("ants", 3)))  # fmt: skip
    assert isinstance(quick, dict) and quick["iteration"] == iteration["id"]
    assert max(quick["predictions"], key=lambda p: p["probability"])["tagName"] in {"ant", "bee"}
    unstored = ok(http.post(f"{TRAINING}/projects/{trained.id}/quicktest/image",
                            params={"store": "false"}, content=_val_photo("ants", 4)))  # fmt: skip
    found = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query", json={"maxCount": 256}))
    assert isinstance(found, dict) and isinstance(unstored, dict)
    kept = {r["id"] for r in found["results"]}
    assert quick["id"] in kept and unstored["id"] not in kept
    ok(http.delete(f"{TRAINING}/projects/{trained.id}/predictions", params={"ids": quick["id"]}), 204)


def test_iteration_and_project_management(http: httpx.Client, trained: SmallProject) -> None:
    iterations = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations"))
    assert isinstance(iterations, list) and len(iterations) == 1
    iteration = iterations[0]
    assert iteration["publishName"] == PUBLISHED
    # An iteration says what its domain says (General: not exportable, as on Azure; compact domains are).
    domain = ok(http.get(f"{TRAINING}/domains/{iteration['domainId']}"))
    assert isinstance(domain, dict) and domain["name"] == "General"
    assert iteration["exportable"] is domain["exportable"] is False and iteration["exportableTo"] == []
    renamed = ok(http.patch(f"{TRAINING}/projects/{trained.id}/iterations/{iteration['id']}", json={"name": "v1"}))
    assert isinstance(renamed, dict) and renamed["name"] == "v1"
    published = http.delete(f"{TRAINING}/projects/{trained.id}/iterations/{iteration['id']}")
    assert published.status_code == 400 and published.json()["code"] == "BadRequestIterationIsPublished"
    perf = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations/{iteration['id']}/performance",
                       params={"threshold": 0.9}))  # fmt: skip
    assert isinstance(perf, dict) and {t["name"] for t in perf["perTagPerformance"]} == {"ant", "bee"}
    bad = http.get(f"{TRAINING}/projects/{trained.id}/iterations/{iteration['id']}/performance",
                   params={"threshold": 2})  # fmt: skip
    assert bad.status_code == 400
    export = http.post(f"{TRAINING}/projects/{trained.id}/iterations/{iteration['id']}/export",
                       params={"platform": "CoreML"})  # fmt: skip
    assert export.status_code == 400 and export.json()["code"] == "BadRequestExportValidationFailed"
    assert "compact" in export.json()["message"]

    token = ok(http.get(f"{TRAINING}/projects/{trained.id}/export"))
    assert isinstance(token, dict) and token["imageCount"] == 10 and token["tagCount"] == 2
    copy = ok(http.post(f"{TRAINING}/projects/import", params={"token": token["token"], "name": "copy"}))
    assert isinstance(copy, dict) and copy["name"] == "copy"
    assert ok(http.get(f"{TRAINING}/projects/{copy['id']}/images/count")) == 10
    # Change the signature's last hex digits to other digits (replacing them with a fixed "00" left the token
    # valid whenever the signature already ended in 00: 1 run in 256 passed a forged check that was not forged).
    signature_end = "11" if token["token"].endswith("00") else "00"
    forged = http.post(f"{TRAINING}/projects/import", params={"token": token["token"][:-2] + signature_end})
    assert forged.status_code == 400 and forged.json()["code"] == "BadRequestInvalidImportToken"


def test_anonymize_endpoint_hides_faces_and_stores_nothing(veil_server: VeilServer) -> None:
    couple = sorted((dataset_path("faces-det") / "WIDER_val" / "images" / "19--Couple").glob("*.jpg"))[0]
    _, faces = wider_faces(f"19--Couple/{couple.name}", min_side=24)
    assert faces, "the WIDER ground truth names the faces of this photo"
    original = couple.read_bytes()
    before = _snapshot(veil_server.data_dir)
    answer = httpx.post(
        f"{veil_server.endpoint}/veil/v1/anonymize",
        params={"method": "pixelate"},
        content=original,
        headers={"Prediction-Key": veil_server.keys["predictor"], "Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert int(answer.headers["x-veil-hidden"]) >= 1
    with Image.open(io.BytesIO(original)) as a, Image.open(io.BytesIO(answer.content)) as b:
        assert a.size == b.size
        difference = np.abs(np.asarray(a.convert("RGB"), dtype=np.int16) - np.asarray(b, dtype=np.int16)).max(axis=2)
    # A pixel counts as changed when a channel moved by more than 4 levels: JPEG re-encoding alone moves fewer than
    # 10 % of the pixels away from the faces that much (measured 3.7 %), pixelation most of every face (83-90 %).
    # "Away from the faces" leaves out each face box grown to the default mask scale, which the ellipse may cover.
    changed = difference > 4
    outside = np.ones_like(changed)
    grow = AnonymizeSettings().mask_scale or max(MASK_SCALES)
    for face in faces:
        pad_x, pad_y = int((face.x2 - face.x1) * (grow - 1) / 2) + 1, int((face.y2 - face.y1) * (grow - 1) / 2) + 1
        outside[max(0, face.y1 - pad_y) : face.y2 + pad_y, max(0, face.x1 - pad_x) : face.x2 + pad_x] = False
    assert changed[outside].mean() < 0.10, "the threshold would count mere re-encoding as hiding"
    for face in faces:
        share = changed[face.y1 : face.y2, face.x1 : face.x2].mean()
        assert share >= 0.70, f"only {share:.0%} of the ground-truth face {face} changed"
    assert _snapshot(veil_server.data_dir) == before
    refused = httpx.post(
        f"{veil_server.endpoint}/veil/v1/anonymize",
        params={"method": "smudge"},
        content=original,
        headers={"Prediction-Key": veil_server.keys["predictor"]},
    )
    assert refused.status_code == 400 and "smudge" in refused.json()["message"]


def test_openapi_document_covers_every_surface(veil_server: VeilServer) -> None:
    paths = httpx.get(f"{veil_server.endpoint}/openapi.json", timeout=30).json()["paths"]
    for version in ("v3.3", "v3.4-preview"):
        assert f"/customvision/{version}/training/projects/{{projectId}}/train" in paths
        assert f"/customvision/{version}/training/projects/{{projectId}}/artifacts" in paths  # the 501 too
    for version in ("v3.0", "v3.1"):
        assert (
            f"/customvision/{version}/prediction/{{projectId}}/detect/iterations/{{publishedName}}/image/nostore"
            in paths
        )
    assert "/veil/v1/anonymize" in paths and "/veil/v1/projects/{projectId}/privacy" in paths


def test_image_metadata_and_filter(http: httpx.Client, trained: SmallProject) -> None:
    images = ok(http.get(f"{TRAINING}/projects/{trained.id}/images", params={"take": 256, "orderBy": "Oldest"}))
    assert isinstance(images, list)
    first, second = images[0]["id"], images[1]["id"]
    missing = "00000000-0000-0000-0000-00000000abcd"
    summary = http.post(
        f"{TRAINING}/projects/{trained.id}/images/metadata",
        params={"imageIds": f"{first},{second},{missing}"},
        json={"camera": "north", "site": "a"},
    )
    assert summary.status_code == 207  # one id was not found
    statuses = {e["imageId"]: e["status"] for e in summary.json()["images"]}
    assert statuses == {first: "OK", second: "OK", missing: "ErrorImageNotFound"}
    ok(http.post(f"{TRAINING}/projects/{trained.id}/images/metadata", params={"imageIds": second},
                 json={"camera": "south"}))  # fmt: skip

    def ids(expression: str) -> set[str]:
        found = ok(http.get(f"{TRAINING}/projects/{trained.id}/images", params={"$filter": expression}))
        assert isinstance(found, list)
        return {image["id"] for image in found}

    assert ids("camera eq 'north'") == {first}
    assert ids("camera eq 'north' or camera eq 'south'") == {first, second}
    assert ids("site eq 'a' and camera ne 'north'") == {second}
    assert len(ids("camera ne 'north'")) == len(images) - 1
    count = ok(http.get(f"{TRAINING}/projects/{trained.id}/images/count", params={"$filter": "site eq 'a'"}))
    assert count == 2
    unreadable = http.get(f"{TRAINING}/projects/{trained.id}/images", params={"$filter": "camera like north"})
    assert unreadable.status_code == 400 and "camera like north" in unreadable.json()["message"]


def test_json_file_batches_report_each_image(http: httpx.Client) -> None:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "files"}))
    assert isinstance(project, dict)
    tag = ok(http.post(f"{TRAINING}/projects/{project['id']}/tags", params={"name": "ant"}))
    assert isinstance(tag, dict)
    good = base64.b64encode(_val_photo("ants")).decode()
    bad = base64.b64encode(b"GIF89a but not really").decode()
    url = f"{TRAINING}/projects/{project['id']}/images/files"
    mixed = http.post(url, json={"images": [{"name": "a.jpg", "contents": good, "tagIds": [tag["id"]]},
                                            {"name": "b.gif", "contents": bad}]})  # fmt: skip
    assert mixed.status_code == 207
    statuses = {i["sourceUrl"]: i["status"] for i in mixed.json()["images"]}
    assert statuses == {"a.jpg": "OK", "b.gif": "ErrorImageFormat"}
    none = http.post(url, json={"images": [{"name": "b.gif", "contents": bad}]})  # Azure: 207 even when none is kept
    assert none.status_code == 207 and none.json()["images"][0]["status"] == "ErrorImageFormat"
    assert none.json()["isBatchSuccessful"] is False
    too_many = http.post(url, json={"images": [{"name": f"{i}.jpg", "contents": good} for i in range(65)]})
    assert too_many.status_code == 400 and too_many.json()["code"] == "BadRequestImageBatch"
    not_base64 = http.post(url, json={"images": [{"name": "x", "contents": "%%%"}]})  # decodes to no image at all
    assert not_base64.status_code == 207 and not_base64.json()["images"][0]["status"] == "ErrorImageSize"  # 0 bytes
    assert ok(http.get(f"{TRAINING}/projects/{project['id']}/images/count")) == 1


def test_a_policy_forbidding_stored_predictions_keeps_nothing(
    veil_server: VeilServer, http: httpx.Client, trained: SmallProject
) -> None:
    policy_url = f"/veil/v1/projects/{trained.id}/privacy"
    policy = ok(http.get(policy_url))
    assert isinstance(policy, dict)
    ok(http.put(policy_url, json={**policy, "store_predictions": False}))
    try:
        answer = ok(_predict(veil_server, trained.id, _val_photo("ants", 5), nostore=False, application="forbidden"))
        assert isinstance(answer, dict) and answer["predictions"]  # still answered...
        found = ok(http.post(f"{TRAINING}/projects/{trained.id}/predictions/query", json={"application": "forbidden"}))
        assert isinstance(found, dict) and found["results"] == []  # ...but nothing was kept
    finally:
        ok(http.put(policy_url, json=policy))


def test_a_negative_tag_trains_and_is_reported_as_negative(veil_server: VeilServer, http: httpx.Client) -> None:
    project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="with-negative")
    negative = ok(http.post(f"{TRAINING}/projects/{project.id}/tags", params={"name": "nothing", "type": "Negative"}))
    assert isinstance(negative, dict)
    for path in sorted((dataset_path("raccoon") / "images").glob("*.jpg"))[:5]:
        ok(http.post(f"{TRAINING}/projects/{project.id}/images", params={"tagIds": negative["id"]},
                     content=path.read_bytes()))  # fmt: skip
    iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
    assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
    answer = ok(http.post(f"{TRAINING}/projects/{project.id}/quicktest/image", params={"store": "false"},
                          content=_val_photo("bees")))  # fmt: skip
    assert isinstance(answer, dict)
    types = {p["tagName"]: p["tagType"] for p in answer["predictions"]}
    assert types == {"ant": "Regular", "bee": "Regular", "nothing": "Negative"}
    perf = ok(http.get(f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/performance"))
    assert isinstance(perf, dict) and {t["name"] for t in perf["perTagPerformance"]} == {"ant", "bee"}


def test_a_policy_naming_a_target_without_a_detector_is_refused(veil_server: VeilServer, http: httpx.Client) -> None:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "plates policy"}))
    assert isinstance(project, dict)
    policy_url = f"/veil/v1/projects/{project['id']}/privacy"
    before = ok(http.get(policy_url))
    for targets in (["plates"], ["faces", "people"], []):
        refused = http.put(policy_url, json={"anonymize_on_ingest": True, "targets": targets})
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["code"] == "BadRequestPrivacyPolicy" and ("faces" in body["message"])
        for target in set(targets) - {"faces"}:
            assert repr(target) in body["message"]  # names what it cannot hide
    assert ok(http.get(policy_url)) == before  # nothing was saved

    # A policy stored before this check existed: every upload is refused with the reason, never a 500.
    with sqlite3.connect(veil_server.data_dir / "veil.db") as db:
        stored = {**before, "anonymize_on_ingest": True, "targets": ["plates"]}  # type: ignore[dict-item]
        db.execute("UPDATE projects SET privacy = ? WHERE id = ?", (json.dumps(stored), project["id"]))
    upload = http.post(
        f"{TRAINING}/projects/{project['id']}/images",
        content=_val_photo("bees"),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 207, upload.text  # a per-image status, as Custom Vision reports refusals
    answer = upload.json()
    assert answer["images"][0]["status"] == "ErrorUnknown" and not answer["isBatchSuccessful"]
    assert "'plates'" in answer["images"][0]["message"]
    assert ok(http.get(f"{TRAINING}/projects/{project['id']}/images/count")) == 0  # nothing stored raw

    ok(http.put(policy_url, json={**before, "anonymize_on_ingest": True, "targets": ["faces"]}))
    stored_ok = http.post(
        f"{TRAINING}/projects/{project['id']}/images",
        content=_val_photo("bees"),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert stored_ok.status_code == 200, stored_ok.text
    assert stored_ok.json()["images"][0]["image"]["metadata"]["veil.anonymized"] == "solid"


def test_a_regular_iteration_has_pr_curves_but_no_training_curve(http: httpx.Client, trained: SmallProject) -> None:
    iterations = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations"))
    assert isinstance(iterations, list) and iterations[0]["trainingType"] == "Regular"
    base = f"/veil/v1/projects/{trained.id}/iterations/{iterations[0]['id']}"
    pr_curve = http.get(f"{base}/prcurves/ant")
    assert pr_curve.status_code == 200 and pr_curve.content.startswith(b"\x89PNG")
    missing = http.get(f"{base}/trainingcurve")
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"
    assert "only Advanced training" in missing.json()["message"]
    unknown = http.get(f"/veil/v1/projects/{trained.id}/iterations/{uuid.uuid4()}/trainingcurve")
    assert unknown.status_code == 404 and unknown.json()["code"] == "NotFoundIteration"


def test_a_policy_detector_must_be_a_completed_detection_iteration(
    veil_server: VeilServer, http: httpx.Client, trained: SmallProject
) -> None:
    project = ok(http.post(f"{TRAINING}/projects", params={"name": "detector policy"}))
    assert isinstance(project, dict)
    policy_url = f"/veil/v1/projects/{project['id']}/privacy"
    [classifier] = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations"))  # type: ignore[misc]
    cases = {  # detector → what the refusal says
        (trained.id, str(uuid.uuid4())): "does not exist",
        (project["id"], classifier["id"]): "does not exist",  # an iteration of another project
        (trained.id, classifier["id"]): "classification model",
    }
    for (project_id, iteration_id), reason in cases.items():
        detector = {"projectId": project_id, "iterationId": iteration_id}
        policy = {"anonymize_on_ingest": True, "targets": ["faces", "plates"], "detector": detector}
        refused = http.put(policy_url, json=policy)
        assert refused.status_code == 400, refused.text
        assert refused.json()["code"] == "BadRequestPrivacyPolicy" and reason in refused.json()["message"]
        assert iteration_id in refused.json()["message"]

    # A detector deleted after the policy was saved: uploads are refused with the reason, never a 500.
    stored = {"anonymize_on_ingest": True, "targets": ["plates"],
              "detector": {"project_id": trained.id, "iteration_id": str(uuid.uuid4())}}  # fmt: skip
    with sqlite3.connect(veil_server.data_dir / "veil.db") as db:
        db.execute("UPDATE projects SET privacy = ? WHERE id = ?", (json.dumps(stored), project["id"]))
    upload = http.post(
        f"{TRAINING}/projects/{project['id']}/images",
        content=_val_photo("ants"),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 207 and "does not exist" in upload.json()["images"][0]["message"], upload.text
    assert upload.json()["images"][0]["status"] == "ErrorUnknown"


def _model_card(http: httpx.Client, project_id: str, iteration_id: str) -> dict:  # type: ignore[type-arg]
    ok(http.post(f"{TRAINING}/projects/{project_id}/iterations/{iteration_id}/export",
                 params={"platform": "ONNX", "flavor": "Veil"}))  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        exports = ok(http.get(f"{TRAINING}/projects/{project_id}/iterations/{iteration_id}/export"))
        assert isinstance(exports, list) and exports
        if exports[0]["status"] != "Exporting":
            break
        assert time.monotonic() < deadline, "export still running after 60 s"
        time.sleep(0.2)
    assert exports[0]["status"] == "Done", exports
    bundle = http.get(exports[0]["downloadUri"])
    assert bundle.status_code == 200, bundle.text
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        card = json.loads(archive.read("model_card.json"))
    assert isinstance(card, dict)
    return card


def test_the_backbone_extension_picks_the_network(http: httpx.Client, trained: SmallProject) -> None:
    """Veil extension `backbone` on /train: the default classifier is Lite2; Lite0 is smaller and faster."""
    refused = http.post(f"{TRAINING}/projects/{trained.id}/train", params={"backbone": "resnet50", "forceTrain": True})
    assert refused.status_code == 400 and "efficientnet-lite0" in refused.json()["message"]
    iterations = ok(http.get(f"{TRAINING}/projects/{trained.id}/iterations"))
    assert isinstance(iterations, list) and len(iterations) == 1  # a refused request creates nothing
    default_card = _model_card(http, trained.id, iterations[0]["id"])
    assert default_card["training"]["backbone"] == "efficientnet-lite2"

    small = start_training(http, trained.id, backbone="lite0", forceTrain="true")
    small = wait_iteration(http, trained.id, small["id"])
    assert small["status"] == "Completed", small["trainingErrorDetails"]
    small_card = _model_card(http, trained.id, small["id"])
    assert small_card["training"]["backbone"] == "efficientnet-lite0"
    assert small_card["training"]["input_size"] == 224
    ok(http.delete(f"{TRAINING}/projects/{trained.id}/iterations/{small['id']}"), status=204)
