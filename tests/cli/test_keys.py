"""`veil keys …`, `veil audit verify`, `veil purge` as an operator runs them (default SQLite data dir)."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from tests.support.in_process import VEIL_BIN
from typer.testing import CliRunner, Result

from veil.cli import app
from veil.config import get_settings
from veil.security.auth import OPERATOR, Unauthenticated, authenticate
from veil.services import images as image_service
from veil.services import projects as project_service
from veil.services.context import AppContext
from veil.store.models import Image, utcnow

KEY = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def veil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run a `veil` command on a fresh data directory (in-process, like the entry point, streams apart)."""
    data_dir = tmp_path / "veil-data"
    monkeypatch.setenv("VEIL_DATA_DIR", str(data_dir))
    monkeypatch.delenv("VEIL_DATABASE_URL", raising=False)
    monkeypatch.delenv("VEIL_MASTER_KEY", raising=False)

    def run(*args: str) -> Result:
        return CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)])

    run.data_dir = data_dir  # type: ignore[attr-defined]
    return run


def _one_error_line(result: Result, exit_code: int = 1) -> str:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _context(data_dir: Path) -> AppContext:
    return AppContext.open(get_settings(data_dir=data_dir))


def test_installed_command_prints_only_the_key_last(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEIL_")}
    result = subprocess.run(
        [VEIL_BIN, "keys", "create", "--role", "trainer", "--data-dir", str(tmp_path / "d")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert KEY.fullmatch(result.stdout.strip().splitlines()[-1])
    assert "shown once" in result.stderr


def test_create_list_revoke_a_key(veil) -> None:  # type: ignore[no-untyped-def]
    created = veil("keys", "create", "--role", "trainer", "--name", "ci")
    assert created.exit_code == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    assert KEY.fullmatch(secret)
    ctx = _context(veil.data_dir)
    with ctx.db.session() as session:
        principal = authenticate(session, secret)
    assert principal.role == "trainer" and principal.project_id is None

    listed = veil("keys", "list")
    assert listed.exit_code == 0
    assert principal.key_id in listed.stdout and "trainer" in listed.stdout and "active" in listed.stdout
    assert secret not in listed.stdout and secret[:8] in listed.stdout  # only a recognisable prefix

    revoked = veil("keys", "revoke", principal.key_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    with ctx.db.session() as session, pytest.raises(Unauthenticated):
        authenticate(session, secret)
    assert "revoked" in veil("keys", "list").stdout


def test_project_scoped_expiring_key(veil) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(veil.data_dir)
    with ctx.db.session() as session:
        project_id = project_service.create_project(ctx, session, OPERATOR, "bees").id
    created = veil("keys", "create", "--role", "labeler", "--project", project_id, "--expires-in-days", "7")
    assert created.exit_code == 0, created.stderr
    with ctx.db.session() as session:
        principal = authenticate(session, created.stdout.strip().splitlines()[-1])
    assert (principal.role, principal.project_id) == ("labeler", project_id)
    expires = (utcnow() + timedelta(days=7)).strftime("%Y-%m-%d")
    assert expires in veil("keys", "list").stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("keys", "create", "--role", "wizard"), "unknown role 'wizard'"),
        (("keys", "create", "--role", "admin", "--expires-in-days", "0"), "positive number of days"),
        (
            ("keys", "create", "--role", "admin", "--project", "no-such-project"),
            "project no-such-project not found",
        ),
        (("keys", "revoke", "no-such-key"), "no API key with id no-such-key"),
    ],
)
def test_bad_input_fails_with_one_line(veil, args: tuple[str, ...], says: str) -> None:  # type: ignore[no-untyped-def]
    assert says in _one_error_line(veil(*args), exit_code=2)


def test_world_readable_key_file_is_refused(veil) -> None:  # type: ignore[no-untyped-def]
    assert veil("keys", "list").exit_code == 0  # first start creates the key file, 0600
    key_file = veil.data_dir / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_file.chmod(0o644)
    assert "chmod 600" in _one_error_line(veil("keys", "list"))


def test_audit_verify_then_tamper(veil) -> None:  # type: ignore[no-untyped-def]
    for role in ("admin", "trainer", "auditor"):
        assert veil("keys", "create", "--role", role).exit_code == 0
    intact = veil("audit", "verify")
    assert intact.exit_code == 0 and "intact: 3 events" in intact.stdout
    with sqlite3.connect(veil.data_dir / "veil.db") as db:
        db.execute("UPDATE audit_events SET role = 'admin' WHERE seq = 2")
    assert "broken at event #2" in _one_error_line(veil("audit", "verify"))


def test_rotate_master(veil) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(veil.data_dir)
    with ctx.db.session() as session:
        project_service.create_project(ctx, session, OPERATOR, "ants")
    old = (veil.data_dir / "master.key").read_text()
    result = veil("keys", "rotate-master")
    assert result.exit_code == 0, result.stderr
    assert "1 project key(s) re-wrapped" in result.stdout
    assert (veil.data_dir / "master.key").read_text() != old
    assert veil("audit", "verify").exit_code == 0  # the rotation itself is an audited event


def test_purge_applies_retention_now(veil, photos: list[Path]) -> None:  # type: ignore[no-untyped-def]
    ctx = _context(veil.data_dir)
    with ctx.db.session() as session:
        project_id = project_service.create_project(ctx, session, OPERATOR, "ants").id
    uploads = [image_service.Upload(p.read_bytes(), p.name) for p in photos[:2]]
    expired, kept = (r.image for r in image_service.add_images(ctx, OPERATOR, project_id, uploads).results)
    assert expired is not None and kept is not None
    with ctx.db.session() as session:
        row = session.get(Image, expired.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)

    result = veil("purge")

    assert result.exit_code == 0, result.stderr
    assert "purged 1 expired image(s)" in result.stdout
    assert ctx.blobs.blob_ids(project_id) == {kept.blob_id}
    with ctx.db.session() as session:
        assert session.get(Image, expired.id) is None and session.get(Image, kept.id) is not None


def test_master_key_from_environment(veil, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VEIL_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    created = veil("keys", "create", "--role", "admin")
    assert created.exit_code == 0, created.stderr
    assert not (veil.data_dir / "master.key").exists()  # the key lives only where the operator put it
    assert "VEIL_MASTER_KEY" in _one_error_line(veil("keys", "rotate-master"))  # Veil cannot change the env


def test_wrong_master_key_from_environment_is_refused(veil, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VEIL_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    assert veil("keys", "list").exit_code == 0
    monkeypatch.setenv("VEIL_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    assert "start Veil with the matching key" in _one_error_line(veil("keys", "list"))
    monkeypatch.setenv("VEIL_MASTER_KEY", "too short")
    assert "base64" in _one_error_line(veil("keys", "list"))
