"""A database that refuses writes (a read-only SQLite file, a PostgreSQL session in read-only mode as on a hot
standby): `/healthz/ready` is 503 naming the reason, a write is 503 with a code and Retry-After on a connection
that stays open, reads still answer, and liveness stays 200 (restarting would not help)."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.support.in_process import TRAINING, Server

from veil.config import get_settings
from veil.security.auth import OPERATOR
from veil.services.context import AppContext
from veil.services.keys import bootstrap_admin_key, create_api_key


def _read_only(database_url: str) -> str:
    """The same database, opened so that it refuses every write."""
    if database_url.startswith("sqlite:///"):
        return f"sqlite:///file:{database_url.removeprefix('sqlite:///')}?mode=ro&uri=true"
    return f"{database_url}%20-cdefault_transaction_read_only%3Don"  # appended to the URL's `options`


def test_read_only_database_is_not_ready_and_writes_are_503(data_dir: Path, database_url: str) -> None:
    ctx = AppContext.open(get_settings(data_dir=data_dir, database_url=database_url))
    assert bootstrap_admin_key(ctx)
    with ctx.db.session() as session:
        _row, key = create_api_key(session, OPERATOR, "trainer", None, None, "read-only test")
    ctx.close()

    server = Server(data_dir, _read_only(database_url)).start(timeout_s=180)  # a loaded CI machine starts slowly
    try:
        with httpx.Client(base_url=server.url, headers={"Training-Key": key}, timeout=30) as client:
            ready = client.get("/healthz/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"], ready.text
            assert ready.json()["checks"]["database"] == "failed: the database refuses writes (read-only)"
            assert client.get("/healthz/live").status_code == 200

            write = client.post(f"{TRAINING}/projects", params={"name": "refused"})
            assert write.status_code == 503, write.text
            assert write.json()["code"] and "read-only" in write.json()["message"]
            assert write.headers["retry-after"] and write.headers.get("connection") != "close"

            listing = client.get(f"{TRAINING}/projects")  # the same keep-alive connection: still answered
            assert listing.status_code == 200 and listing.json() == [], listing.text
        assert not [line for line in server.output if "Traceback" in line], "".join(server.output)
    finally:
        server.stop()
