"""Choosing the key provider from settings: `VEIL_KEY_PROVIDER` (a URL) plus `VEIL_MASTER_KEY`/`VEIL_PKCS11_PIN`.

    file                      <data_dir>/master.key (created 0600) and <data_dir>/project-keys/   (the default)
    file:///etc/veil/keys     /etc/veil/keys/master.key and /etc/veil/keys/project-keys/
    env                       VEIL_MASTER_KEY alone: DEKs wrapped by it (several nodes can share it)
    env:///shared/keys        VEIL_MASTER_KEY, project keys in /shared/keys/project-keys/ (a directory every node
                              sees): deleting a project then also shreds it in backups
    pkcs11:///usr/lib/softhsm/libsofthsm2.so?token=veil[&pin-file=/run/secrets/pin][&prefix=veil]
                              keys on an HSM token; the PIN from VEIL_PKCS11_PIN or pin-file

Keep the key directory out of data backups (`veil backup` never includes it): a project deleted after a backup
was taken stays unreadable when that backup is restored, because its key is gone from the live key store.

    >>> ring = open_keyring(get_settings())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from veil.config import Settings
from veil.security.crypto import (
    EnvKeySource,
    FileKeySource,
    KeyRing,
    MasterKeyError,
    ProjectKeyDir,
)

SCHEMES = ("file", "env", "pkcs11")


@dataclass(frozen=True)
class ProviderSpec:
    """A parsed `VEIL_KEY_PROVIDER`."""

    scheme: str
    path: Path | None
    options: dict[str, str]

    @classmethod
    def parse(cls, url: str) -> ProviderSpec:
        text = url.strip() or "file"
        if ":" not in text:
            text += ":"
        parts = urlsplit(text)
        if parts.scheme not in SCHEMES:
            raise MasterKeyError(
                f"unknown key provider {parts.scheme!r} in VEIL_KEY_PROVIDER; use one of: {', '.join(SCHEMES)} "
                "(HashiCorp Vault Transit is not supported: see docs/SECURITY.md)"
            )
        if parts.netloc:
            raise MasterKeyError(f"VEIL_KEY_PROVIDER {url!r}: write an absolute path as {parts.scheme}:///PATH")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        return cls(parts.scheme, Path(unquote(parts.path)) if parts.path else None, options)


def _pin(settings: Settings, spec: ProviderSpec) -> str:
    if "pin-file" in spec.options:
        path = Path(spec.options["pin-file"])
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise MasterKeyError(f"cannot read the PKCS#11 PIN file {path}: {exc.strerror}") from None
    if settings.pkcs11_pin is None:
        raise MasterKeyError("the pkcs11 key provider needs the token's user PIN in VEIL_PKCS11_PIN (or pin-file=)")
    return settings.pkcs11_pin.get_secret_value()


def open_keyring(settings: Settings, url: str | None = None, create: bool = True) -> KeyRing:
    """The key ring for `url` (default: the settings' provider). A file master key is created on first use
    unless `create` is False (`veil restore` must not invent a key that cannot open the backup)."""
    spec = ProviderSpec.parse(settings.key_provider if url is None else url)
    if spec.scheme == "pkcs11":
        if spec.path is None or "token" not in spec.options:
            raise MasterKeyError("pkcs11 key provider: write pkcs11:///path/to/module.so?token=LABEL")
        from veil.security.pkcs11 import Pkcs11KeyProvider  # imported only when configured: it loads a C module

        provider = Pkcs11KeyProvider(
            str(spec.path), spec.options["token"], _pin(settings, spec), spec.options.get("prefix", "veil")
        )
        return KeyRing(provider)
    if spec.scheme == "env" or (spec.scheme == "file" and spec.path is None and settings.master_key is not None):
        if settings.master_key is None:
            raise MasterKeyError("the env key provider needs VEIL_MASTER_KEY (base64 of 32 bytes)")
        # Nodes configured by environment share no directory by default, so there are project keys only where
        # the operator names a directory every node shares (env:///DIR); else DEKs are wrapped by the master key.
        store = ProjectKeyDir(spec.path / "project-keys") if spec.path else None
        return KeyRing(EnvKeySource(settings.master_key.get_secret_value()), store, kind="env")
    directory = spec.path or settings.data_dir
    source = FileKeySource(directory / "master.key")
    if create:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        source.ensure()
    return KeyRing(source, ProjectKeyDir(directory / "project-keys"), kind="file")
