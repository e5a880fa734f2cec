"""Ciphertext blob files under `<data_dir>/blobs/<project id>/<blob id>`.

Writes are atomic (temporary file, fsync, rename, fsync of the directory): a reader sees a whole blob or none.
This module stores bytes it is given; callers seal them first (`veil.security.crypto.seal`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

_TMP_PREFIX = ".tmp-"


class BlobNotFound(Exception):
    """No blob with that id exists (deleted, expired or never written)."""


def _check_id(value: str) -> str:
    # Ids become path components: only GUID-like names, never separators or dots.
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise ValueError(f"invalid blob path component {value!r}")
    return value


class BlobStore:
    """A directory of blob files, grouped by project so a project's blobs go in one `rmtree`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, project_id: str, blob_id: str) -> Path:
        return self.root / _check_id(project_id) / _check_id(blob_id)

    def put(self, project_id: str, blob_id: str, data: bytes) -> None:
        final = self.path(project_id, blob_id)
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(self.root)  # the new project folder itself must survive a crash, not only its files
        tmp = final.with_name(f"{_TMP_PREFIX}{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        _fsync_dir(final.parent)

    def get(self, project_id: str, blob_id: str) -> bytes:
        try:
            return self.path(project_id, blob_id).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {blob_id} of project {project_id} not found") from None

    def exists(self, project_id: str, blob_id: str) -> bool:
        return self.path(project_id, blob_id).is_file()

    def delete(self, project_id: str, blob_id: str) -> None:
        self.path(project_id, blob_id).unlink(missing_ok=True)

    def delete_project(self, project_id: str) -> None:
        shutil.rmtree(self.root / _check_id(project_id), ignore_errors=True)

    def blob_ids(self, project_id: str) -> set[str]:
        folder = self.root / _check_id(project_id)
        if not folder.is_dir():
            return set()
        return {p.name for p in folder.iterdir() if not p.name.startswith(_TMP_PREFIX)}

    def project_ids(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir()}

    def remove_partial_writes(self) -> int:
        """Delete temporary files left by a crash mid-write (run at start); returns how many."""
        removed = 0
        for tmp in self.root.glob(f"*/{_TMP_PREFIX}*"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
