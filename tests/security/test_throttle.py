"""Wrong keys are throttled per client address (429 + Retry-After) while valid keys from other addresses keep
working; failed authentications and repeated 403s show in /metrics and leave one audit event per source (or key)
and minute, carrying how many attempts it stands for — not one per request."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from veil.api.app import create_app
from veil.config import get_settings
from veil.security.auth import OPERATOR, FailureThrottle, RepeatCounter
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key, create_api_key

TRAINING = "/customvision/v3.3/training"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def veil_app(tmp_path: Path) -> Iterator[tuple[AppContext, FastAPI, str, str]]:
    ctx = AppContext.open(get_settings(data_dir=tmp_path / "data", auth_failure_burst=10, auth_failures_per_minute=6))
    admin = bootstrap_admin_key(ctx)
    assert admin
    with ctx.db.session() as session:
        _row, predictor = create_api_key(session, OPERATOR, "predictor", None, None, "")
    yield ctx, create_app(ctx), admin, predictor
    ctx.close()


def _client(app: FastAPI, address: str) -> TestClient:
    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


def _audit(client: TestClient, admin: str) -> list[dict[str, object]]:
    events = client.get("/veil/v1/audit", params={"limit": 1000}, headers={"Training-Key": admin}).json()
    assert isinstance(events, list)
    return events


def test_a_wrong_key_flood_is_throttled_and_valid_keys_elsewhere_are_not(
    veil_app: tuple[AppContext, FastAPI, str, str],
) -> None:
    _ctx, app, admin, _predictor = veil_app
    attacker, user = _client(app, "10.0.0.66"), _client(app, "10.0.0.7")
    started = time.time()
    statuses = [
        attacker.get(f"{TRAINING}/projects", headers={"Training-Key": f"wrong-{i}"}).status_code for i in range(200)
    ]
    assert statuses[:10] == [401] * 10
    # The bucket refills one try per 10 s: only a flood slower than 150 s (a very loaded machine) lets 15 through.
    assert statuses.count(429) >= 185
    throttled = attacker.get(f"{TRAINING}/projects", headers={"Training-Key": "wrong"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    assert throttled.json()["code"] == "BadRequestExceededQuota"  # the SDK's enum code for a Custom Vision route
    # The throttled address is refused before any lookup, its valid keys too (no oracle for a brute force) ...
    assert attacker.get(f"{TRAINING}/projects", headers={"Training-Key": admin}).status_code == 429
    # ... while a valid key from another address is served all along.
    assert all(user.get(f"{TRAINING}/projects", headers={"Training-Key": admin}).status_code == 200 for _ in range(20))

    metrics = user.get("/metrics").text
    invalid = next(
        line for line in metrics.splitlines() if line.startswith('veil_auth_failures_total{reason="invalid"}')
    )
    assert float(invalid.split()[-1]) >= 10

    failed = [e for e in _audit(user, admin) if e["action"] == "auth.failed"]
    minutes = int(time.time() // 60) - int(started // 60) + 1  # a slow flood may straddle a minute
    assert 1 <= len(failed) <= minutes, failed  # one per source and minute, not 200
    assert "source=10.0.0.66" in failed[0]["resourceIds"]  # type: ignore[operator]


def test_repeated_403s_are_one_audit_event_per_key_and_minute(veil_app: tuple[AppContext, FastAPI, str, str]) -> None:
    _ctx, app, admin, predictor = veil_app
    client = _client(app, "10.0.0.8")
    project_id = client.post(f"{TRAINING}/projects", params={"name": "p"}, headers={"Training-Key": admin}).json()["id"]
    statuses = {
        client.get(f"{TRAINING}/projects/{project_id}/tags", headers={"Training-Key": predictor}).status_code
        for _ in range(100)
    }
    assert statuses == {403}  # a valid key is never throttled for what its role may not do
    denied = [e for e in _audit(client, admin) if e["outcome"] == "denied"]
    assert len(denied) == 1 and denied[0]["role"] == "predictor", denied
    metrics = client.get("/metrics").text
    assert any(line.startswith('veil_auth_failures_total{reason="forbidden"}') for line in metrics.splitlines())


def test_the_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(burst=3, per_second=0.5, clock=clock)
    for _ in range(3):
        assert throttle.retry_after("a") is None
        throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(2.0)
    assert throttle.retry_after("b") is None
    clock.now += 2.0
    assert throttle.retry_after("a") is None


def test_repeats_are_counted_into_the_next_record() -> None:
    clock = FakeClock()
    repeats = RepeatCounter(window_s=60, clock=clock)
    assert repeats.seen(("x",)) == 1
    assert [repeats.seen(("x",)) for _ in range(5)] == [None] * 5
    assert repeats.seen(("y",)) == 1
    clock.now += 60
    assert repeats.seen(("x",)) == 6  # the five held back, and this one
