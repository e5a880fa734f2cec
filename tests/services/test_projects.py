"""A project that does not exist answers 404 `NotFoundProject` (Azure's code, the SDK's
`CustomVisionErrorCodes.not_found_project`) on every route that names one: one lookup, one code."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from azure.cognitiveservices.vision.customvision.training.models import CustomVisionErrorCodes
from tests.security.test_auth import _flat_routes
from tests.support.in_process import Api

# POST routes validate their body before any lookup (400); the second test sends them real bodies.
BODY_FIRST = {"POST"}
# Query parameters some routes require before they look anything up (ignored by the others).
ANY_IDS = {name: str(uuid.uuid4()) for name in ("imageIds", "tagIds", "regionIds", "ids")}


def _project_routes(api: Api) -> list[tuple[str, str]]:
    routes = []
    for path, methods, route in _flat_routes(api.client.app):
        if "{projectId}" not in path or route.status_code == 501:
            continue
        if path.startswith(("/customvision/v3.4-preview/", "/customvision/v3.1/")):
            continue  # the same routers as v3.3 / v3.0
        for method in sorted(methods - BODY_FIRST - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def test_every_route_answers_not_found_project_for_a_missing_project(api: Api) -> None:
    assert CustomVisionErrorCodes.not_found_project.value == "NotFoundProject"
    missing = str(uuid.uuid4())
    routes = _project_routes(api)
    assert len(routes) >= 25
    headers = {**api.headers, "Prediction-Key": api.headers["Training-Key"]}
    for method, path in routes:
        concrete = re.sub(r"\{[^}]+\}", lambda m: missing if m[0] == "{projectId}" else str(uuid.uuid4()), path)
        body = {} if method in ("PATCH", "PUT") else None  # an empty update: valid, so the lookup decides
        response = api.client.request(method, concrete, headers=headers, json=body, params=ANY_IDS)
        assert response.status_code == 404, f"{method} {path}: {response.status_code} {response.text}"
        assert response.json()["code"] == "NotFoundProject", f"{method} {path}: {response.json()}"


def test_uploads_and_predictions_to_a_missing_project_answer_not_found_project(api: Api, photos: list[Path]) -> None:
    missing = str(uuid.uuid4())
    data = photos[0].read_bytes()
    training = f"/customvision/v3.3/training/projects/{missing}"
    prediction = f"/customvision/v3.0/prediction/{missing}/classify/iterations/prod/image"
    headers = {**api.headers, "Prediction-Key": api.headers["Training-Key"]}
    for path in (f"{training}/images", f"{training}/quicktest/image", prediction):
        response = api.client.post(path, content=data, headers={**headers, "Content-Type": "application/octet-stream"})
        assert response.status_code == 404 and response.json()["code"] == "NotFoundProject", (path, response.text)
    response = api.client.post(f"{training}/tags", params={"name": "ant"}, headers=headers)
    assert response.status_code == 404 and response.json()["code"] == "NotFoundProject", response.text
