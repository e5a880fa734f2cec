"""Key providers: a DEK wrapped under a per-project key that lives only in the key store (a directory beside the
master key, or an HSM token), so destroying it shreds the project even for someone holding the master key and an
old copy of the database."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from tests.security.conftest import SoftHsm

from veil.config import get_settings
from veil.security.crypto import (
    PROJECT_WRAP_VERSION,
    FileKeySource,
    IntegrityError,
    KeyRing,
    KeyShredded,
    MasterKey,
    MasterKeyError,
    ProjectKeyDir,
    SoftwareKeyProvider,
    new_key,
)
from veil.security.providers import ProviderSpec, open_keyring


def test_file_ring_wraps_under_a_project_key_and_shreds_it(tmp_path: Path) -> None:
    ring = open_keyring(get_settings(data_dir=tmp_path / "data"))
    dek, wrapped = ring.new_dek("project-a", ring.primary_key_id)
    assert wrapped[0] == PROJECT_WRAP_VERSION
    assert ring.unwrap("project-a", wrapped, ring.primary_key_id) == dek
    secret_file = tmp_path / "data" / "project-keys" / "project-a.key"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "project-keys").stat().st_mode & 0o077 == 0

    master = (tmp_path / "data" / "master.key").read_bytes()  # what a thief of the key file and the db holds
    assert ring.forget("project-a") is True
    assert not secret_file.exists()
    with pytest.raises(KeyShredded, match="destroyed"):
        ring.unwrap("project-a", wrapped, ring.primary_key_id)
    # Even a fresh process with the same master key cannot: the project's key is gone from the key store.
    assert (tmp_path / "data" / "master.key").read_bytes() == master
    with pytest.raises(KeyShredded):
        open_keyring(get_settings(data_dir=tmp_path / "data")).unwrap("project-a", wrapped, ring.primary_key_id)


def test_project_key_alone_or_master_key_alone_opens_nothing(tmp_path: Path) -> None:
    store = ProjectKeyDir(tmp_path / "keys")
    right = SoftwareKeyProvider(MasterKey.generate(), store)
    wrong_master = SoftwareKeyProvider(MasterKey.generate(), store)  # same project secrets, other master key
    dek = new_key()
    wrapped = right.wrap("p", dek)
    assert right.unwrap("p", wrapped) == dek
    with pytest.raises(IntegrityError):
        wrong_master.unwrap("p", wrapped)
    with pytest.raises(IntegrityError):
        right.unwrap("q", right.wrap("q", new_key())[:1] + wrapped[1:])  # bound to its project id


def test_dek_wrapped_before_providers_still_opens(tmp_path: Path) -> None:
    source = FileKeySource(tmp_path / "master.key")
    master = source.ensure()
    legacy = master.wrap("old-project", dek := new_key())  # what earlier Veil versions stored
    ring = KeyRing(source)
    assert ring.unwrap("old-project", legacy, master.key_id) == dek


def test_group_readable_project_key_is_refused(tmp_path: Path) -> None:
    ring = open_keyring(get_settings(data_dir=tmp_path))
    _dek, wrapped = ring.new_dek("p1", ring.primary_key_id)
    os.chmod(tmp_path / "project-keys" / "p1.key", 0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        ring.unwrap("p1", wrapped, ring.primary_key_id)


def test_env_provider_keeps_project_keys_only_in_a_named_directory(tmp_path: Path) -> None:
    secret = base64.b64encode(os.urandom(32)).decode()
    plain = open_keyring(get_settings(data_dir=tmp_path / "node", master_key=secret, key_provider="env"))
    assert plain.kind == "env" and plain.primary_key_id == MasterKey.from_base64(secret).key_id
    _dek, wrapped = plain.new_dek("p", plain.primary_key_id)
    assert wrapped[0] == 1 and not (tmp_path / "node").exists()  # nodes sharing only the master key all open it
    settings = get_settings(data_dir=tmp_path / "node", master_key=secret, key_provider=f"env://{tmp_path / 'shared'}")
    ring = open_keyring(settings)
    dek, wrapped = ring.new_dek("q", ring.primary_key_id)
    assert wrapped[0] == PROJECT_WRAP_VERSION and (tmp_path / "shared" / "project-keys" / "q.key").is_file()
    assert open_keyring(settings).unwrap("q", wrapped, ring.primary_key_id) == dek
    with pytest.raises(MasterKeyError, match="VEIL_MASTER_KEY"):
        open_keyring(get_settings(data_dir=tmp_path, key_provider="env"))


def test_file_provider_in_its_own_directory(tmp_path: Path) -> None:
    ring = open_keyring(get_settings(data_dir=tmp_path / "data", key_provider=f"file://{tmp_path / 'keys'}"))
    ring.new_dek("p", ring.primary_key_id)
    assert (tmp_path / "keys" / "master.key").is_file() and (tmp_path / "keys" / "project-keys" / "p.key").is_file()
    assert not (tmp_path / "data").exists()


def test_provider_urls_are_checked() -> None:
    assert ProviderSpec.parse("").scheme == "file"
    spec = ProviderSpec.parse("pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=veil&pin-file=/run/pin")
    assert (spec.scheme, str(spec.path), spec.options["token"]) == ("pkcs11", "/usr/lib/softhsm/libsofthsm2.so", "veil")
    with pytest.raises(MasterKeyError, match="Vault Transit is not supported"):
        ProviderSpec.parse("vault://127.0.0.1:8200/transit/veil")
    with pytest.raises(MasterKeyError, match="absolute path"):
        ProviderSpec.parse("file://relative/keys")


def test_pkcs11_wraps_on_the_token_and_the_key_never_leaves_it(
    softhsm: SoftHsm, hsm_prefix: str, tmp_path: Path
) -> None:
    from pkcs11 import Attribute
    from pkcs11.exceptions import AttributeSensitive

    settings = get_settings(data_dir=tmp_path, key_provider=softhsm.url(hsm_prefix), pkcs11_pin=softhsm.pin)
    ring = open_keyring(settings)
    assert ring.primary_key_id.startswith("p11-") and not list(tmp_path.iterdir())  # no key file anywhere
    dek, wrapped = ring.new_dek("project-h", ring.primary_key_id)
    assert wrapped[0] == PROJECT_WRAP_VERSION and dek not in wrapped
    assert ring.unwrap("project-h", wrapped, ring.primary_key_id) == dek

    provider = ring.primary_provider
    key = provider._find("project-h")  # type: ignore[attr-defined]
    assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
    with pytest.raises(AttributeSensitive):
        key[Attribute.VALUE]  # the token refuses to hand the key's bytes out
    assert provider.project_ids() == {"project-h"}

    other_process = open_keyring(settings)  # another Veil process on the same token sees the same key
    assert other_process.unwrap("project-h", wrapped, ring.primary_key_id) == dek
    assert other_process.forget("project-h") is True
    with pytest.raises(KeyShredded, match="destroyed"):
        ring.unwrap("project-h", wrapped, ring.primary_key_id)  # the first process's cached handle is stale


def test_pkcs11_needs_a_pin(softhsm: SoftHsm, hsm_prefix: str, tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="VEIL_PKCS11_PIN"):
        open_keyring(get_settings(data_dir=tmp_path, key_provider=softhsm.url(hsm_prefix)))


def test_pkcs11_derives_stable_secrets_on_the_token(softhsm: SoftHsm, hsm_prefix: str, tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path, key_provider=softhsm.url(hsm_prefix), pkcs11_pin=softhsm.pin)
    first, second = open_keyring(settings), open_keyring(settings)
    token = first.derive_secret(b"veil/project-export-token/v1\x00")
    assert len(token) == 32 and token == second.derive_secret(b"veil/project-export-token/v1\x00")
    assert first.derive_secret(b"another purpose") != token
    other_prefix = get_settings(data_dir=tmp_path, key_provider=softhsm.url(hsm_prefix + "x"), pkcs11_pin=softhsm.pin)
    assert open_keyring(other_prefix).derive_secret(b"veil/project-export-token/v1\x00") != token
