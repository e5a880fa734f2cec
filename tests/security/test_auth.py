"""Every route × every role: allowed, or 401 (no/bad/revoked/expired key) / 403 (role or project scope).

The matrix is read from the app itself: each route's `RequireKey` dependency names its permission, so routes
added later are covered too, and a Custom Vision or `/veil/v1` route without one fails this test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.routing import APIRoute
from tests.support.in_process import TRAINING, Api

from veil.api.deps import RequireKey
from veil.security.auth import OPERATOR, ROLE_PERMISSIONS, Role
from veil.services.keys import create_api_key
from veil.store.models import ApiKey, utcnow

PROTECTED_PREFIXES = ("/customvision/", "/veil/v1/")
# Each API version mounts the same routers; the matrix runs on one, and checks the others mirror it.
MIRRORS = {"/customvision/v3.4-preview/training/": "/customvision/v3.3/training/",
           "/customvision/v3.1/prediction/": "/customvision/v3.0/prediction/"}  # fmt: skip


def _requirement(route: APIRoute) -> RequireKey | None:
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if isinstance(dependant.call, RequireKey):
            return dependant.call
        stack.extend(dependant.dependencies)
    return None


def _flat_routes(app: object) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(full path, methods, route) of every API route, including those of included routers."""
    for route in app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute):
            yield route.path, set(route.methods), route
        for context in getattr(route, "effective_route_contexts", lambda: [])():
            if isinstance(context.original_route, APIRoute):
                yield context.path, set(context.methods), context.original_route


def _protected_routes(api: Api) -> tuple[list[tuple[str, str, RequireKey]], list[tuple[str, str]]]:
    """Routes that need a key (with their requirement), and routes that answer without one."""
    protected, open_routes = [], []
    routes = list(_flat_routes(api.client.app))
    signatures = {(path, frozenset(methods)) for path, methods, _ in routes}
    for path, methods, route in routes:
        if not path.startswith(PROTECTED_PREFIXES):
            continue
        mirror = next((path.replace(m, o, 1) for m, o in MIRRORS.items() if path.startswith(m)), None)
        if mirror is not None:
            assert (mirror, frozenset(methods)) in signatures, f"{path} has no twin {mirror}"
            continue
        concrete = re.sub(r"\{[^}]+\}", lambda _m: str(uuid.uuid4()), path)
        requirement = _requirement(route)
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            if requirement is None:
                open_routes.append((method, concrete))
            else:
                protected.append((method, concrete, requirement))
    return protected, open_routes


def _keys(api: Api, project_id: str | None = None) -> dict[Role, str]:
    with api.ctx.db.session() as session:
        return {role: create_api_key(session, OPERATOR, role.value, project_id)[1] for role in Role}


def test_every_route_for_every_role(api: Api) -> None:
    keys = _keys(api)
    # One wrong key per route from one address: more than the wrong-key throttle lets through (its own test is
    # tests/security/test_throttle.py); here every wrong key must be judged, so the burst is lifted.
    api.client.app.state.auth_guard.throttle.burst = 1_000_000  # type: ignore[attr-defined]
    routes, open_routes = _protected_routes(api)
    assert len(routes) >= 30  # both Training versions + /veil/v1, at least
    for method, path in open_routes:  # only "not implemented" answers may come without a key
        assert api.client.request(method, path).status_code == 501, f"{method} {path} answers without a key"
    for method, path, requirement in routes:
        header = requirement.headers[0]
        for role, key in keys.items():
            response = api.client.request(method, path, headers={header: key})
            # No permission: any valid key (routes about the key itself, e.g. whoami).
            allowed = requirement.permission is None or requirement.permission in ROLE_PERMISSIONS[role]
            if allowed:
                assert response.status_code not in (401, 403), f"{role} {method} {path}: {response.text}"
            else:
                assert response.status_code == 403, f"{role} {method} {path}: {response.status_code}"
                assert response.json()["code"] == "Forbidden"
        assert api.client.request(method, path).status_code == 401, f"no key {method} {path}"
        bad = api.client.request(method, path, headers={header: "0" * 64})
        # Custom Vision's enum has no "Unauthorized": its routes say Forbidden (with 401), /veil/v1 Unauthorized.
        expected = "Forbidden" if path.startswith("/customvision/") else "Unauthorized"
        assert bad.status_code == 401 and bad.json()["code"] == expected, f"bad key {method} {path}"


def test_role_matrix_as_specified() -> None:
    granted = {role: {p.value for p in perms} for role, perms in ROLE_PERMISSIONS.items()}
    assert "keys.manage" in granted[Role.admin] and "keys.manage" not in granted[Role.trainer]
    assert {"train", "publish", "export", "images.write"} <= granted[Role.trainer]
    assert granted[Role.labeler] >= {"images.write", "tags.write", "regions.write"}
    assert not granted[Role.labeler] & {"train", "publish", "export", "predict", "models.read"}
    assert granted[Role.predictor] == {"predict"}
    assert "audit.read" in granted[Role.auditor]
    assert not granted[Role.auditor] & {"images.bytes", "models.read", "images.write", "train"}


def test_prediction_key_header_does_not_open_training_routes(api: Api) -> None:
    keys = _keys(api)
    response = api.client.get(f"{TRAINING}/projects", headers={"Prediction-Key": keys[Role.admin]})
    assert response.status_code == 401


def test_project_scoped_key_stays_in_its_project(api: Api) -> None:
    mine, other = api.create_project("mine"), api.create_project("other")
    scoped = _keys(api, project_id=mine)[Role.trainer]
    headers = {"Training-Key": scoped}
    listed = api.client.get(f"{TRAINING}/projects", headers=headers).json()
    assert [p["id"] for p in listed] == [mine]
    assert api.client.get(f"{TRAINING}/projects/{mine}/tags", headers=headers).status_code == 200
    denied = api.client.get(f"{TRAINING}/projects/{other}/tags", headers=headers)
    assert denied.status_code == 403 and "another project" in denied.json()["message"]
    created = api.client.post(f"{TRAINING}/projects", params={"name": "new"}, headers=headers)
    assert created.status_code == 403
    scoped_admin = {"Training-Key": _keys(api, project_id=mine)[Role.admin]}
    for path in ("/veil/v1/keys", "/veil/v1/audit"):  # installation-wide: no escalation from one project
        assert api.client.get(path, headers=scoped_admin).status_code == 403, path
    assert api.client.get(f"{TRAINING}/projects/{mine}", headers=scoped_admin).status_code == 200


def test_whoami_describes_the_calling_key(api: Api) -> None:
    project_id = api.create_project("scoped")
    with api.ctx.db.session() as session:
        made = {role: create_api_key(session, OPERATOR, role.value, name=f"{role.value} key") for role in Role}
        scoped_row, scoped = create_api_key(session, OPERATOR, Role.labeler.value, project_id)
        ids = {role: row.id for role, (row, _secret) in made.items()}
        scoped_id = scoped_row.id
    for role, (_row, secret) in made.items():
        header = "Prediction-Key" if role is Role.predictor else "Training-Key"  # either header is accepted
        me = api.client.get("/veil/v1/whoami", headers={header: secret})
        assert me.status_code == 200, me.text
        assert me.json() == {"keyId": ids[role], "role": role.value, "projectId": None, "name": f"{role.value} key"}
    me = api.client.get("/veil/v1/whoami", headers={"Training-Key": scoped}).json()
    assert (me["keyId"], me["role"], me["projectId"]) == (scoped_id, "labeler", project_id)
    for headers in ({"Training-Key": "0" * 64}, {}):
        refused = api.client.get("/veil/v1/whoami", headers=headers)
        assert refused.status_code == 401 and refused.json()["code"] == "Unauthorized"


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_revoked_and_expired_keys_are_refused(api: Api, state: str) -> None:
    with api.ctx.db.session() as session:
        row, secret = create_api_key(session, OPERATOR, Role.trainer.value, expires_in_days=1)
        key_id = row.id
    headers = {"Training-Key": secret}
    assert api.client.get(f"{TRAINING}/projects", headers=headers).status_code == 200
    if state == "revoked":
        assert api.client.delete(f"/veil/v1/keys/{key_id}", headers=api.headers).status_code == 204
    else:
        with api.ctx.db.session() as session:
            row = session.get(ApiKey, key_id)
            assert row is not None
            row.expires_at = utcnow() - timedelta(seconds=1)
    response = api.client.get(f"{TRAINING}/projects", headers=headers)
    assert response.status_code == 401
    assert "revoked or expired" in response.json()["message"]


def test_denied_attempts_are_audited(api: Api) -> None:
    predictor = _keys(api)[Role.predictor]
    api.client.get(f"{TRAINING}/projects", headers={"Training-Key": predictor})
    events = api.client.get("/veil/v1/audit", headers=api.headers).json()
    assert any(e["outcome"] == "denied" and e["role"] == "predictor" for e in events)
