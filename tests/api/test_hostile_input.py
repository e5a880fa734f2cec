"""Input an attacker (or an unlucky client) sends gets a 4xx with a message, never a 500: int64-overflowing
pagination, non-ASCII import tokens, export downloads of projects named in any script."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from tests.api.conftest import TRAINING, Api

from veil.services.vault import Vault
from veil.store.models import Export, Iteration, Project


@pytest.mark.parametrize("listing", ["images", "images/tagged", "images/untagged"])
@pytest.mark.parametrize("skip", ["9223372036854775808", "99999999999999999999999999"])
def test_skip_beyond_int64_is_400(api: Api, listing: str, skip: str) -> None:
    project_id = api.new_project()
    response = api.client.get(
        f"{TRAINING}/projects/{project_id}/{listing}", params={"skip": skip}, headers=api.training
    )
    assert response.status_code == 400, response.text
    assert "skip" in response.json()["message"]


def test_largest_int64_skip_is_an_empty_page(api: Api) -> None:
    project_id = api.new_project()
    response = api.client.get(
        f"{TRAINING}/projects/{project_id}/images", params={"skip": 2**63 - 1}, headers=api.training
    )
    assert response.status_code == 200 and response.json() == []


def test_take_above_azure_limit_is_400(api: Api) -> None:
    project_id = api.new_project()
    response = api.client.get(f"{TRAINING}/projects/{project_id}/images", params={"take": 257}, headers=api.training)
    assert response.status_code == 400 and "take" in response.json()["message"]


@pytest.mark.parametrize("token", ["a.%C3%A9", "%C3%A9.%C3%A9", "\u8702.x"])
def test_non_ascii_import_token_is_400(api: Api, token: str) -> None:
    response = api.client.post(f"{TRAINING}/projects/import?token={token}", headers=api.training)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "BadRequestInvalidImportToken"


@pytest.mark.parametrize("name", ["Пчёлы", "蜂", 'quote" and \\ back'])
def test_export_download_of_a_project_named_in_any_script(api: Api, name: str) -> None:
    project_id = api.new_project(name)
    bundle = b"PK\x05\x06" + b"\x00" * 18  # an empty zip: the route under test only frames the bytes
    with api.ctx.db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        iteration = Iteration(project_id=project_id, name="Iteration 1", status="Completed")
        session.add(iteration)
        session.flush()
        export = Export(project_id=project_id, iteration_id=iteration.id, platform="ONNX", status="Done", blob_id=None)
        session.add(export)
        session.flush()
        export_id = export.id
    blob_id = "5d0c8a9e-0000-4000-8000-00000000e0e0"
    with api.ctx.db.session() as session:
        project = session.get(Project, project_id)
        assert project is not None
        Vault(api.ctx).put(project, blob_id, bundle)
        stored = session.get(Export, export_id)
        assert stored is not None
        stored.blob_id = blob_id
    response = api.client.get(f"/veil/v1/projects/{project_id}/exports/{export_id}/download", headers=api.training)
    assert response.status_code == 200, response.text
    assert response.content == bundle
    disposition = response.headers["content-disposition"]
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded).startswith(name.replace(" ", "_")[:2])


@pytest.mark.parametrize(
    ("field", "value"),
    [("useNegativeSet", 0), ("useNegativeSet", "true"), ("domainId", 5)],
)
def test_project_settings_take_json_types_not_coercions(api: Api, field: str, value: object) -> None:
    """`0` is not false and 5 is not a string: what the schema says is refused (schemathesis's negative data)."""
    project_id = api.new_project()
    response = api.client.patch(
        f"{TRAINING}/projects/{project_id}", json={"settings": {field: value}}, headers=api.training
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("end_time", [0, 1.5, True])
def test_prediction_query_dates_are_strings(api: Api, end_time: object) -> None:
    project_id = api.new_project()
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/predictions/query", json={"endTime": end_time}, headers=api.training
    )
    assert response.status_code == 400 and "endTime" in response.json()["message"], response.text


def test_region_coordinates_are_numbers_not_booleans(api: Api) -> None:
    project_id = api.new_project()
    region = {"imageId": "x", "tagId": "y", "left": 0, "top": 0, "width": 0.5, "height": False}
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/images/regions", json={"regions": [region]}, headers=api.training
    )
    assert response.status_code == 400 and "height" in response.json()["message"], response.text


def test_an_empty_image_body_is_400_not_a_zero_byte_image(api: Api) -> None:
    project_id = api.new_project()
    response = api.client.post(
        f"{TRAINING}/projects/{project_id}/images",
        content=b"",
        headers={**api.training, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 400 and response.json()["code"] == "BadRequestImageStream", response.text


def test_a_key_expiring_past_the_calendar_is_400_not_an_overflow(api: Api) -> None:
    response = api.client.post(
        "/veil/v1/keys", json={"role": "predictor", "expiresInDays": 238514452}, headers=api.training
    )
    assert response.status_code == 400 and "expiresInDays" in response.json()["message"], response.text


def test_the_same_refused_bytes_twice_in_one_upload_are_refused_twice(api: Api) -> None:
    """Found by schemathesis: the second copy of a refused (non-image) part looked for an image never created."""
    project_id = api.new_project()
    parts = [("imageData", ("a.jpg", b"{}", "image/jpeg")), ("imageData", ("b.jpg", b"{}", "image/jpeg"))]
    response = api.client.post(f"{TRAINING}/projects/{project_id}/images", files=parts, headers=api.training)
    assert response.status_code == 207, response.text
    assert [i["status"] for i in response.json()["images"]] == ["ErrorImageFormat", "ErrorImageFormat"]
