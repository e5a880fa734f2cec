"""Where ciphertext blobs live: a local directory (the default) or an S3-compatible object store.

    >>> blobs = open_blob_store(settings)          # (store.blob_url) VEIL_BLOB_URL: unset → <data_dir>/blobs, or s3://
    >>> blobs.put(project_id, blob_id, sealed)     # callers seal first (`veil.security.crypto.seal`)
    >>> blobs.get(project_id, blob_id)             # BlobNotFound when absent

Both keep one layout, `<project id>/<blob id>`, so a project's blobs go in one `delete_project`. A reader sees a
whole blob or none: the directory writes a temporary file, fsyncs it and renames it; S3 objects appear whole.
Neither encrypts: only what `seal` produced is ever handed in.

Temporary files belong to the process writing them: the writer holds an exclusive `flock` on its temporary file
until the rename, and `remove_partial_writes` only deletes the ones whose lock it can take (a writer that died,
even by kill -9, releases it). So a CLI command opening the data directory beside a running server never removes
an upload in flight.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import Counter

if TYPE_CHECKING:
    pass

_TMP_PREFIX = ".tmp-"
PROBE_PREFIX = ".probe-"  # readiness probes write these at the top (never a project id)

BLOB_STORE_ERRORS = Counter(
    "veil_blob_store_errors_total",
    "Blob store operations that failed for a reason other than a missing blob.",
    ["backend", "operation"],
)


class BlobNotFound(Exception):
    """No blob with that id exists (deleted, expired or never written)."""


class BlobStoreError(OSError):
    """The blob store could not do what was asked (unreachable, refused, out of space); the message says why."""


class BlobStoreFull(BlobStoreError):
    """No space left where blobs are written (ENOSPC, EDQUOT, or the object store's quota)."""


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing sees it (used by the orphan sweep)."""

    project_id: str
    blob_id: str
    size: int
    modified: datetime  # UTC


def check_id(value: str) -> str:
    # Ids become path components and object keys: only GUID-like names, never separators or dots.
    if not value or not all((c.isascii() and c.isalnum()) or c == "-" for c in value):
        raise ValueError(f"invalid blob path component {value!r}")
    return value


class BlobStore(ABC):
    """The few operations Veil needs from wherever ciphertext lives; each backend implements all of them."""

    backend: str

    @abstractmethod
    def put(self, project_id: str, blob_id: str, data: bytes) -> None:
        """Store `data` under the ids, whole or not at all (an existing blob of that id is replaced)."""

    @abstractmethod
    def get(self, project_id: str, blob_id: str) -> bytes:
        """The stored bytes; BlobNotFound when there are none."""

    @abstractmethod
    def exists(self, project_id: str, blob_id: str) -> bool: ...

    @abstractmethod
    def delete(self, project_id: str, blob_id: str) -> None:
        """Remove the blob; a missing one is not an error."""

    @abstractmethod
    def delete_project(self, project_id: str) -> None:
        """Remove every blob of the project."""

    @abstractmethod
    def list_blobs(self, project_id: str) -> Iterator[BlobInfo]:
        """Every whole blob of the project (temporary files and partial writes excluded)."""

    @abstractmethod
    def project_ids(self) -> set[str]:
        """Projects that have (or had, for a local folder left empty) blobs here."""

    def prune_project(self, project_id: str) -> bool:
        """Remove the project's container if nothing is left in it; True if removed (no-op where none exist)."""
        return False

    @abstractmethod
    def remove_partial_writes(self) -> int:
        """Delete what writers that are gone left half-written; returns how many."""

    @abstractmethod
    def check_writable(self) -> None:
        """Write, read back and delete a small probe; BlobStoreError when that fails (readiness checks)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the blobs are, for logs and the start banner (never a secret)."""

    def blob_ids(self, project_id: str) -> set[str]:
        return {info.blob_id for info in self.list_blobs(project_id)}


# ---------------------------------------------------------------------------------------------------------------
# A local directory


class LocalBlobStore(BlobStore):
    """A directory of blob files, grouped by project so a project's blobs go in one `rmtree`."""

    backend = "file"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._writer: _WriterLock | None = None
        self._writer_guard = threading.Lock()

    def path(self, project_id: str, blob_id: str) -> Path:
        return self.root / check_id(project_id) / check_id(blob_id)

    def put(self, project_id: str, blob_id: str, data: bytes) -> None:
        final = self.path(project_id, blob_id)
        with _storage_errors(self.backend, "put"), self._temp_file(final.parent, _TMP_PREFIX) as (tmp, fd):
            _write_all(fd, data)
            os.fsync(fd)
            os.replace(tmp, final)
            _fsync_dir(final.parent)

    def get(self, project_id: str, blob_id: str) -> bytes:
        path = self.path(project_id, blob_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} of project {project_id} not found") from None
        except OSError as exc:
            BLOB_STORE_ERRORS.labels(self.backend, "get").inc()
            raise BlobStoreError(f"cannot read blob {blob_id}: {exc.strerror or exc}") from exc

    def exists(self, project_id: str, blob_id: str) -> bool:
        return self.path(project_id, blob_id).is_file()

    def delete(self, project_id: str, blob_id: str) -> None:
        with _storage_errors(self.backend, "delete"):
            self.path(project_id, blob_id).unlink(missing_ok=True)

    def delete_project(self, project_id: str) -> None:
        shutil.rmtree(self.root / check_id(project_id), ignore_errors=True)

    def prune_project(self, project_id: str) -> bool:
        try:
            (self.root / check_id(project_id)).rmdir()  # refuses while anything, even a temp file, is inside
        except OSError:
            return False
        return True

    def list_blobs(self, project_id: str) -> Iterator[BlobInfo]:
        folder = self.root / check_id(project_id)
        if not folder.is_dir():
            return
        for entry in os.scandir(folder):
            if entry.name.startswith((_TMP_PREFIX, PROBE_PREFIX)) or not entry.is_file():
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:  # deleted while listing
                continue
            modified = datetime.fromtimestamp(stat.st_mtime, UTC)
            yield BlobInfo(project_id, entry.name, stat.st_size, modified)

    def project_ids(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")}

    def remove_partial_writes(self) -> int:
        """Delete temporary files whose writing process is gone; a live process's files stay, whoever asks."""
        writers = self.root / _WRITERS_DIR
        removed = 0
        verdicts: dict[str, bool] = {}
        for tmp in [*self.root.glob(f"*/{_TMP_PREFIX}*"), *self.root.glob(f"{PROBE_PREFIX}*")]:
            token = tmp.name.split("-")[1] if tmp.name.count("-") >= 2 else ""
            if token not in verdicts:
                verdicts[token] = _take_if_dead(writers / f"{token}.lock")
            if verdicts[token]:
                tmp.unlink(missing_ok=True)
                removed += 1
        if writers.is_dir():  # lock files of processes that died without leaving a temporary file
            for lock in writers.glob("*.lock"):
                if lock.stem not in verdicts:
                    _take_if_dead(lock)
        return removed

    def check_writable(self) -> None:
        with _storage_errors(self.backend, "probe"), self._temp_file(self.root, PROBE_PREFIX) as (tmp, fd):
            _write_all(fd, b"veil")
            os.unlink(tmp)

    def describe(self) -> str:
        return str(self.root.resolve())

    # -- temporary files, owned by this process

    def _writer_token(self) -> str:
        with self._writer_guard:
            if self._writer is None or self._writer.pid != os.getpid():  # a forked child needs its own
                self._writer = _WriterLock.acquire(self.root / _WRITERS_DIR)
            return self._writer.token

    @contextlib.contextmanager
    def _temp_file(self, folder: Path, prefix: str) -> Iterator[tuple[Path, int]]:
        """A new temporary file named after this process's writer lock; removed here if the block fails
        (ENOSPC half-way, ...), so none is left behind by a live process."""
        tmp = folder / f"{prefix}{self._writer_token()}-{uuid.uuid4().hex}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:  # a new project (or an empty folder the sweep just pruned)
            folder.mkdir(exist_ok=True)
            _fsync_dir(folder.parent)  # the new folder itself must survive a crash, not only its files
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            yield tmp, fd
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)


_WRITERS_DIR = ".writers"


@dataclass
class _WriterLock:
    """`<root>/.writers/<token>.lock`, exclusively flock'ed by one process for its lifetime.

    A temporary file carries its writer's token in its name. Whoever can take that lock knows the writer is gone
    (the kernel drops a dead process's locks, even after kill -9), so only then are its files removed.
    """

    token: str
    pid: int
    fd: int

    @classmethod
    def acquire(cls, folder: Path) -> _WriterLock:
        folder.mkdir(exist_ok=True)
        while True:
            token = uuid.uuid4().hex[:16]
            fd = os.open(folder / f"{token}.lock", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:  # not removed by a sweeper between its creation and our lock
                return cls(token=token, pid=os.getpid(), fd=fd)
            os.close(fd)


def _take_if_dead(lock: Path) -> bool:
    """True when no live process holds `lock` (or it is gone); the lock file is then removed."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return True  # files named after a lock that no longer exists have no live writer
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        lock.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def _storage_errors(backend: str, operation: str) -> Iterator[None]:
    """OS errors become BlobStoreError (BlobStoreFull for a full disk) and count in the metrics."""
    try:
        yield
    except BlobStoreError:
        BLOB_STORE_ERRORS.labels(backend, operation).inc()
        raise
    except OSError as exc:
        BLOB_STORE_ERRORS.labels(backend, operation).inc()
        if exc.errno in _FULL_ERRNOS:
            raise BlobStoreFull(f"the blob store is full: {exc.strerror or exc}") from exc
        raise BlobStoreError(f"blob store {operation} failed: {exc.strerror or exc}") from exc


def utc_age_seconds(modified: datetime, now: float | None = None) -> float:
    return (now if now is not None else time.time()) - modified.timestamp()
