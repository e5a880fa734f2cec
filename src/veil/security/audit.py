"""The audit log: an append-only SHA-256 hash chain of events, verified by `veil audit verify`.

Each event's hash covers the previous event's hash and its own canonical JSON, and `audit_head` holds the last
link; so editing, deleting or inserting any row breaks the chain at a point `verify` reports. Someone able to
write the whole database could still recompute every hash after an edit: anchors close that. An anchor is a
`seq:hash` pair the operator kept outside Veil (printed by `veil audit verify`); verifying with it later proves
that history up to that event was not rewritten.

    >>> record(session, principal, "images.read", [project_id, image_id], "ok")
    >>> verify(session).ok
    True
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from veil.store.models import AuditEvent, AuditHead, utcnow

GENESIS = "0" * 64
_HEAD_ID = 1


class Actor(Protocol):
    """Anything with a key id and a role (an authenticated `Principal`, or the CLI operator)."""

    @property
    def key_id(self) -> str | None: ...

    @property
    def role(self) -> str: ...


def _canonical(seq: int, at: datetime, key_id: str | None, role: str | None, action: str,
               resource_ids: Sequence[str], outcome: str) -> bytes:  # fmt: skip
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "key_id": key_id,
        "role": role,
        "action": action,
        "resource_ids": list(resource_ids),
        "outcome": outcome,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _link(prev_hash: str, canonical: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical).hexdigest()


def event_hash(event: AuditEvent) -> str:
    canonical = _canonical(
        event.seq, event.at, event.key_id, event.role, event.action, event.resource_ids, event.outcome
    )
    return _link(event.prev_hash, canonical)


class AuditTampered(Exception):
    """The chain's head row is gone: the log was altered outside Veil; nothing more can be appended safely."""


def _lock_head(session: Session) -> AuditHead:
    """Take the chain's lock (an UPDATE on the head row, seeded by the migrations) and return the head."""
    session.execute(update(AuditHead).where(AuditHead.id == _HEAD_ID).values(seq=AuditHead.seq))
    head = session.get(AuditHead, _HEAD_ID, populate_existing=True)
    if head is None:
        raise AuditTampered("the audit chain's head row is missing; run `veil audit verify`")
    return head


def record(
    session: Session, actor: Actor | None, action: str, resource_ids: Sequence[str], outcome: str = "ok"
) -> AuditEvent:
    """Append one event in the caller's transaction (it commits or rolls back with the change it records)."""
    head = _lock_head(session)
    event = AuditEvent(
        seq=head.seq + 1,
        at=utcnow(),
        key_id=actor.key_id if actor else None,
        role=actor.role if actor else None,
        action=action,
        resource_ids=[str(r) for r in resource_ids],
        outcome=outcome,
        prev_hash=head.hash,
    )
    event.hash = event_hash(event)
    session.add(event)
    head.seq, head.hash = event.seq, event.hash
    session.flush()
    return event


@dataclass(frozen=True)
class Anchor:
    """A link recorded outside Veil: event `seq` had `hash`."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, _, digest = text.strip().partition(":")
        if not seq.isdigit() or int(seq) < 1 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"an anchor is SEQ:HASH as `veil audit verify` prints it (64 hex digits), not {text!r}")
        return cls(int(seq), digest)

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    broken_at: int | None = None  # seq of the first event that fails (or where one is missing)
    reason: str = ""
    head: Anchor | None = None  # the last link, to keep outside Veil as a future anchor


def verify(session: Session, anchors: Sequence[Anchor] = ()) -> VerifyReport:
    """Walk the chain from the start; report the first broken link, or the first anchor it no longer matches."""
    report = _verify_links(session)
    if not report.ok:
        return report
    for anchor in sorted(anchors, key=lambda a: a.seq):
        if anchor.seq > report.events:
            return replace(report, ok=False, broken_at=anchor.seq, reason=f"anchored event #{anchor.seq} is gone")
        event = session.scalars(select(AuditEvent).where(AuditEvent.seq == anchor.seq)).one()
        if event.hash != anchor.hash:
            reason = f"event #{anchor.seq} differs from its anchor: the history up to it was rewritten"
            return replace(report, ok=False, broken_at=anchor.seq, reason=reason)
    return report


def _verify_links(session: Session) -> VerifyReport:
    expected_seq, prev_hash, count = 1, GENESIS, 0
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        if event.seq != expected_seq:
            return VerifyReport(False, count, expected_seq, _gap_reason(expected_seq, event.seq))
        if event.prev_hash != prev_hash:
            return VerifyReport(
                False,
                count,
                event.seq,
                f"event #{event.seq} does not follow event #{event.seq - 1} (row inserted?)",
            )
        if event_hash(event) != event.hash:
            return VerifyReport(False, count, event.seq, f"event #{event.seq} was modified (hash mismatch)")
        expected_seq, prev_hash, count = event.seq + 1, event.hash, count + 1
    head = session.get(AuditHead, _HEAD_ID)
    if head is None:
        return VerifyReport(False, count, count + 1, "the chain's head row was deleted")
    head_seq, head_hash = head.seq, head.hash
    if head_seq < count:
        return VerifyReport(
            False,
            count,
            head_seq + 1,
            f"event #{head_seq + 1} was appended outside Veil (the head ends at #{head_seq})",
        )
    if head_seq > count:
        return VerifyReport(False, count, count + 1, f"events #{count + 1}..#{head_seq} were deleted")
    if head_hash != prev_hash:
        return VerifyReport(False, count, count, f"event #{count} does not match the chain's recorded head")
    return VerifyReport(True, count, head=Anchor(count, prev_hash) if count else None)


def _gap_reason(expected: int, found: int) -> str:
    if found > expected:
        return f"event #{expected} is missing (deleted); the chain jumps to #{found}"
    return f"event #{found} appears out of order where #{expected} was expected (row inserted?)"


def events(session: Session, after_seq: int = 0, limit: int = 100) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.seq > after_seq).order_by(AuditEvent.seq).limit(limit)
    return list(session.scalars(query))
