"""The OpenAPI document is truthful (security schemes, real error answers, no 422, path parameters declared),
405 answers say what is allowed, and API responses carry the security headers."""

from __future__ import annotations

import re

import pytest
from tests.api.conftest import TRAINING, Api
from tests.conftest import dataset_path


def test_every_keyed_route_declares_its_key_and_its_errors(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["Training-Key"] == {"type": "apiKey", "in": "header", "name": "Training-Key"}
    assert schemes["Prediction-Key"]["name"] == "Prediction-Key"
    keyed = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert "422" not in operation["responses"], where  # never sent: validation errors are 400
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert set(re.findall(r"\{([^}]+)\}", path)) <= declared, where
            if path.startswith(("/customvision/", "/veil/v1/")) and "501" not in operation["responses"]:
                assert operation.get("security"), f"{where} declares no key"
                assert {"400", "401", "403"} <= set(operation["responses"]), where
                keyed += 1
            if "{projectId}" in path:
                assert "404" in operation["responses"], where
    assert keyed > 50


def test_405_names_the_allowed_methods(api: Api) -> None:
    response = api.client.put(f"{TRAINING}/projects", headers=api.training)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"  # every method of the resource, not one route's
    # Custom Vision routes answer only codes of the SDK's CustomVisionErrorCodes enum, which has no
    # MethodNotAllowed: the contract guard (tests/api/test_errors.py) maps a 405 to BadRequestNotSupported.
    assert response.json()["code"] == "BadRequestNotSupported"


def test_api_answers_are_nosniff_and_image_bytes_are_not_cached(api: Api) -> None:
    project_id = api.new_project()
    assert api.client.get(f"{TRAINING}/projects", headers=api.training).headers["x-content-type-options"] == "nosniff"
    photo = next(dataset_path("ants-bees").rglob("*.jpg"))
    upload = api.client.post(
        f"{TRAINING}/projects/{project_id}/images",
        content=photo.read_bytes(),
        headers={**api.training, "Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 200, upload.text
    image_id = upload.json()["images"][0]["image"]["id"]
    data = api.client.get(f"/veil/v1/projects/{project_id}/images/{image_id}/data", headers=api.training)
    assert data.status_code == 200 and data.headers["content-type"].startswith("image/")
    assert data.headers["cache-control"] == "no-store" and data.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("template", "allow"),
    [
        ("/projects/{projectId}", "DELETE, GET, PATCH"),
        ("/projects/import", "POST"),  # its own resource, not GET /projects/{projectId} with id "import"
        ("/projects/{projectId}/iterations/{iterationId}/publish", "DELETE, POST"),
    ],
)
def test_405_allow_lists_the_methods_documented_for_that_path(api: Api, template: str, allow: str) -> None:
    response = api.client.request("OPTIONS", TRAINING + re.sub(r"\{\w+\}", "0", template), headers=api.training)
    assert response.status_code == 405 and response.headers["allow"] == allow
    documented = api.client.get("/openapi.json").json()["paths"][TRAINING + template]
    assert allow == ", ".join(sorted(method.upper() for method in documented))


def test_raw_inputs_are_declared(api: Api) -> None:
    """Inputs read from the raw request are in the document: array query parameters and image bodies."""
    paths = api.client.get("/openapi.json").json()["paths"]
    listing = paths[f"{TRAINING}/projects/{{projectId}}/images"]
    assert "imageIds" in {p["name"] for p in listing["delete"]["parameters"]}
    assert "tagIds" in {p["name"] for p in listing["get"]["parameters"]}
    upload = listing["post"]["requestBody"]
    assert upload["required"] and {"application/octet-stream", "multipart/form-data"} <= set(upload["content"])
    classify = paths["/customvision/v3.0/prediction/{projectId}/classify/iterations/{publishedName}/image"]
    assert classify["post"]["requestBody"]["required"]


def test_an_empty_or_wrong_key_beside_a_valid_one_is_401(api: Api) -> None:
    for wrong in ("", "0" * 64):
        response = api.client.get(
            "/veil/v1/whoami", headers={"Training-Key": wrong, "Prediction-Key": api.predictor_key}
        )
        assert response.status_code == 401, response.text
    assert api.client.get("/veil/v1/whoami", headers={"Prediction-Key": api.predictor_key}).status_code == 200
