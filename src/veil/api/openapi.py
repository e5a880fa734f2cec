"""The OpenAPI document tells what the routes really do: the `Training-Key` / `Prediction-Key` security schemes
on every route that needs a key, the error answers it can give (400, 401, 403, 404, 413, 429, 503, 507 with Custom
Vision's `{code, message}` body) and no 422 (validation errors are answered 400)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from veil.api import deps
from veil.api.deps import PREDICTION_HEADER, TRAINING_HEADER, CsvQuery, RequireKey
from veil.api.route_table import api_routes

ERROR_SCHEMA = {
    "title": "CustomVisionError",
    "type": "object",
    "required": ["code", "message"],
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/CustomVisionError"}}}}
_BODY_METHODS = {"post", "put", "patch", "delete"}


def key_requirement(dependant: Dependant) -> RequireKey | None:
    """The route's `RequireKey` dependency, wherever it sits in the dependency tree."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RequireKey):
            return dependency.call
        found = key_requirement(dependency)
        if found is not None:
            return found
    return None


def _dependency_calls(dependant: Dependant) -> Iterator[Any]:
    """Every dependency callable in the tree (the endpoint's own dependencies and theirs)."""
    for dependency in dependant.dependencies:
        yield dependency.call
        yield from _dependency_calls(dependency)


_IMAGE_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        # Every part is an image, whatever its name (the SDK names it `imageData`; msrest sends fields without a
        # filename); each part's bytes are judged one by one and answered per image (207), so the schema does not
        # require a name or restrict a part's content.
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"imageData": {"description": "image bytes (JPEG, PNG, BMP, GIF, WebP, TIFF)"}},
                "additionalProperties": {"description": "further images: every part is one"},
            }
        },
    },
}


def _declare_raw_inputs(operation: dict[str, Any], dependant: Dependant) -> None:
    """Inputs read from the raw request, which FastAPI cannot see: Custom Vision's array query parameters
    (`CsvQuery`: repeated, or one comma-separated value) and image bodies (raw bytes or multipart `imageData`)."""
    parameters = operation.setdefault("parameters", [])
    declared = {(p.get("in"), p["name"]) for p in parameters}
    for call in _dependency_calls(dependant):
        if isinstance(call, CsvQuery) and ("query", call.name) not in declared:
            declared.add(("query", call.name))
            parameters.append(
                {
                    "name": call.name,
                    "in": "query",
                    "required": False,
                    "description": "repeated, or comma-separated in one value",
                    "schema": {"type": "array", "items": {"type": "string"}},
                    "style": "form",
                    "explode": True,
                }
            )
        if call in (deps.image_upload, deps.one_image):
            operation["requestBody"] = _IMAGE_BODY


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **_ERROR}


def _declare_path_parameters(operation: dict[str, Any], path: str) -> None:
    """Every `{name}` of the path is a declared, required string parameter (routes reading the raw request,
    like the 501 ones, do not declare them themselves)."""
    parameters = operation.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    for name in re.findall(r"\{([^}:]+)", path):
        if name not in declared:
            parameters.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})


def _document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["CustomVisionError"] = ERROR_SCHEMA
    components["securitySchemes"] = {
        header: {"type": "apiKey", "in": "header", "name": header} for header in (TRAINING_HEADER, PREDICTION_HEADER)
    }
    for schema_name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(schema_name, None)
    for path, methods, route in api_routes(app):
        if not route.include_in_schema:
            continue
        requirement = key_requirement(route.dependant)
        for method in methods - {"HEAD", "OPTIONS"}:
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is None:
                continue
            _declare_path_parameters(operation, path)
            _declare_raw_inputs(operation, route.dependant)
            responses = operation.setdefault("responses", {})
            if route.status_code == 501:
                responses.pop("501", None)
                responses["501"] = _error("Not implemented by Veil (BadRequestNotSupported)")
            responses.pop("422", None)
            responses.setdefault("400", _error("Bad input: the message says what is wrong"))
            if requirement is not None:
                operation["security"] = [{header: []} for header in requirement.headers]
                responses.setdefault("401", _error("Missing or unknown key"))
                responses.setdefault("403", _error("The key's role or project scope does not allow this"))
                responses.setdefault("429", _error("Too many wrong keys from this address (Retry-After)"))
                responses.setdefault("503", _error("The database or blob store is unavailable (Retry-After)"))
            if "{" in path:
                responses.setdefault("404", _error("No such project (NotFoundProject) or resource"))
            if method.lower() in _BODY_METHODS:
                responses.setdefault("413", _error("Request body over this route's limit"))
                if requirement is not None:
                    responses.setdefault("507", _error("The database or blob store is out of space"))
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
