"""Envelope encryption: a master key (KEK) wraps one random data key (DEK) per project; blobs: AES-256-GCM.

Blob format: 1 version byte + 96-bit random nonce + AES-256-GCM ciphertext (with its 16-byte tag).
The associated data binds a blob to its project and blob ids: a blob copied into another record fails.

`seal`/`open_` need only a DEK, never the database, so the edge recorder can use them with its own key:

    >>> dek = new_key()
    >>> sealed = seal(dek, "project-1", "blob-1", b"pixels")
    >>> open_(dek, "project-1", "blob-1", sealed)
    b'pixels'
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BLOB_VERSION = 1
WRAP_VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
_TAG_BYTES = 16


class CryptoError(Exception):
    """Base of every error raised by Veil's cryptography."""


class IntegrityError(CryptoError):
    """Ciphertext was altered, truncated, swapped between records, or opened with the wrong key."""


class MasterKeyError(CryptoError):
    """The master key is missing, malformed, unsafe on disk, or not the one the data was wrapped with."""


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def _blob_aad(project_id: str, blob_id: str) -> bytes:
    return b"veil/blob/%d\x00%s\x00%s" % (BLOB_VERSION, project_id.encode(), blob_id.encode())


def _dek_aad(project_id: str) -> bytes:
    return b"veil/dek/%d\x00%s" % (WRAP_VERSION, project_id.encode())


def _check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise CryptoError(f"AES-256 keys are {KEY_BYTES} bytes, got {len(key)}")


def seal(dek: bytes, project_id: str, blob_id: str, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` for the blob `blob_id` of `project_id`."""
    _check_key(dek)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, _blob_aad(project_id, blob_id))
    return bytes([BLOB_VERSION]) + nonce + ciphertext


def open_(dek: bytes, project_id: str, blob_id: str, sealed: bytes) -> bytes:
    """Decrypt a sealed blob; `IntegrityError` unless it is intact and belongs to this project and blob id."""
    _check_key(dek)
    if len(sealed) < 1 + NONCE_BYTES + _TAG_BYTES:
        raise IntegrityError(f"blob {blob_id} is truncated ({len(sealed)} bytes)")
    if sealed[0] != BLOB_VERSION:
        raise IntegrityError(f"blob {blob_id} has unknown format version {sealed[0]}")
    nonce, ciphertext = sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :]
    try:
        return AESGCM(dek).decrypt(nonce, ciphertext, _blob_aad(project_id, blob_id))
    except InvalidTag:
        raise IntegrityError(
            f"blob {blob_id} of project {project_id} failed authentication: it was modified, "
            "swapped from another record, or the key is wrong"
        ) from None


@dataclass(frozen=True)
class MasterKey:
    """A key-encryption key. Its `key_id` (a fingerprint) is stored beside every DEK it wraps."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_key(self.key)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"veil/kek-id\x00" + self.key).hexdigest()[:16]

    def wrap(self, project_id: str, dek: bytes) -> bytes:
        """Wrap a project's DEK (AES-256-GCM, bound to the project id)."""
        _check_key(dek)
        nonce = os.urandom(NONCE_BYTES)
        return bytes([WRAP_VERSION]) + nonce + AESGCM(self.key).encrypt(nonce, dek, _dek_aad(project_id))

    def unwrap(self, project_id: str, wrapped: bytes) -> bytes:
        if len(wrapped) < 1 + NONCE_BYTES + _TAG_BYTES or wrapped[0] != WRAP_VERSION:
            raise IntegrityError(f"wrapped data key of project {project_id} is malformed")
        nonce, ciphertext = wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]
        try:
            return AESGCM(self.key).decrypt(nonce, ciphertext, _dek_aad(project_id))
        except InvalidTag:
            raise IntegrityError(
                f"data key of project {project_id} does not open with master key {self.key_id}"
            ) from None

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(new_key())

    @classmethod
    def from_base64(cls, text: str) -> MasterKey:
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError("master key is not valid base64") from None
        if len(raw) != KEY_BYTES:
            raise MasterKeyError(f"master key must be base64 of {KEY_BYTES} bytes, got {len(raw)} bytes")
        return cls(raw)

    def to_base64(self) -> str:
        return base64.b64encode(self.key).decode()


class MasterKeySource(Protocol):
    """Where master keys come from: the primary key plus, during a rotation, the staged next one."""

    def load(self) -> list[MasterKey]: ...

    @property
    def rotatable(self) -> bool: ...


@dataclass(frozen=True)
class EnvKeySource:
    """A master key given in `VEIL_MASTER_KEY`; it cannot be rotated by Veil while running."""

    value: str = field(repr=False)

    def load(self) -> list[MasterKey]:
        return [MasterKey.from_base64(self.value)]

    @property
    def rotatable(self) -> bool:
        return False


@dataclass(frozen=True)
class FileKeySource:
    """`master.key` (base64, mode 0600) plus `master.key.next` while a rotation is in flight."""

    path: Path

    @property
    def next_path(self) -> Path:
        return self.path.with_name(self.path.name + ".next")

    @property
    def rotatable(self) -> bool:
        return True

    def load(self) -> list[MasterKey]:
        keys = [read_key_file(self.path)]
        if self.next_path.exists():
            keys.append(read_key_file(self.next_path))
        return keys

    def ensure(self) -> MasterKey:
        """Read the key file, creating it (0600) with a new key on first start."""
        if not self.path.exists():
            write_key_file(self.path, MasterKey.generate())
        return read_key_file(self.path)

    def stage(self, key: MasterKey) -> None:
        write_key_file(self.next_path, key, replace=True)

    def promote(self, key_id: str) -> None:
        """Make the staged key `key_id` the primary one (atomic rename: the old key file is gone).

        Idempotent across processes: if another Veil process promoted it first, there is nothing left to do."""
        with contextlib.suppress(FileNotFoundError):
            os.replace(self.next_path, self.path)
        _fsync_dir(self.path.parent)
        if read_key_file(self.path).key_id != key_id:
            raise MasterKeyError(f"expected master key {key_id} in {self.path} after rotation; it is not there")

    def discard_staged(self) -> None:
        self.next_path.unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_file(path: Path, key: MasterKey, replace: bool = False) -> None:
    """Write a key file readable by its owner only; never over an existing one unless `replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key.to_base64() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def read_key_file(path: Path) -> MasterKey:
    """Read a key file, refusing one that group or others could read."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise MasterKeyError(f"master key file {path} does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"master key file {path} is accessible by group/others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
        )
    return MasterKey.from_base64(path.read_text())


class KeyRing:
    """The master keys a process can use, re-read from their source when a DEK names a key it does not hold.

    A running server learns about `veil keys rotate-master` this way: re-wrapped DEKs carry the new key id.
    """

    def __init__(self, source: MasterKeySource) -> None:
        self.source = source
        self._keys: dict[str, MasterKey] = {}
        self.reload()

    def reload(self) -> None:
        self._keys = {key.key_id: key for key in self.source.load()}

    @property
    def primary(self) -> MasterKey:
        """The key in the primary source (the key file, or `VEIL_MASTER_KEY`)."""
        return self.source.load()[0]

    def key(self, key_id: str) -> MasterKey:
        if key_id not in self._keys:
            self.reload()
        try:
            return self._keys[key_id]
        except KeyError:
            raise MasterKeyError(
                f"data was wrapped with master key {key_id}, but the configured key is "
                f"{', '.join(self._keys) or 'none'}; start Veil with the matching key"
            ) from None

    def new_dek(self, project_id: str, key_id: str) -> tuple[bytes, bytes]:
        """A new DEK for a project and the same DEK wrapped by master key `key_id`."""
        dek = new_key()
        return dek, self.key(key_id).wrap(project_id, dek)

    def unwrap(self, project_id: str, wrapped: bytes, key_id: str) -> bytes:
        return self.key(key_id).unwrap(project_id, wrapped)


def key_source(master_key: str | None, key_file: Path) -> EnvKeySource | FileKeySource:
    """`VEIL_MASTER_KEY` when given, else the key file in the data directory."""
    return EnvKeySource(master_key) if master_key else FileKeySource(key_file)
