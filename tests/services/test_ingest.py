"""The one ingest path: every route that accepts image bytes, sent a real WIDER FACE photo for a project whose
policy anonymizes, keeps only images whose faces are hidden — fetched back through the API and compared,
face box by face box, with the WIDER ground truth.

The routes are read from the app itself (raw-body readers, JSON bodies with base64 `contents`, `url`s or
`images` batches); the set must equal the one this test knows, so a new route fails here until it is covered.
Project import keeps pixels without accepting bytes: it is checked the same way below.
"""

from __future__ import annotations

import base64
import functools
import io
import threading
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydantic
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from PIL import Image
from tests.conftest import dataset_path
from tests.support.http_helpers import PREDICTION, TRAINING, create_ants_bees, ok, start_training, wait_iteration
from tests.support.live_server import VeilServer, free_port, make_server

from veil.api import deps
from veil.api.app import create_app
from veil.config import get_settings
from veil.services.context import AppContext

PHOTO = "20_Family_Group_Family_Group_20_108.jpg"  # seven people, faces 73-94 px (WIDER FACE val)
PUBLISHED = "prod"
# Stored predictions are off by default (predictions forget): turned on, they must obey the anonymization too.
POLICY_ON = {"anonymize_on_ingest": True, "targets": ["faces"], "method": "solid", "store_predictions": True}
POLICY_OFF = {"anonymize_on_ingest": False, "store_predictions": True}
# A pixel changed when some channel moved by more than JPEG re-encoding noise (quality 95 moves 99.9 % of a
# WIDER photo's pixels by at most 5 levels); a face is hidden when 70 % of its whole ground-truth box changed.
CODEC_NOISE = 6
HIDDEN = 0.7

# Every route that accepts image bytes, as (method, path under its API version); mirrors are checked equal.
KNOWN_IMAGE_ROUTES = {
    ("POST", "T/projects/{projectId}/images"),
    ("POST", "T/projects/{projectId}/images/files"),
    ("POST", "T/projects/{projectId}/images/urls"),
    ("POST", "T/projects/{projectId}/images/predictions"),
    ("POST", "T/projects/{projectId}/quicktest/image"),
    ("POST", "T/projects/{projectId}/quicktest/url"),
    *(
        ("POST", f"P/{{projectId}}/{task}/iterations/{{publishedName}}/{kind}{suffix}")
        for task in ("classify", "detect")
        for kind in ("image", "url")
        for suffix in ("", "/nostore")
    ),
    ("POST", "/veil/v1/anonymize"),
}
VERSIONS = {"T": ("/customvision/v3.3/training", "/customvision/v3.4-preview/training"),
            "P": ("/customvision/v3.0/prediction", "/customvision/v3.1/prediction")}  # fmt: skip


# --- which routes accept image bytes, read from the app -----------------------------------------------------

HARMLESS_REQUEST_READERS = (deps.get_ctx, deps.get_base_url)


def _reads_raw_body(dependant: Dependant) -> bool:
    """A dependency (or the endpoint) that takes the `Request` can read its body: our image-body dependencies
    do; key checks, the context and query-list parsers only read headers and the URL."""
    call = dependant.call
    harmless = isinstance(call, deps.RequireKey | deps.CsvQuery) or call in HARMLESS_REQUEST_READERS
    if dependant.request_param_name and not harmless:
        return True
    return any(_reads_raw_body(sub) for sub in dependant.dependencies)


def _carries_images(annotation: Any) -> bool:
    """A body type holding image bytes (base64 `bytes`), image URLs or a batch of `images` to create."""
    if annotation is bytes:
        return True
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return any(
            name in ("url", "images") or _carries_images(field.annotation)
            for name, field in annotation.model_fields.items()
        )
    return any(_carries_images(arg) for arg in typing.get_args(annotation))


def _body_params(dependant: Dependant) -> Iterator[Any]:
    for param in dependant.body_params:
        yield param.field_info.annotation
    for sub in dependant.dependencies:
        yield from _body_params(sub)


def _flat_routes(app: FastAPI) -> Iterator[tuple[str, str, APIRoute]]:
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield from ((m, route.path, route) for m in route.methods)
        for context in getattr(route, "effective_route_contexts", lambda: [])():
            if isinstance(context.original_route, APIRoute):
                yield from ((m, context.path, context.original_route) for m in context.methods)


def image_routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    found = {}
    openapi = app.openapi()["paths"]
    for method, path, route in _flat_routes(app):
        if route.status_code == 501 or method not in ("POST", "PUT", "PATCH"):
            continue  # not implemented (answers before reading anything), or a method without a body
        content = openapi.get(path, {}).get(method.lower(), {}).get("requestBody", {}).get("content", {})
        binary = any(kind.startswith(("multipart/", "application/octet-stream", "image/")) for kind in content)
        if binary or _reads_raw_body(route.dependant) or any(map(_carries_images, _body_params(route.dependant))):
            found[(method, path)] = route
    return found


def _expand(known: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Each known route on every API version → its route on the first version (the one exercised)."""
    full = {}
    for method, path in known:
        versions = VERSIONS.get(path[0], ("",))
        for prefix in versions:
            full[(method, prefix + path.lstrip("TP"))] = (method, versions[0] + path.lstrip("TP"))
    return full


def test_the_image_routes_are_the_known_ones(tmp_path: Path) -> None:
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/v.db"))
    try:
        found = image_routes(create_app(ctx))
    finally:
        ctx.close()
    expected = _expand(KNOWN_IMAGE_ROUTES)
    assert set(found) == set(expected), (
        f"new image routes {sorted(set(found) - set(expected))} must keep pixels through services.ingest."
        f"keep_image and be added to this test; gone: {sorted(set(expected) - set(found))}"
    )
    for route, exercised in expected.items():  # every API version serves the very same endpoint
        assert found[route].endpoint is found[exercised].endpoint, route


# --- every route, a real photo, every kept image fetched back -----------------------------------------------


@dataclass(frozen=True)
class Face:
    x1: int
    y1: int
    x2: int
    y2: int


def wider_photo(name: str, min_side: float) -> tuple[bytes, list[Face]]:
    root = dataset_path("faces-det")
    lines = (root / "wider_face_split" / "wider_face_val_bbx_gt.txt").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().endswith(name))
    faces = []
    for line in lines[index + 2 : index + 2 + int(lines[index + 1])]:
        x, y, w, h, *_attrs, invalid, _occlusion, _pose = map(int, line.split())
        if not invalid and (w * h) ** 0.5 >= min_side:
            faces.append(Face(x, y, x + w, y + h))
    return (root / "WIDER_val" / "images" / lines[index].strip()).read_bytes(), faces


def rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def changed_share(original: np.ndarray, kept: np.ndarray, face: Face) -> float:
    """Share of the face's whole ground-truth box whose pixels changed beyond codec noise."""
    rows, cols = slice(face.y1, face.y2), slice(face.x1, face.x2)
    return float((np.abs(kept[rows, cols] - original[rows, cols]).max(axis=2) > CODEC_NOISE).mean())


def faces_hidden(original: np.ndarray, kept: np.ndarray, faces: list[Face]) -> list[float]:
    assert kept.shape == original.shape, "a kept photo has the original's size"
    return [changed_share(original, kept, face) for face in faces]


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, list[Face]]:
    data, faces = wider_photo(PHOTO, 40)
    assert len(faces) >= 5
    return data, faces


@pytest.fixture(scope="module")
def photo_url(tmp_path_factory: pytest.TempPathFactory, photo: tuple[bytes, list[Face]]) -> Iterator[str]:
    """The photo served by an HTTP server on 127.0.0.1 (the server's only allow-listed URL host), as bytes of its own:
    the raw prediction promoted later holds the original bytes, and the same bytes twice are one image (OKDuplicate)."""
    folder = tmp_path_factory.mktemp("www")
    (folder / "group.jpg").write_bytes(_copy(photo[0], 4))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/group.jpg"
    server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VeilServer]:
    veil = make_server(
        tmp_path_factory.mktemp("ingest"), VEIL_REGULAR_TRAINING_MINUTES="1", VEIL_URL_FETCH_HOSTS="127.0.0.1"
    )
    veil.start()
    veil.keys["admin"] = veil.create_key("admin")
    yield veil
    veil.stop()


@pytest.fixture(scope="module")
def http(server: VeilServer) -> Iterator[httpx.Client]:
    key = server.keys["admin"]
    headers = {"Training-Key": key, "Prediction-Key": key}
    with httpx.Client(base_url=server.endpoint, headers=headers, timeout=180) as client:
        yield client


def _set_policy(http: httpx.Client, project_id: str, policy: dict[str, object]) -> None:
    ok(http.put(f"/veil/v1/projects/{project_id}/privacy", json=policy))


def _published_classifier(http: httpx.Client) -> str:
    project = create_ants_bees(http, dataset_path("ants-bees"), per_class=5, name="ingest")
    iteration = wait_iteration(http, project.id, start_training(http, project.id)["id"])
    assert iteration["status"] == "Completed", iteration["trainingErrorDetails"]
    publish = f"{TRAINING}/projects/{project.id}/iterations/{iteration['id']}/publish"
    ok(http.post(publish, params={"publishName": PUBLISHED}))
    return project.id


def _octet(data: bytes) -> dict[str, Any]:
    return {"content": data, "headers": {"Content-Type": "application/octet-stream"}}


def _copy(jpeg: bytes, n: int) -> bytes:
    """The same JPEG with a comment segment naming `n`: the same pixels in other bytes, so Veil does not answer
    OKDuplicate (the same bytes twice are stored once, as on Azure) and each route's ingest is exercised."""
    comment = f"copy {n}".encode()
    return jpeg[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + jpeg[2:]


def _send_photo(http: httpx.Client, project_id: str, photo: bytes, url: str, promote: str) -> dict[str, int]:
    """Send the photo to every known image route (on its first API version); answers' status by route."""
    t, p = f"{TRAINING}/projects/{project_id}", f"{PREDICTION}/{project_id}"
    b64 = base64.b64encode(_copy(photo, 3)).decode()
    calls: dict[tuple[str, str], list[httpx.Response]] = {
        ("POST", "T/projects/{projectId}/images"): [
            http.post(f"{t}/images", **_octet(_copy(photo, 1))),
            http.post(f"{t}/images", files={"imageData": ("group.jpg", _copy(photo, 2), "image/jpeg")}),
        ],
        ("POST", "T/projects/{projectId}/images/files"): [
            http.post(f"{t}/images/files", json={"images": [{"name": "group.jpg", "contents": b64}]})
        ],
        ("POST", "T/projects/{projectId}/images/urls"): [
            http.post(f"{t}/images/urls", json={"images": [{"url": url}]})
        ],
        ("POST", "T/projects/{projectId}/images/predictions"): [
            http.post(f"{t}/images/predictions", json={"images": [{"id": promote}]})
        ],
        ("POST", "T/projects/{projectId}/quicktest/image"): [http.post(f"{t}/quicktest/image", **_octet(photo))],
        ("POST", "T/projects/{projectId}/quicktest/url"): [http.post(f"{t}/quicktest/url", json={"url": url})],
        ("POST", "/veil/v1/anonymize"): [http.post("/veil/v1/anonymize", **_octet(photo))],
    }
    for task in ("classify", "detect"):
        for suffix in ("", "/nostore"):
            base = f"{p}/{task}/iterations/{PUBLISHED}"
            calls[("POST", f"P/{{projectId}}/{task}/iterations/{{publishedName}}/image{suffix}")] = [
                http.post(f"{base}/image{suffix}", **_octet(photo))
            ]
            calls[("POST", f"P/{{projectId}}/{task}/iterations/{{publishedName}}/url{suffix}")] = [
                http.post(f"{base}/url{suffix}", json={"url": url})
            ]
    assert set(calls) == KNOWN_IMAGE_ROUTES
    return {f"{m} {path}": r.status_code for (m, path), responses in calls.items() for r in responses}


def _kept_training_photos(http: httpx.Client, project_id: str, shape: tuple[int, ...]) -> list[np.ndarray]:
    images = ok(http.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 256}))
    assert isinstance(images, list)
    kept = [rgb(http.get(i["originalImageUri"]).content) for i in images if (i["height"], i["width"]) == shape[:2]]
    return kept


def _stored_predictions(http: httpx.Client, project_id: str) -> dict[str, np.ndarray]:
    query = ok(http.post(f"{TRAINING}/projects/{project_id}/predictions/query", json={"maxCount": 200}))
    assert isinstance(query, dict)
    return {r["id"]: rgb(ok_bytes(http.get(r["originalImageUri"]))) for r in query["results"] if r["originalImageUri"]}


def ok_bytes(response: httpx.Response) -> bytes:
    assert response.status_code == 200, f"{response.request.url}: {response.text}"
    return response.content


def test_every_image_route_keeps_only_hidden_faces(
    http: httpx.Client, photo: tuple[bytes, list[Face]], photo_url: str
) -> None:
    data, faces = photo
    original = rgb(data)
    project_id = _published_classifier(http)
    # Control (the check can fail): a prediction stored while the policy is off keeps the faces visible.
    _set_policy(http, project_id, POLICY_OFF)
    raw = ok(http.post(f"{PREDICTION}/{project_id}/classify/iterations/{PUBLISHED}/image", **_octet(data)))
    assert isinstance(raw, dict)
    raw_shares = faces_hidden(original, _stored_predictions(http, project_id)[raw["id"]], faces)
    assert max(raw_shares) < HIDDEN, raw_shares

    _set_policy(http, project_id, POLICY_ON)
    statuses = _send_photo(http, project_id, data, photo_url, promote=raw["id"])
    detect = [route for route in statuses if "/detect/" in route]
    assert all(statuses[r] == 400 for r in detect), statuses  # a classifier: the detect routes keep nothing
    assert all(code in (200, 207) for route, code in statuses.items() if route not in detect), statuses

    kept_training = _kept_training_photos(http, project_id, original.shape)
    # data (octet-stream + multipart), files, urls, and the raw prediction promoted after the policy was set
    assert len(kept_training) == 5, len(kept_training)
    stored = {pid: pixels for pid, pixels in _stored_predictions(http, project_id).items() if pid != raw["id"]}
    assert len(stored) == 4, len(stored)  # quicktest image + url, classify image + url (nostore keeps nothing)
    for pixels in [*kept_training, *stored.values()]:
        shares = faces_hidden(original, pixels, faces)
        assert min(shares) >= HIDDEN, shares

    anonymized = http.post("/veil/v1/anonymize", **_octet(data))
    assert min(faces_hidden(original, rgb(ok_bytes(anonymized)), faces)) >= HIDDEN
    again = ok(http.post(f"{TRAINING}/projects/{project_id}/images", **_octet(_copy(data, 1))))
    assert isinstance(again, dict) and again["images"][0]["status"] == "OKDuplicate"  # the same bytes: kept once
    assert len(_kept_training_photos(http, project_id, original.shape)) == 5


def test_project_import_keeps_the_target_policy(http: httpx.Client, photo: tuple[bytes, list[Face]]) -> None:
    data, faces = photo
    original = rgb(data)
    source = ok(http.post(f"{TRAINING}/projects", params={"name": "raw source"}))
    assert isinstance(source, dict)
    ok(http.post(f"{TRAINING}/projects/{source['id']}/images", **_octet(data)))
    raw = _kept_training_photos(http, source["id"], original.shape)
    assert len(raw) == 1 and max(faces_hidden(original, raw[0], faces)) < HIDDEN  # control: uploaded raw
    _set_policy(http, source["id"], POLICY_ON)  # turned on after the upload: the import copies this policy
    token = ok(http.get(f"{TRAINING}/projects/{source['id']}/export"))
    assert isinstance(token, dict)
    target = ok(http.post(f"{TRAINING}/projects/import", params={"token": token["token"], "name": "imported"}))
    assert isinstance(target, dict)
    copies = _kept_training_photos(http, target["id"], original.shape)
    assert len(copies) == 1
    assert min(faces_hidden(original, copies[0], faces)) >= HIDDEN
