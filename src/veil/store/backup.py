"""Backups of the store: one consistent snapshot of the database plus the ciphertext blobs it references, in a
tar file. Nothing is decrypted: rows carry wrapped keys only, blobs stay sealed, and no key material is included
(the key store is backed up, and shredded, on its own: see docs/SECURITY.md).

Consistency while Veil serves: blob files are immutable (written by rename, never changed), so they are first
hard-linked into a staging folder, then every table is read in ONE snapshot transaction (REPEATABLE READ on
PostgreSQL, a WAL read transaction on SQLite), then files created meanwhile are staged too. A blob the snapshot
references but that vanished in between (created and deleted within the window) makes the snapshot retried.

    >>> manifest = write_backup(db, blobs, Path("veil.backup"))
    >>> restore_backup(Path("veil.backup"), empty_db, empty_blobs)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, LargeBinary, MetaData, Table, delete, func, insert, select, text
from sqlalchemy.engine import Connection

from veil.store.blobs import BlobNotFound, BlobStore, LocalBlobStore
from veil.store.db import Database
from veil.store.models import Base, UTCDateTime

FORMAT = "veil-backup/1"
MANIFEST = "veil-backup.json"
ROWS = "database.jsonl"
BLOBS = "blobs"
SNAPSHOT_TRIES = 4

Progress = Callable[[int, int], None]


class BackupError(Exception):
    """The backup cannot be written or restored (the message says why and what to do)."""


@dataclass
class BackupManifest:
    format: str
    created: str
    schema_revision: str
    source_dialect: str
    kek_id: str | None
    tables: dict[str, int]
    columns: dict[str, dict[str, str]]  # table -> column -> kind (bytes | datetime | json | plain)
    rows_sha256: str
    blobs: dict[str, str] = field(default_factory=dict)  # "<project>/<blob>" -> sha256 of the ciphertext
    missing: list[str] = field(default_factory=list)  # blobs rows name that the store no longer had
    project_keys: list[str] = field(default_factory=list)  # projects whose DEK needs a key from the key store

    @classmethod
    def from_json(cls, data: bytes) -> BackupManifest:
        try:
            raw = json.loads(data)
            manifest = cls(**raw)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"not a Veil backup (bad manifest: {exc})") from None
        if manifest.format != FORMAT:
            raise BackupError(f"unsupported backup format {manifest.format!r}; this Veil reads {FORMAT!r}")
        return manifest


def _kind(column: Any) -> str:
    if isinstance(column.type, LargeBinary):
        return "bytes"
    if isinstance(column.type, UTCDateTime):
        return "datetime"
    if isinstance(column.type, JSON):
        return "json"
    return "plain"


def _encode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "datetime":
        return value.isoformat()
    return value


def _decode(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "bytes":
        return base64.b64decode(value)
    if kind == "datetime":
        return datetime.fromisoformat(value)
    return value


def _schema_revision(connection: Connection) -> str:
    return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


@dataclass
class _Snapshot:
    rows: bytes
    tables: dict[str, int]
    revision: str
    kek_id: str | None
    projects: set[str]  # live (not being deleted)
    keyed_projects: set[str]  # live projects whose DEK is wrapped under a project key (format 2)
    required: dict[str, set[str]]  # project -> blob ids of the blob columns
    named: dict[str, set[str]]  # project -> other strings that may be blob ids (inside iteration metrics)


def _snapshot(db: Database) -> _Snapshot:
    """Every table in one read-only snapshot transaction."""
    lines: list[bytes] = []
    tables: dict[str, int] = {}
    projects: set[str] = set()
    keyed: set[str] = set()
    required: dict[str, set[str]] = {}
    named: dict[str, set[str]] = {}
    kek_id: str | None = None
    with db.engine.connect() as connection:
        if db.is_postgres:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        else:
            connection = connection.execution_options(veil_read_only=True)  # a WAL read: never blocks writers
        with connection.begin():
            if db.is_postgres:
                connection.exec_driver_sql("SET TRANSACTION READ ONLY")
            revision = _schema_revision(connection)
            for table in Base.metadata.sorted_tables:
                kinds = {c.name: _kind(c) for c in table.columns}
                count = 0
                for row in connection.execute(select(table)).mappings():
                    record = {name: _encode(kinds[name], row[name]) for name in kinds}
                    lines.append(json.dumps({"t": table.name, "r": record}, separators=(",", ":")).encode())
                    count += 1
                    _note_references(table.name, record, projects, required, named)
                    if table.name == "key_state":
                        kek_id = record["kek_id"]
                    # Format 2 (`security.crypto.PROJECT_WRAP_VERSION`): the DEK needs a key of the key store.
                    if table.name == "projects" and not row["deleting"] and (row["wrapped_dek"] or b"")[:1] == b"\x02":
                        keyed.add(record["id"])
                tables[table.name] = count
    return _Snapshot(b"\n".join(lines) + b"\n", tables, revision, kek_id, projects, keyed, required, named)


_BLOB_COLUMNS = {"images": "blob_id", "predictions": "image_blob_id", "iterations": "model_blob_id",
                 "exports": "blob_id", "blob_keys": "blob_id"}  # fmt: skip


def _note_references(
    table: str,
    record: dict[str, Any],
    projects: set[str],
    required: dict[str, set[str]],
    named: dict[str, set[str]],
) -> None:
    if table == "projects":
        if not record["deleting"]:  # a project being deleted has no key left: nothing of it is worth keeping
            projects.add(record["id"])
        return
    column = _BLOB_COLUMNS.get(table)
    if column and record.get(column):
        required.setdefault(record["project_id"], set()).add(record[column])
    if table == "iterations":  # evaluations and curves are named inside the metrics
        named.setdefault(record["project_id"], set()).update(_strings(record.get("metrics")))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _stage_all(blobs: BlobStore, staging: Path, staged: set[tuple[str, str]]) -> None:
    """Hard-link (or copy) every blob file not staged yet; blob files are immutable, so a link is a snapshot."""
    for project_id in blobs.project_ids():
        for blob_id in blobs.blob_ids(project_id):
            if (project_id, blob_id) not in staged:
                _stage(blobs, staging, project_id, blob_id, staged)


def _stage(blobs: BlobStore, staging: Path, project_id: str, blob_id: str, staged: set[tuple[str, str]]) -> None:
    target = staging / project_id / blob_id
    target.parent.mkdir(exist_ok=True)
    if isinstance(blobs, LocalBlobStore):
        try:
            os.link(blobs.path(project_id, blob_id), target)
            staged.add((project_id, blob_id))
            return
        except FileNotFoundError:
            return  # deleted meanwhile
        except OSError:
            pass  # another file system: copy the bytes instead
    try:
        target.write_bytes(blobs.get(project_id, blob_id))
    except BlobNotFound:
        return
    staged.add((project_id, blob_id))


def write_backup(db: Database, blobs: BlobStore, out: Path, progress: Progress | None = None) -> BackupManifest:
    """Write a backup to `out` (atomically: a failed backup leaves no file). Safe while Veil serves."""
    # Staged beside the blob files (hard links need the same file system), else beside the output.
    near = blobs.root.parent if isinstance(blobs, LocalBlobStore) else out.parent
    staging = near / f".backup-{uuid.uuid4().hex}"
    staging.mkdir(mode=0o700)
    try:
        staged: set[tuple[str, str]] = set()
        _stage_all(blobs, staging, staged)
        for _attempt in range(SNAPSHOT_TRIES):
            snapshot = _snapshot(db)
            _stage_all(blobs, staging, staged)  # blobs written between the first pass and the snapshot
            missing = sorted(
                (p, b) for p in snapshot.projects for b in snapshot.required.get(p, ()) if (p, b) not in staged
            )
            if not missing:
                break
        wanted = sorted(
            (p, b)
            for p, b in staged
            if p in snapshot.projects and (b in snapshot.required.get(p, ()) or b in snapshot.named.get(p, ()))
        )
        return _write_tar(out, snapshot, staging, wanted, missing, db.engine.dialect.name, progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_tar(
    out: Path,
    snapshot: _Snapshot,
    staging: Path,
    wanted: list[tuple[str, str]],
    missing: list[tuple[str, str]],
    dialect: str,
    progress: Progress | None,
) -> BackupManifest:
    manifest = BackupManifest(
        format=FORMAT,
        created=datetime.now().astimezone().isoformat(timespec="seconds"),
        schema_revision=snapshot.revision,
        source_dialect=dialect,
        kek_id=snapshot.kek_id,
        tables=snapshot.tables,
        columns={t.name: {c.name: _kind(c) for c in t.columns} for t in Base.metadata.sorted_tables},
        rows_sha256=hashlib.sha256(snapshot.rows).hexdigest(),
        missing=[f"{p}/{b}" for p, b in missing],
        project_keys=sorted(snapshot.keyed_projects),
    )
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, ROWS, snapshot.rows)
            for done, (project_id, blob_id) in enumerate(wanted, 1):
                data = (staging / project_id / blob_id).read_bytes()
                manifest.blobs[f"{project_id}/{blob_id}"] = hashlib.sha256(data).hexdigest()
                _add_bytes(tar, f"{BLOBS}/{project_id}/{blob_id}", data)
                if progress:
                    progress(done, len(wanted))
            _add_bytes(tar, MANIFEST, json.dumps(asdict(manifest), indent=1).encode())
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    tar.addfile(info, io.BytesIO(data))


def read_manifest(path: Path) -> BackupManifest:
    try:
        with tarfile.open(path, mode="r:") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            return BackupManifest.from_json(member.read())
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise BackupError(f"{path} is not a readable Veil backup ({exc.__class__.__name__}: {exc})") from None


def check_empty(db: Database, blobs: BlobStore) -> None:
    """Restore writes only into an empty Veil (a fresh database and no blobs)."""
    if any(blobs.blob_ids(project_id) for project_id in blobs.project_ids()):
        raise BackupError(f"{blobs.describe()} already holds blobs: restore into an empty data directory")
    with db.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in ("audit_head",):  # seeded by a migration
                continue
            if connection.execute(select(func.count()).select_from(table)).scalar_one():
                raise BackupError(f"the database already holds {table.name}: restore into an empty database")


def restore_backup(path: Path, db: Database, blobs: BlobStore, progress: Progress | None = None) -> BackupManifest:
    """Load a backup into an empty database and blob store (each part's digest checked before it is written).
    The schema revisions must match (backups name theirs)."""
    manifest = read_manifest(path)
    check_empty(db, blobs)
    with tarfile.open(path, mode="r:") as tar:
        rows = _member(tar, ROWS)
        if hashlib.sha256(rows).hexdigest() != manifest.rows_sha256:
            raise BackupError(f"{path} is damaged: its database rows do not match their digest")
        with db.engine.begin() as connection:
            current = _schema_revision(connection)
            if current != manifest.schema_revision:
                raise BackupError(
                    f"the backup's schema is revision {manifest.schema_revision}, this Veil's is {current}: "
                    "restore it with the Veil version that wrote it, then start the newer one (it migrates)"
                )
            metadata = MetaData()
            tables = {name: Table(name, metadata, autoload_with=connection) for name in manifest.columns}
            connection.execute(delete(tables["audit_head"]))  # the migration's seed; the backup has the real head
            batch: dict[str, list[dict[str, Any]]] = {}
            for line in rows.splitlines():
                if not line:
                    continue
                item = json.loads(line)
                kinds = manifest.columns[item["t"]]
                batch.setdefault(item["t"], []).append({k: _decode(kinds[k], v) for k, v in item["r"].items()})
            for name in manifest.columns:  # the manifest lists tables parents first
                if batch.get(name):
                    connection.execute(insert(tables[name]), batch[name])
        for done, (key, digest) in enumerate(sorted(manifest.blobs.items()), 1):
            data = _member(tar, f"{BLOBS}/{key}")
            if hashlib.sha256(data).hexdigest() != digest:
                raise BackupError(f"{path} is damaged: blob {key} does not match its digest")
            project_id, blob_id = key.split("/")
            blobs.put(project_id, blob_id, data)
            if progress:
                progress(done, len(manifest.blobs))
    return manifest


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise BackupError(f"the backup has no {name}: it is incomplete")
    return member.read()
