"""API keys: the calling key (`whoami`, any valid key), list, create (secret shown once), revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response

from veil.api.deps import Ctx, VeilKey
from veil.api.wire.keys import ApiKeyCreatedOut, ApiKeyIn, ApiKeyOut, WhoAmIOut, api_key_out
from veil.security.auth import Permission as P
from veil.security.auth import Principal
from veil.services import keys as key_service

router = APIRouter()


@router.get("/whoami", response_model=WhoAmIOut)
def whoami(ctx: Ctx, principal: Annotated[Principal, VeilKey(None)]) -> WhoAmIOut:
    """The calling key's id, role, project scope and name: any valid key may ask about itself."""
    with ctx.db.read_session() as session:
        name = key_service.key_name(session, principal)
    return WhoAmIOut(key_id=principal.key_id, role=principal.role, project_id=principal.project_id, name=name)


@router.get("/keys", response_model=list[ApiKeyOut])
def list_keys(ctx: Ctx, _: Annotated[Principal, VeilKey(P.keys_manage)]) -> list[ApiKeyOut]:
    with ctx.db.read_session() as session:
        return [api_key_out(k) for k in key_service.all_api_keys(session)]


@router.post("/keys", response_model=ApiKeyCreatedOut, status_code=201)
def create_key(body: ApiKeyIn, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.keys_manage)]) -> ApiKeyCreatedOut:
    with ctx.db.session() as session:
        row, secret = key_service.create_api_key(
            session, principal, body.role, body.project_id, body.expires_in_days, body.name
        )
        return ApiKeyCreatedOut(**api_key_out(row).model_dump(), key=secret)


@router.delete("/keys/{keyId}", status_code=204)
def revoke_key(keyId: str, ctx: Ctx, principal: Annotated[Principal, VeilKey(P.keys_manage)]) -> Response:
    with ctx.db.session() as session:
        key_service.revoke_api_key(session, principal, keyId)
    return Response(status_code=204)
