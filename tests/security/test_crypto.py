"""Envelope encryption on its own: blobs bound to project+id, tampering detected, key files guarded."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from veil.security.crypto import (
    BLOB_VERSION,
    FileKeySource,
    IntegrityError,
    KeyRing,
    MasterKey,
    MasterKeyError,
    new_key,
    open_,
    seal,
)


def test_sealed_blob_has_version_nonce_and_opens_only_for_its_record() -> None:
    dek, plaintext = new_key(), os.urandom(4096)
    sealed = seal(dek, "project-a", "blob-1", plaintext)
    assert sealed[0] == BLOB_VERSION
    assert len(sealed) == 1 + 12 + len(plaintext) + 16
    assert plaintext[:64] not in sealed
    assert open_(dek, "project-a", "blob-1", sealed) == plaintext
    for project_id, blob_id in [("project-b", "blob-1"), ("project-a", "blob-2")]:
        with pytest.raises(IntegrityError, match="failed authentication"):
            open_(dek, project_id, blob_id, sealed)


def test_every_flipped_byte_is_detected() -> None:
    dek = new_key()
    sealed = seal(dek, "p", "b", b"x" * 100)
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(IntegrityError):
            open_(dek, "p", "b", bytes(tampered))
    with pytest.raises(IntegrityError, match="truncated"):
        open_(dek, "p", "b", sealed[:20])


def test_same_plaintext_seals_differently() -> None:
    dek = new_key()
    assert seal(dek, "p", "b", b"same") != seal(dek, "p", "b", b"same")


def test_wrapped_dek_is_bound_to_project_and_master_key() -> None:
    kek, other = MasterKey.generate(), MasterKey.generate()
    dek = new_key()
    wrapped = kek.wrap("project-a", dek)
    assert kek.unwrap("project-a", wrapped) == dek
    with pytest.raises(IntegrityError):
        kek.unwrap("project-b", wrapped)
    with pytest.raises(IntegrityError):
        other.unwrap("project-a", wrapped)


def test_key_file_created_0600_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    source = FileKeySource(tmp_path / "master.key")
    key = source.ensure()
    assert (tmp_path / "master.key").stat().st_mode & 0o777 == 0o600
    assert source.ensure() == key  # never regenerated
    os.chmod(tmp_path / "master.key", 0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        KeyRing(source)


def test_master_key_from_environment_must_be_32_bytes_of_base64() -> None:
    assert MasterKey.from_base64(base64.b64encode(b"k" * 32).decode()).key == b"k" * 32
    with pytest.raises(MasterKeyError, match="32 bytes"):
        MasterKey.from_base64(base64.b64encode(b"short").decode())
    with pytest.raises(MasterKeyError, match="base64"):
        MasterKey.from_base64("not base64 at all!")


def test_keyring_names_the_missing_master_key(tmp_path: Path) -> None:
    ring = KeyRing(FileKeySource(tmp_path / "master.key")) if FileKeySource(tmp_path / "master.key").ensure() else None
    assert ring is not None
    with pytest.raises(MasterKeyError, match="deadbeef"):
        ring.key("deadbeef")
