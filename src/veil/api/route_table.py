"""The app's routes as the client sees them: full path templates and methods (OpenAPI, 405's `Allow`)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import compile_path


def api_routes(app: FastAPI) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(full path, methods, route) of every API route, those of included routers too (FastAPI keeps an
    included router as one entry whose contexts carry the full paths)."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route.path_format, set(route.methods or ()), route
        for context in getattr(route, "effective_route_contexts", lambda: [])():
            if isinstance(context.original_route, APIRoute):
                yield context.path, set(context.methods or ()), context.original_route


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods of the resource at `path`, for a 405's `Allow`: those of the most specific route templates
    matching it (`/projects/import` is its own resource, not `/projects/{projectId}` with an odd id)."""
    table: list[tuple[re.Pattern[str], int, set[str]]] | None = getattr(app.state, "route_table", None)
    if table is None:
        table = [
            (compile_path(template)[0], len(re.sub(r"\{[^}]+\}", "", template)), methods - {"HEAD", "OPTIONS"})
            for template, methods, route in api_routes(app)
            if route.include_in_schema
        ]
        app.state.route_table = table
    matching = [(literal, methods) for pattern, literal, methods in table if pattern.match(path)]
    if not matching:
        return []
    best = max(literal for literal, _ in matching)
    return sorted({m for literal, methods in matching if literal == best for m in methods})
