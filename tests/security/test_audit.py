"""The audit chain: every state change and image read is recorded; edits, deletions and insertions made
directly in the database make `veil audit verify` fail and name the first broken event."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text
from tests.support.in_process import Api, run_cli

from veil.security import audit
from veil.store.models import AuditEvent, AuditHead


def _activity(api: Api, photos: list[Path]) -> list[str]:
    """A user's session; returns the actions audited, in order."""
    project_id = api.create_project()
    tag_id = api.create_tag(project_id, "ant")
    [image_id] = api.upload(project_id, photos[:1], tag_id)
    assert api.image_data(project_id, image_id).status_code == 200
    with api.ctx.db.session() as session:
        return [e.action for e in audit.events(session, limit=1000)]


def test_state_changes_and_image_reads_are_recorded(api: Api, photos: list[Path]) -> None:
    actions = _activity(api, photos)
    assert actions == ["key.create", "project.create", "tag.create", "images.create", "image.read"]
    verify = api.client.get("/veil/v1/audit/verify", headers=api.headers).json()
    with api.ctx.db.session() as session:
        last = audit.events(session, after_seq=4)[0]
    assert verify == {"ok": True, "events": 5, "brokenAt": None, "reason": "", "head": f"5:{last.hash}"}


def _tamper(api: Api, how: str) -> None:
    with api.ctx.db.engine.begin() as conn:
        if how == "edit":
            conn.execute(text("UPDATE audit_events SET outcome = 'denied' WHERE seq = 3"))
        elif how == "delete":
            conn.execute(text("DELETE FROM audit_events WHERE seq = 2"))
        elif how == "delete-head":
            conn.execute(text("DELETE FROM audit_head"))
        elif how == "delete-last":
            conn.execute(text("DELETE FROM audit_events WHERE seq = 5"))
        elif how == "insert":  # a well-formed, correctly chained event appended behind Veil's back
            last = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 5")).scalar_one()
            forged = AuditEvent(seq=6, at=audit.utcnow(), key_id=None, role="admin", action="key.create",
                                resource_ids=["forged"], outcome="ok", prev_hash=last)  # fmt: skip
            forged.hash = audit.event_hash(forged)
            columns = "seq, at, key_id, role, action, resource_ids, outcome, prev_hash, hash"
            values = "6, :at, NULL, 'admin', 'key.create', '[\"forged\"]', 'ok', :prev, :hash"
            conn.execute(
                text(f"INSERT INTO audit_events ({columns}) VALUES ({values})"),
                {"at": forged.at, "prev": last, "hash": forged.hash},
            )


EXPECTED = {
    "edit": ("#3", "modified"),
    "delete": ("#2", "missing"),
    "delete-last": ("#5", "deleted"),
    "delete-head": ("#6", "head row was deleted"),
    "insert": ("#6", "appended outside Veil"),
}


@pytest.mark.parametrize("how", list(EXPECTED))
def test_tampering_breaks_the_chain_where_it_happened(api: Api, photos: list[Path], how: str) -> None:
    _activity(api, photos)
    _tamper(api, how)
    with api.ctx.db.session() as session:
        report = audit.verify(session)
    where, why = EXPECTED[how]
    assert not report.ok and report.broken_at == int(where[1:]), report
    assert why in report.reason
    response = api.client.get("/veil/v1/audit/verify", headers=api.headers).json()
    assert response["ok"] is False and response["brokenAt"] == int(where[1:])


def test_veil_audit_verify_command_names_the_broken_event(
    api: Api, photos: list[Path], data_dir: Path, database_url: str
) -> None:
    _activity(api, photos)
    intact = run_cli("audit", "verify", data_dir=data_dir, database_url=database_url)
    assert intact.exit_code == 0 and "intact: 5 events" in intact.stdout, intact.stderr
    _tamper(api, "edit")
    result = run_cli("audit", "verify", data_dir=data_dir, database_url=database_url)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: audit chain broken at event #3: event #3 was modified (hash mismatch)"], result.stderr


def _rewrite_history(api: Api) -> None:
    """What a writer with full database access can do: edit event #3, then recompute every later link and the
    head, so that the chain is internally consistent again."""
    with api.ctx.db.session() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        rows[2].outcome = "denied"
        prev = rows[1].hash
        for row in rows[2:]:
            row.prev_hash = prev
            row.hash = audit.event_hash(row)
            prev = row.hash
        head = session.get(AuditHead, 1)
        assert head is not None
        head.hash = prev


def test_an_anchor_kept_outside_veil_exposes_a_rewritten_history(
    api: Api, photos: list[Path], data_dir: Path, database_url: str
) -> None:
    _activity(api, photos)
    intact = run_cli("audit", "verify", data_dir=data_dir, database_url=database_url)
    assert intact.exit_code == 0, intact.stderr
    anchor = intact.stdout.split("head: ")[1].split()[0]
    assert anchor.startswith("5:") and len(anchor) == 2 + 64

    _rewrite_history(api)
    plain = run_cli("audit", "verify", data_dir=data_dir, database_url=database_url)
    assert plain.exit_code == 0  # the links alone cannot tell: every hash was recomputed
    anchored = run_cli("audit", "verify", "--anchor", anchor, data_dir=data_dir, database_url=database_url)
    assert anchored.exit_code == 1
    assert anchored.stderr.strip().splitlines() == [
        "error: audit chain broken at event #5: event #5 differs from its anchor: the history up to it was rewritten"
    ]
    malformed = run_cli("audit", "verify", "--anchor", "5:zz", data_dir=data_dir, database_url=database_url)
    assert malformed.exit_code == 1 and "SEQ:HASH" in malformed.stderr
