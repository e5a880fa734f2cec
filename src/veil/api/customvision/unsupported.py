"""Custom Vision routes Veil does not implement: each answers 501 `BadRequestNotSupported` saying why
(docs/CUSTOM_VISION_COMPAT.md lists them), so an SDK call fails clearly instead of with a bare 404."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response

from veil.api.errors import ApiError

router = APIRouter(tags=["not implemented"])

NOT_IMPLEMENTED: tuple[tuple[str, str, str], ...] = (
    ("GET", "/projects/{projectId}/artifacts", "Azure blob-storage artifacts have no Veil equivalent"),
)


def not_implemented(method: str, path: str, why: str) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        raise ApiError(
            501,
            "BadRequestNotSupported",
            f"{method} {path} is not implemented by Veil ({why}); see docs/CUSTOM_VISION_COMPAT.md",
        )

    return route


for _method, _path, _why in NOT_IMPLEMENTED:
    _name = "not_implemented_" + "_".join(p for p in _path.split("/") if p and not p.startswith("{"))
    router.add_api_route(_path, not_implemented(_method, _path, _why), methods=[_method], name=_name,
                         status_code=501)  # fmt: skip
