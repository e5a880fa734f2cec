"""A key provider on a PKCS#11 token (an HSM, or SoftHSM2 for tests): the keys never leave the token.

Each project gets its own AES-256 key, generated on the token as a sensitive, non-extractable token object
labelled `veil-project-<project id>`; its DEK is wrapped and unwrapped by AES-GCM *on the token*. Deleting the
project destroys that object (C_DestroyObject), so every copy of the wrapped DEK — in the database, in a backup —
is noise from then on. Veil holds only a logged-in session (the user PIN), never key material.

    >>> provider = Pkcs11KeyProvider("/usr/lib/softhsm/libsofthsm2.so", token_label="veil", pin="1234")
    >>> wrapped = provider.wrap(project_id, dek)      # creates the project's key on the token
    >>> provider.unwrap(project_id, wrapped) == dek
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.exceptions import NoSuchKey, PKCS11Error
from pkcs11.mechanisms import GCMParams

from veil.security.crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    PROJECT_WRAP_VERSION,
    IntegrityError,
    KeyShredded,
    MasterKeyError,
    check_key,
    check_project_id,
    project_dek_aad,
    split_project_wrap,
)

_TAG_BITS = 128

# PKCS#11 logs an *application* in to a token once, not each session: every provider of this process on the same
# token shares one logged-in session (and one lock, since a session runs one operation at a time).
_SESSIONS: dict[tuple[str, str], tuple[Any, Any, threading.Lock]] = {}
_SESSIONS_LOCK = threading.Lock()


def _open_session(library: str, token_label: str, pin: str) -> tuple[Any, Any, threading.Lock]:
    with _SESSIONS_LOCK:
        if (library, token_label) not in _SESSIONS:
            token = pkcs11.lib(library).get_token(token_label=token_label)
            _SESSIONS[(library, token_label)] = (token, token.open(user_pin=pin, rw=True), threading.Lock())
        return _SESSIONS[(library, token_label)]


class Pkcs11KeyProvider:
    """Per-project AES keys on a PKCS#11 token; wrap/unwrap are token operations (thread-safe: one lock per
    token session). The PIN is checked by the first login of the process; later providers share that session."""

    kind = "pkcs11"

    def __init__(self, library: str, token_label: str, pin: str, label_prefix: str = "veil") -> None:
        try:
            self._token, self._session, self._lock = _open_session(library, token_label, pin)
        except (PKCS11Error, RuntimeError, OSError) as exc:
            raise MasterKeyError(
                f"cannot open PKCS#11 token {token_label!r} with {library}: {exc.__class__.__name__} {exc}".strip()
            ) from None
        self.library, self.token_label, self.prefix = library, token_label, label_prefix
        serial = self._token.serial if isinstance(self._token.serial, bytes) else str(self._token.serial).encode()
        self._key_id = (
            "p11-" + hashlib.sha256(b"veil/pkcs11\x00" + serial + b"\x00" + label_prefix.encode()).hexdigest()[:12]
        )
        self._handles: dict[str, Any] = {}

    @property
    def key_id(self) -> str:
        return self._key_id

    def describe(self) -> str:
        return f"PKCS#11 token {self.token_label!r} ({self.library}), key {self.key_id}"

    def _label(self, project_id: str) -> str:
        return f"{self.prefix}-project-{check_project_id(project_id)}"

    def _find(self, project_id: str) -> Any | None:
        if project_id in self._handles:
            return self._handles[project_id]
        try:
            key = self._session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=self._label(project_id)
            )
        except NoSuchKey:
            return None
        self._handles[project_id] = key
        return key

    def _create(self, project_id: str) -> Any:
        key = self._session.generate_key(
            KeyType.AES,
            KEY_BYTES * 8,
            label=self._label(project_id),
            store=True,
            template={
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,  # the token refuses to export it, even wrapped
                Attribute.ENCRYPT: True,
                Attribute.DECRYPT: True,
            },
        )
        self._handles[project_id] = key
        return key

    def wrap(self, project_id: str, dek: bytes) -> bytes:
        check_key(dek)
        nonce = os.urandom(NONCE_BYTES)
        params = GCMParams(nonce, project_dek_aad(project_id, self.key_id), _TAG_BITS)
        with self._lock:
            key = self._find(project_id) or self._create(project_id)
            ciphertext = key.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        return bytes([PROJECT_WRAP_VERSION]) + nonce + bytes(ciphertext)

    def unwrap(self, project_id: str, wrapped: bytes) -> bytes:
        nonce, ciphertext = split_project_wrap(project_id, wrapped)
        params = GCMParams(nonce, project_dek_aad(project_id, self.key_id), _TAG_BITS)
        with self._lock:
            key = self._find(project_id)
            if key is None:
                raise KeyShredded(f"the key of project {project_id} was destroyed on {self.describe()}")
            try:
                return bytes(key.decrypt(ciphertext, mechanism=Mechanism.AES_GCM, mechanism_param=params))
            except PKCS11Error:
                self._handles.pop(project_id, None)  # destroyed by another process, or not this key's data
                if self._find(project_id) is None:
                    raise KeyShredded(f"the key of project {project_id} was destroyed on {self.describe()}") from None
                raise IntegrityError(f"data key of project {project_id} does not open with {self.describe()}") from None

    def has_project(self, project_id: str) -> bool:
        with self._lock:
            self._handles.pop(project_id, None)
            return self._find(project_id) is not None

    def destroy(self, project_id: str) -> bool:
        with self._lock:
            self._handles.pop(project_id, None)
            key = self._find(project_id)
            if key is None:
                return False
            key.destroy()
            self._handles.pop(project_id, None)
            return True

    def derive_secret(self, purpose: bytes) -> bytes:
        """AES-CMAC of `purpose` under a token key kept for this (`<prefix>-secret`), stretched to 32 bytes."""
        label = f"{self.prefix}-secret"
        with self._lock:
            try:
                key = self._session.get_key(object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=label)
            except NoSuchKey:
                key = self._session.generate_key(
                    KeyType.AES, KEY_BYTES * 8, label=label, store=True,
                    template={Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False, Attribute.SIGN: True},
                )  # fmt: skip
            mac = bytes(key.sign(purpose, mechanism=Mechanism.AES_CMAC))
        return hashlib.sha256(b"veil/pkcs11-secret\x00" + mac).digest()

    def project_ids(self) -> set[str]:
        marker = f"{self.prefix}-project-"
        with self._lock:
            labels = [
                obj[Attribute.LABEL] for obj in self._session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
            ]
        return {label[len(marker) :] for label in labels if label.startswith(marker)}
