"""Envelope encryption: a master key (KEK) wraps one random data key (DEK) per project; blobs: AES-256-GCM.

Blob format: 1 version byte + 96-bit random nonce + AES-256-GCM ciphertext (with its 16-byte tag).
The associated data binds a blob to its project and blob ids: a blob copied into another record fails.

Three layers make deletion real at every grain (docs/SECURITY.md):
- a blob (version 2) is sealed under its own random blob key, stored only wrapped by the project's DEK in the
  database row that owns the blob; deleting the row shreds that one image, prediction or model;
- a project's DEK is wrapped (format 2) by a per-project key-encryption key that lives only in the key store:
  a secret file beside the master key (`ProjectKeyDir`) or a non-extractable object on a PKCS#11 token.
  Deleting the project destroys that key, so a database backup taken earlier cannot open the project either;
- the master key identifies the key store (`key_id`, recorded with every DEK).
Version-1 blobs and format-1 DEKs (written before these layers existed) stay readable.

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
from typing import Protocol, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BLOB_VERSION = 1
KEYED_BLOB_VERSION = 2  # sealed under a per-blob key (`seal_blob`)
WRAP_VERSION = 1
PROJECT_WRAP_VERSION = 2  # a DEK wrapped by the project's own key-encryption key (`KeyProvider.wrap`)
NONCE_BYTES = 12
KEY_BYTES = 32
_TAG_BYTES = 16


class CryptoError(Exception):
    """Base of every error raised by Veil's cryptography."""


class IntegrityError(CryptoError):
    """Ciphertext was altered, truncated, swapped between records, or opened with the wrong key."""


class MasterKeyError(CryptoError):
    """The master key is missing, malformed, unsafe on disk, or not the one the data was wrapped with."""


class KeyShredded(CryptoError):
    """The key a ciphertext needs was destroyed on purpose (its image, prediction or project was deleted)."""


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def _blob_aad(project_id: str, blob_id: str) -> bytes:
    return b"veil/blob/%d\x00%s\x00%s" % (BLOB_VERSION, project_id.encode(), blob_id.encode())


def _dek_aad(project_id: str) -> bytes:
    return b"veil/dek/%d\x00%s" % (WRAP_VERSION, project_id.encode())


def check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise CryptoError(f"AES-256 keys are {KEY_BYTES} bytes, got {len(key)}")


def seal(dek: bytes, project_id: str, blob_id: str, plaintext: bytes) -> bytes:
    """Encrypt `plaintext` for the blob `blob_id` of `project_id`."""
    check_key(dek)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, _blob_aad(project_id, blob_id))
    return bytes([BLOB_VERSION]) + nonce + ciphertext


def content_digest(dek: bytes, data: bytes) -> str:
    """HMAC-SHA256 of `data` under a key derived from the project's DEK (HKDF): equal for equal bytes within a
    project, so re-uploads are found, yet useless without the key — nobody can test a known photo against the
    store, and shredding the DEK makes the digests meaningless too."""
    check_key(dek)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"veil content digest v1").derive(dek)
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize().hex()


def open_(dek: bytes, project_id: str, blob_id: str, sealed: bytes) -> bytes:
    """Decrypt a sealed blob; `IntegrityError` unless it is intact and belongs to this project and blob id."""
    check_key(dek)
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


def _blob_key_aad(project_id: str, blob_id: str) -> bytes:
    return b"veil/blob-key/%d\x00%s\x00%s" % (KEYED_BLOB_VERSION, project_id.encode(), blob_id.encode())


def _keyed_blob_aad(project_id: str, blob_id: str) -> bytes:
    return b"veil/blob/%d\x00%s\x00%s" % (KEYED_BLOB_VERSION, project_id.encode(), blob_id.encode())


@dataclass(frozen=True)
class SealedBlob:
    """A blob sealed under its own key: `data` goes to the blob store, `wrapped_key` (the blob key wrapped by
    the project's DEK) goes into the database row that owns the blob, and dies with it."""

    data: bytes = field(repr=False)
    wrapped_key: bytes = field(repr=False)


def seal_blob(dek: bytes, project_id: str, blob_id: str, plaintext: bytes) -> SealedBlob:
    """Encrypt `plaintext` under a fresh blob key; the blob key is returned wrapped by the project's `dek`.

    >>> dek = new_key()
    >>> sealed = seal_blob(dek, "project-1", "blob-1", b"pixels")
    >>> open_blob(dek, "project-1", "blob-1", sealed.data, sealed.wrapped_key)
    b'pixels'
    """
    check_key(dek)
    blob_key = new_key()
    nonce, key_nonce = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
    data = (
        bytes([KEYED_BLOB_VERSION])
        + nonce
        + AESGCM(blob_key).encrypt(nonce, plaintext, _keyed_blob_aad(project_id, blob_id))
    )
    wrapped = (
        bytes([KEYED_BLOB_VERSION])
        + key_nonce
        + AESGCM(dek).encrypt(key_nonce, blob_key, _blob_key_aad(project_id, blob_id))
    )
    return SealedBlob(data, wrapped)


def open_blob(dek: bytes, project_id: str, blob_id: str, sealed: bytes, wrapped_key: bytes | None) -> bytes:
    """Decrypt a blob of either version: 1 opens with the project's DEK alone, 2 also needs its wrapped blob
    key (`KeyShredded` when it is gone: the blob's record was deleted)."""
    check_key(dek)
    if sealed[:1] != bytes([KEYED_BLOB_VERSION]):
        return open_(dek, project_id, blob_id, sealed)
    if wrapped_key is None:
        raise KeyShredded(f"blob {blob_id} of project {project_id} cannot be opened: its key was destroyed")
    if len(sealed) < 1 + NONCE_BYTES + _TAG_BYTES:
        raise IntegrityError(f"blob {blob_id} is truncated ({len(sealed)} bytes)")
    if len(wrapped_key) != 1 + NONCE_BYTES + KEY_BYTES + _TAG_BYTES or wrapped_key[0] != KEYED_BLOB_VERSION:
        raise IntegrityError(f"the wrapped key of blob {blob_id} is malformed")
    try:
        blob_key = AESGCM(dek).decrypt(wrapped_key[1:13], wrapped_key[13:], _blob_key_aad(project_id, blob_id))
        return AESGCM(blob_key).decrypt(sealed[1:13], sealed[13:], _keyed_blob_aad(project_id, blob_id))
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
        check_key(self.key)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"veil/kek-id\x00" + self.key).hexdigest()[:16]

    def wrap(self, project_id: str, dek: bytes) -> bytes:
        """Wrap a project's DEK (AES-256-GCM, bound to the project id)."""
        check_key(dek)
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


def project_dek_aad(project_id: str, key_id: str) -> bytes:
    return b"veil/dek/%d\x00%s\x00%s" % (PROJECT_WRAP_VERSION, project_id.encode(), key_id.encode())


def check_project_id(value: str) -> str:
    # Project ids become file names and token labels: only GUID-like names.
    if not value or not all(c.isalnum() or c == "-" for c in value):
        raise ValueError(f"invalid project id {value!r}")
    return value


class KeyProvider(Protocol):
    """Where key-encryption keys live and DEKs are wrapped: one key per project, destroyed with the project.

    Implementations: `SoftwareKeyProvider` (master key from a file or `VEIL_MASTER_KEY`, per-project secrets in a
    directory) and `veil.security.pkcs11.Pkcs11KeyProvider` (non-extractable keys on an HSM token)."""

    @property
    def kind(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def describe(self) -> str: ...

    def wrap(self, project_id: str, dek: bytes) -> bytes:
        """Wrap `dek` (format 2) under the project's key, creating that key on first use."""
        ...

    def unwrap(self, project_id: str, wrapped: bytes) -> bytes:
        """`KeyShredded` when the project's key was destroyed; `IntegrityError` when `wrapped` is not its."""
        ...

    def has_project(self, project_id: str) -> bool: ...

    def destroy(self, project_id: str) -> bool:
        """Destroy the project's key (True if there was one): every copy of its wrapped DEK becomes noise."""
        ...

    def project_ids(self) -> set[str]: ...

    def derive_secret(self, purpose: bytes) -> bytes:
        """A stable 32-byte secret for `purpose` (e.g. signing tokens), derived from keys this provider holds."""
        ...


def split_project_wrap(project_id: str, wrapped: bytes) -> tuple[bytes, bytes]:
    """(nonce, ciphertext) of a format-2 wrapped DEK."""
    if len(wrapped) != 1 + NONCE_BYTES + KEY_BYTES + _TAG_BYTES or wrapped[0] != PROJECT_WRAP_VERSION:
        raise IntegrityError(f"wrapped data key of project {project_id} is malformed")
    return wrapped[1 : 1 + NONCE_BYTES], wrapped[1 + NONCE_BYTES :]


class ProjectKeyDir:
    """One random 256-bit secret per project, a file readable by its owner only (`<dir>/<project id>.key`).

    A project's key-encryption key is derived from the master key AND its secret, so destroying the secret
    shreds the project in every backup of the database, while the master key keeps opening the others."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _file(self, project_id: str) -> Path:
        return self.path / f"{check_project_id(project_id)}.key"

    def read(self, project_id: str) -> bytes | None:
        path = self._file(project_id)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise MasterKeyError(f"project key file {path} is accessible by group/others; run: chmod 600 {path}")
        secret = path.read_bytes()
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(f"project key file {path} is damaged ({len(secret)} bytes)")
        return secret

    def create(self, project_id: str) -> bytes:
        """The project's secret, created (fsynced) if it does not exist yet."""
        existing = self.read(project_id)
        if existing is not None:
            return existing
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = new_key()
        try:
            fd = os.open(self._file(project_id), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return self.read(project_id) or secret
        try:
            os.write(fd, secret)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.path)
        return secret

    def destroy(self, project_id: str) -> bool:
        """Overwrite the secret with zeros, then unlink it. (On copy-on-write or flash storage the overwrite is
        best effort; the file is small and never copied by Veil, and backups exclude this directory.)"""
        path = self._file(project_id)
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:
            return False
        try:
            os.write(fd, bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        _fsync_dir(self.path)
        return True

    def ids(self) -> set[str]:
        if not self.path.is_dir():
            return set()
        return {p.stem for p in self.path.glob("*.key")}


@dataclass(frozen=True)
class SoftwareKeyProvider:
    """The master key from a file or `VEIL_MASTER_KEY`; per-project secrets in a `ProjectKeyDir`.

    Project KEK = HKDF-SHA256(master key, salt = project secret, info = project id); DEK wrapped by AES-256-GCM."""

    master: MasterKey
    store: ProjectKeyDir
    kind: str = "file"

    @property
    def key_id(self) -> str:
        return self.master.key_id

    def describe(self) -> str:
        return f"{self.kind} master key {self.key_id} (project keys in {self.store.path})"

    def _kek(self, project_id: str, secret: bytes) -> AESGCM:
        info = b"veil/project-kek/%d\x00%s" % (PROJECT_WRAP_VERSION, project_id.encode())
        derived = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=secret, info=info).derive(self.master.key)
        return AESGCM(derived)

    def wrap(self, project_id: str, dek: bytes) -> bytes:
        check_key(dek)
        nonce = os.urandom(NONCE_BYTES)
        kek = self._kek(project_id, self.store.create(project_id))
        return bytes([PROJECT_WRAP_VERSION]) + nonce + kek.encrypt(nonce, dek, project_dek_aad(project_id, self.key_id))

    def unwrap(self, project_id: str, wrapped: bytes) -> bytes:
        nonce, ciphertext = split_project_wrap(project_id, wrapped)
        secret = self.store.read(project_id)
        if secret is None:
            raise KeyShredded(f"the key of project {project_id} was destroyed (the project was deleted)")
        try:
            return self._kek(project_id, secret).decrypt(nonce, ciphertext, project_dek_aad(project_id, self.key_id))
        except InvalidTag:
            raise IntegrityError(
                f"data key of project {project_id} does not open with master key {self.key_id}"
            ) from None

    def has_project(self, project_id: str) -> bool:
        return self.store.read(project_id) is not None

    def destroy(self, project_id: str) -> bool:
        return self.store.destroy(project_id)

    def project_ids(self) -> set[str]:
        return self.store.ids()

    def derive_secret(self, purpose: bytes) -> bytes:
        return hashlib.sha256(purpose + self.master.key).digest()


@dataclass(frozen=True)
class ProviderOnly:
    """The `MasterKeySource` of a key ring whose keys live in a provider (an HSM): no key material to load."""

    provider: KeyProvider

    def load(self) -> list[MasterKey]:
        return []

    @property
    def rotatable(self) -> bool:
        return False


class KeyRing:
    """The keys a process can use: its key provider(s) and, for data written before providers, master keys.

    Master keys are re-read from their source when a DEK names a key it does not hold: a running server learns
    about `veil keys rotate-master` this way (re-wrapped DEKs carry the new key id).

        >>> ring = KeyRing(FileKeySource(data_dir / "master.key"), ProjectKeyDir(data_dir / "project-keys"))
        >>> dek, wrapped = ring.new_dek(project_id, ring.primary_key_id)
        >>> ring.unwrap(project_id, wrapped, ring.primary_key_id) == dek
    """

    def __init__(
        self,
        source: MasterKeySource | KeyProvider,
        project_keys: ProjectKeyDir | None = None,
        kind: str | None = None,
    ) -> None:
        self._fixed: KeyProvider | None = None
        if hasattr(source, "wrap"):  # a provider (an HSM): it holds the keys, there is no master key to load
            self._fixed = cast(KeyProvider, source)
            self.source: MasterKeySource = ProviderOnly(self._fixed)
        else:
            self.source = cast(MasterKeySource, source)
        self.project_keys = project_keys
        self.kind = kind or ("env" if isinstance(self.source, EnvKeySource) else "file")
        self._keys: dict[str, MasterKey] = {}
        self._extra: dict[str, KeyProvider] = {}
        self.reload()

    def reload(self) -> None:
        self._keys = {key.key_id: key for key in self.source.load()}

    @property
    def primary(self) -> MasterKey:
        """The key in the primary source (the key file, or `VEIL_MASTER_KEY`)."""
        keys = self.source.load()
        if not keys:
            raise MasterKeyError(f"the master key lives in {self.primary_provider.describe()} and is not exportable")
        return keys[0]

    @property
    def primary_key_id(self) -> str:
        return self._fixed.key_id if self._fixed is not None else self.primary.key_id

    @property
    def primary_provider(self) -> KeyProvider:
        """The provider that wraps new DEKs."""
        if self._fixed is not None:
            return self._fixed
        provider = self.provider(self.primary.key_id)
        if provider is None:
            raise MasterKeyError("this key ring has no project key store (legacy wrapping only)")
        return provider

    def add_provider(self, provider: KeyProvider) -> None:
        """Also use `provider` (a migration target, e.g. an HSM during `veil keys rotate-master --to`)."""
        self._extra[provider.key_id] = provider

    def providers(self) -> list[KeyProvider]:
        found = [self._fixed] if self._fixed is not None else []
        if self.project_keys is not None:
            found += [SoftwareKeyProvider(key, self.project_keys, self.kind) for key in self._keys.values()]
        return found + list(self._extra.values())

    def provider(self, key_id: str) -> KeyProvider | None:
        for candidate in self.providers():
            if candidate.key_id == key_id:
                return candidate
        if self._fixed is None and self.project_keys is not None and key_id not in self._keys:
            self.reload()
            if key_id in self._keys:
                return SoftwareKeyProvider(self._keys[key_id], self.project_keys, self.kind)
        return None

    def key(self, key_id: str) -> MasterKey:
        if key_id not in self._keys:
            self.reload()
        try:
            return self._keys[key_id]
        except KeyError:
            held = [*self._keys, *([self._fixed.key_id] if self._fixed is not None else [])]
            raise MasterKeyError(
                f"data was wrapped with master key {key_id}, but the configured key is "
                f"{', '.join(held) or 'none'}; start Veil with the matching key"
            ) from None

    def new_dek(self, project_id: str, key_id: str) -> tuple[bytes, bytes]:
        """A new DEK for a project and the same DEK wrapped for key `key_id` (under the project's own key when
        a key store is configured, else directly by the master key)."""
        dek = new_key()
        provider = self.provider(key_id)
        if provider is not None:
            return dek, provider.wrap(project_id, dek)
        return dek, self.key(key_id).wrap(project_id, dek)

    def unwrap(self, project_id: str, wrapped: bytes, key_id: str) -> bytes:
        if wrapped[:1] != bytes([PROJECT_WRAP_VERSION]):
            return self.key(key_id).unwrap(project_id, wrapped)
        provider = self.provider(key_id)
        if provider is None:
            self.key(key_id)  # raises, naming the key that is missing
            raise MasterKeyError(f"project {project_id}'s data key needs a project key store; none is configured")
        return provider.unwrap(project_id, wrapped)

    def forget(self, project_id: str) -> bool:
        """Destroy the project's key in every provider that holds one (crypto-shredding across backups)."""
        destroyed = False
        for provider in self.providers():
            destroyed = provider.destroy(project_id) or destroyed
        return destroyed

    def derive_secret(self, purpose: bytes) -> bytes:
        """A stable secret for `purpose`, from the provider that wraps new DEKs (or the master key itself)."""
        if self._fixed is None and self.project_keys is None:
            return hashlib.sha256(purpose + self.primary.key).digest()
        return self.primary_provider.derive_secret(purpose)

    def held_projects(self) -> set[str]:
        """Projects that have a key in some provider of this ring."""
        return set().union(*(p.project_ids() for p in self.providers()))


def key_source(master_key: str | None, key_file: Path) -> EnvKeySource | FileKeySource:
    """`VEIL_MASTER_KEY` when given, else the key file in the data directory."""
    return EnvKeySource(master_key) if master_key else FileKeySource(key_file)
