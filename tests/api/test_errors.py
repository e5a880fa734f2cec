"""The Custom Vision contract cannot drift: every SDK method, called against a live Veil, answers either a result
or an error whose code is a value of the SDK's `CustomVisionErrorCodes`; Veil's copy of that enum equals the SDK's;
every error code written in Veil's source is the enum's or documented as Veil-only; missing resources answer the
specific NotFound codes; and only `get_artifact` is not implemented (501)."""

from __future__ import annotations

import ast
import inspect
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.cognitiveservices.vision.customvision.prediction import models as prediction_models
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training import models as m
from msrest.authentication import ApiKeyCredentials
from msrest.exceptions import HttpOperationError
from tests.conftest import REPO, dataset_path
from tests.support.live_server import VeilServer, make_server

from veil.api.wire.errors import CUSTOM_VISION_ERROR_CODES

ENUM = {code.value for code in m.CustomVisionErrorCodes}
# Codes Veil's source names that are not Custom Vision's, and why they never reach a Custom Vision route as such.
VEIL_ONLY_CODES = {
    "BadRequestPrivacyPolicy": "the /veil/v1 privacy policy route; on uploads it is a per-image status message",
    "ServiceUnavailable": "a project being deleted; on /customvision/ routes mapped to the enum by status",
    "Unauthorized": "/veil/v1 only; Custom Vision routes answer 401 with Forbidden",
    "StorageIntegrityError": "/veil/v1 image and model reads; mapped to ErrorUnknown on /customvision/",
    "MasterKeyUnavailable": "server misconfiguration; mapped to ErrorUnknown on /customvision/",
    "StorageFull": "a full blob store (507); mapped to ErrorUnknown on /customvision/",
    "StorageUnavailable": "an unreachable blob store (503); mapped to ErrorUnknown on /customvision/",
    "DatabaseUnavailable": "a read-only or unreachable database (503); mapped to ErrorUnknown on /customvision/",
    "AuditLogTampered": "/veil/v1/audit only",
    "InternalServerError": "mapped to ErrorUnknown on /customvision/",
    "RequestEntityTooLarge": "a body over its limit; mapped to BadRequest on /customvision/",
    "TooManyRequests": "wrong keys throttled (429); mapped to BadRequestExceededQuota on /customvision/",
    "MethodNotAllowed": "mapped to BadRequestNotSupported on /customvision/",
    "Error": "an unlisted HTTP status; mapped by status on /customvision/",
}
NOT_IMPLEMENTED = {"get_artifact"}  # Azure blob-storage artifacts have no Veil equivalent


def test_veils_copy_of_the_enum_is_the_sdks() -> None:
    assert set(CUSTOM_VISION_ERROR_CODES) == ENUM
    assert {code.value for code in prediction_models.CustomVisionErrorCodes} <= ENUM


def _codes_in_source() -> dict[str, set[str]]:
    """Every string given as an error code in src/veil: `code="..."`, `code = "..."`, `ApiError(status, "...")`,
    and the values of code tables (dicts whose name ends in CODES)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "src" / "veil").rglob("*.py"):
        if path.name == "errors.py" and path.parent.name == "wire":
            continue  # the enum copy itself
        for node in ast.walk(ast.parse(path.read_text())):
            values: list[ast.expr] = []
            if isinstance(node, ast.keyword) and node.arg == "code":
                values = [node.value]
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                if "code" in names:
                    values = [node.value] if node.value is not None else []
                elif any(n.endswith("CODES") or n == "_HTTP_CODES" for n in names) and isinstance(node.value, ast.Dict):
                    values = list(node.value.values)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "ApiError",
                "error_response",
            ):
                values = [a for a in node.args[:3] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str) and value.value[:1].isupper():
                    found.setdefault(value.value, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_error_code_in_the_source_is_the_sdks_or_documented_veil_only() -> None:
    found = _codes_in_source()
    assert "NotFoundProject" in found and "BadRequestImageBatch" in found  # the walk sees the real codes
    strays = {code: sorted(paths) for code, paths in found.items() if code not in ENUM and code not in VEIL_ONLY_CODES}
    assert not strays, f"error codes outside CustomVisionErrorCodes: {strays}"


# --- the SDK's methods against a live Veil --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VeilServer]:
    veil = make_server(tmp_path_factory.mktemp("contract"))
    veil.start()
    veil.keys["admin"] = veil.create_key("admin")
    yield veil
    veil.stop()


@pytest.fixture(scope="module")
def trainer(server: VeilServer) -> CustomVisionTrainingClient:
    credentials = ApiKeyCredentials(in_headers={"Training-key": server.keys["admin"]})
    return CustomVisionTrainingClient(server.endpoint, credentials)


def _photo() -> bytes:
    return sorted((dataset_path("ants-bees") / "val" / "ants").glob("*.jpg"))[0].read_bytes()


def _arguments(method: Callable[..., Any], project_id: str) -> dict[str, Any]:
    """Plausible arguments for every required parameter of an SDK method (ids that exist only if given)."""
    some = str(uuid.uuid4())
    by_name: dict[str, Any] = {
        "project_id": project_id,
        "domain_id": some,
        "iteration_id": some,
        "image_id": some,
        "tag_id": some,
        "image_ids": [some],
        "tag_ids": [some],
        "region_ids": [some],
        "ids": [some],
        "name": "contract",
        "path": "x",
        "token": "not-a-token",
        "url": "http://127.0.0.1:9/x.jpg",
        "platform": "ONNX",
        "publish_name": "contract",
        "prediction_id": "unused",
        "metadata": {"k": "v"},
        "image_data": _photo(),
        "updated_project": m.Project(name="contract", description="", settings=m.ProjectSettings()),
        "updated_tag": m.Tag(name="renamed", description="", type="Regular"),
        "regions": [m.ImageRegionCreateEntry(image_id=some, tag_id=some, left=0.1, top=0.1, width=0.2, height=0.2)],
        "tags": [m.ImageTagCreateEntry(image_id=some, tag_id=some)],
    }
    name = method.__name__
    if name == "create_images_from_files":
        by_name["batch"] = m.ImageFileCreateBatch(images=[m.ImageFileCreateEntry(name="a.jpg", contents=_photo())])
    elif name == "create_images_from_predictions":
        by_name["batch"] = m.ImageIdCreateBatch(images=[m.ImageIdCreateEntry(id=some)])
    elif name == "create_images_from_urls":
        by_name["batch"] = m.ImageUrlCreateBatch(images=[m.ImageUrlCreateEntry(url="http://127.0.0.1:9/x.jpg")])
    if name == "query_suggested_images":
        by_name["query"] = m.SuggestedTagAndRegionQueryToken(threshold=0.5)
    elif name == "query_predictions":
        by_name["query"] = m.PredictionQueryToken(max_count=10)
    required = [
        p.name
        for p in inspect.signature(method).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD and p.name != "self"
    ]
    return {p: by_name[p] for p in required}


def _sdk_methods(trainer: CustomVisionTrainingClient) -> list[Callable[..., Any]]:
    return [
        getattr(trainer, name)
        for name in sorted(dir(trainer))
        if not name.startswith("_")
        and callable(getattr(trainer, name))
        and hasattr(getattr(trainer, name), "metadata")  # the generated operations carry their route
    ]


def _call(method: Callable[..., Any], project_id: str) -> tuple[int, str | None]:
    """(HTTP status, error code) of one SDK call; (200, None) when it succeeded."""
    try:
        method(**_arguments(method, project_id))
    except HttpOperationError as error:  # CustomVisionErrorException, or the plain one of get_artifact
        body = error.response.json() if error.response.content else {}
        return error.response.status_code, body.get("code")
    return 200, None


def test_every_sdk_method_answers_only_custom_vision_codes(trainer: CustomVisionTrainingClient) -> None:
    methods = _sdk_methods(trainer)
    assert len(methods) == 52, [m.__name__ for m in methods]  # every operation of the 3.1.1 training client
    project = trainer.create_project("contract walk")
    answers = {}
    for project_id in (str(uuid.uuid4()), project.id):  # a missing project, then a real one with missing parts
        for method in methods:
            if method.__name__ in ("delete_project", "import_project") and project_id == project.id:
                continue  # keep the real project; import needs a real token
            status, code = _call(method, project_id)
            answers[(method.__name__, project_id == project.id)] = (status, code)
            assert status != 405, f"{method.__name__}: the SDK's HTTP method is not served"
            if status == 501:
                assert method.__name__ in NOT_IMPLEMENTED, f"{method.__name__} is not implemented"
            if status >= 400:
                assert code in ENUM, (
                    f"{method.__name__} ({'real' if project_id == project.id else 'missing'} project): {status} {code}"
                )
    missing_project = {
        name for (name, real), (status, code) in answers.items() if not real and code == "NotFoundProject"
    }
    assert {"get_project", "get_tags", "get_iterations", "train_project", "quick_test_image"} <= missing_project
    real = {name: answer for (name, is_real), answer in answers.items() if is_real}
    for name in ("get_tag", "update_tag", "delete_tag"):
        assert real[name] == (404, "NotFoundTag"), (name, real[name])
    for name in ("get_iteration", "update_iteration", "delete_iteration", "get_iteration_performance"):
        assert real[name] == (404, "NotFoundIteration"), (name, real[name])
    assert real["get_image_region_proposals"] == (404, "NotFoundImage")
    assert real["get_domain"] == (404, "NotFoundDomain")


def test_every_prediction_sdk_method_answers_only_custom_vision_codes(server: VeilServer) -> None:
    from azure.cognitiveservices.vision.customvision.prediction import CustomVisionPredictionClient

    key = server.create_key("predictor")
    predictor = CustomVisionPredictionClient(server.endpoint, ApiKeyCredentials(in_headers={"Prediction-key": key}))
    methods = [getattr(predictor, n) for n in sorted(dir(predictor)) if hasattr(getattr(predictor, n), "metadata")]
    assert len(methods) == 8
    for method in methods:
        data = {"url": "http://127.0.0.1:9/x.jpg"} if "url" in method.__name__ else {"image_data": _photo()}
        with pytest.raises(prediction_models.CustomVisionErrorException) as error:
            method(str(uuid.uuid4()), "prod", **data)
        code = error.value.error.code
        assert code in ENUM, (method.__name__, code)
        # URL routes are off unless the operator allows hosts: refused before any lookup, with their own code.
        assert code == ("BadRequestImageUrl" if "url" in method.__name__ else "NotFoundProject"), (
            method.__name__,
            code,
        )


def test_contract_fixes_answer_the_enums_specific_codes(trainer: CustomVisionTrainingClient) -> None:
    def code_of(call: Callable[[], Any]) -> str | None:
        with pytest.raises(m.CustomVisionErrorException) as error:
            call()
        return error.value.error.code

    assert code_of(lambda: trainer.create_project("x", domain_id=str(uuid.uuid4()))) == "BadRequestProjectUnknownDomain"
    assert (
        code_of(lambda: trainer.create_project("x", classification_type="Both"))
        == "BadRequestProjectUnknownClassification"
    )
    project = trainer.create_project("negatives")
    trainer.create_tag(project.id, "none", type="Negative")
    assert code_of(lambda: trainer.create_tag(project.id, "none2", type="Negative")) == "BadRequestMultipleNegativeTag"
    tag = trainer.create_tag(project.id, "ant")
    trainer.create_images_from_data(project.id, _photo(), tag_ids=[tag.id])
    assert (
        code_of(lambda: trainer.train_project(project.id))
        == "BadRequestMultiClassClassificationTrainingValidationFailed"
    )
    wrong = CustomVisionTrainingClient(
        trainer.config.endpoint, ApiKeyCredentials(in_headers={"Training-key": "0" * 64})
    )
    assert code_of(lambda: wrong.get_projects()) == "Forbidden"


def test_documented_veil_only_codes_are_still_used() -> None:
    """The allow-list above may not hide a code nobody uses any more."""
    found = _codes_in_source()
    assert set(VEIL_ONLY_CODES) <= set(found) | {"Error"}, set(VEIL_ONLY_CODES) - set(found)


def test_compat_doc_has_no_501_but_artifacts() -> None:
    table = [line for line in (REPO / "docs" / "CUSTOM_VISION_COMPAT.md").read_text().splitlines() if "| 501 |" in line]
    assert len(table) == 1 and "/artifacts" in table[0], table
