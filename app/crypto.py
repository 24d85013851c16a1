"""Secrets at rest: AES-256-GCM under a ring of data keys with ids (DESIGN §10). Only `cryptography` and stdlib.

A ring is written as entries `<key id>:<key>` (or a bare key), separated by commas or whitespace; the key is 32
random bytes in base64url and its id is 8 hex digits derived from it, so a written id is a checksum: a mistyped key
does not parse, and no two different keys can share an id. The first key seals; every key opens.

A sealed value is `version (1 byte) | key id (4) | nonce (12) | ciphertext and tag (16)`. The nonce is random (96
bits: a key should seal far fewer than 2**32 values, which rotation keeps true), and the additional data is the
header plus a *context* naming where the value is stored (`webhook:17`), so a value copied to another row, or
with its header edited, does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
KEY_BYTES = 32
KEY_ID_BYTES = 4
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES
MIN_SEALED_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
HOW_TO_MAKE_ONE = "make one with `agora secrets new-key`"

_ENTRY = re.compile(r"(?:(?P<id>[0-9a-fA-F]{8}):)?(?P<key>[A-Za-z0-9_\-]+={0,2})")


class KeyRingError(ValueError):
    """The key setting is missing or malformed; the message names where it came from and what it expects."""


class SealError(ValueError):
    """A stored value does not open: altered, moved to another row, not sealed at all, or under an unknown key."""


class UnknownKeyId(SealError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"sealed under key {key_id}, which is not in the key ring (was it removed too early?)")
        self.key_id = key_id


def key_id_for(material: bytes) -> bytes:
    return hashlib.sha256(b"agora data key id\x00" + material).digest()[:KEY_ID_BYTES]


def new_key_entry() -> str:
    """A fresh random key, written as an entry `<key id>:<key>`."""
    material = os.urandom(KEY_BYTES)
    return f"{key_id_for(material).hex()}:{base64.urlsafe_b64encode(material).decode().rstrip('=')}"


def sealed_key_id(sealed: bytes) -> str | None:
    """The key id a sealed value names (hex), None when the value is not a sealed one."""
    if len(sealed) < MIN_SEALED_BYTES or sealed[0] != VERSION:
        return None
    return sealed[1:HEADER_BYTES].hex()


class KeyRing:
    """Data keys, the first of which seals. Build one with `KeyRing.parse`; its repr never shows key material."""

    def __init__(self, materials: Iterable[bytes] = ()) -> None:
        self._keys: dict[bytes, AESGCM] = {}
        self._materials: dict[bytes, bytes] = {}
        for material in materials:
            if len(material) != KEY_BYTES:
                raise KeyRingError(f"a data key is {KEY_BYTES} bytes, got {len(material)}")
            key_id = key_id_for(material)
            if key_id in self._keys:
                raise KeyRingError(f"key {key_id.hex()} is listed twice")
            self._keys[key_id] = AESGCM(material)
            self._materials[key_id] = material
        self._derived: dict[str, bytes] = {}

    @classmethod
    def parse(cls, text: str, *, source: str = "AGORA_SECRET_KEY") -> KeyRing:
        """Entries separated by commas or whitespace; empty text gives an empty ring (which refuses to work)."""
        materials = []
        for entry in re.split(r"[\s,]+", text.strip()):
            if not entry:
                continue
            match = _ENTRY.fullmatch(entry)
            material = _decode(match.group("key")) if match else None
            if match is None or material is None or len(material) != KEY_BYTES:
                raise KeyRingError(
                    f"{source}: each entry is `<key id>:<{KEY_BYTES} random bytes in base64url>` ({HOW_TO_MAKE_ONE})"
                )
            written_id = match.group("id")
            if written_id and written_id.lower() != key_id_for(material).hex():
                raise KeyRingError(f"{source}: key id {written_id} does not match its key (mistyped or truncated?)")
            materials.append(material)
        try:
            return cls(materials)
        except KeyRingError as error:
            raise KeyRingError(f"{source}: {error}") from None

    def to_text(self, *, separator: str = ",") -> str:
        """The ring as a setting (the inverse of `parse`)."""
        return separator.join(
            f"{key_id.hex()}:{base64.urlsafe_b64encode(material).decode().rstrip('=')}"
            for key_id, material in self._materials.items()
        )

    @property
    def empty(self) -> bool:
        return not self._keys

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Hex ids, the sealing key's first."""
        return tuple(key_id.hex() for key_id in self._keys)

    @property
    def primary_id(self) -> str:
        return self._primary()[0].hex()

    def with_new_key(self) -> KeyRing:
        """This ring behind a fresh key that seals from now on (the first step of a rotation)."""
        return KeyRing([os.urandom(KEY_BYTES), *self._materials.values()])

    def only_primary(self) -> KeyRing:
        """The sealing key alone (the last step of a rotation, once nothing is sealed under the others)."""
        return KeyRing([self._materials[self._primary()[0]]])

    def seal(self, plaintext: bytes, context: str) -> bytes:
        key_id, aead = self._primary()
        header = bytes([VERSION]) + key_id
        nonce = os.urandom(NONCE_BYTES)
        return header + nonce + aead.encrypt(nonce, plaintext, header + context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        key_id = sealed_key_id(sealed)
        if key_id is None:
            raise SealError("not a sealed value (wrong version or too short)")
        aead = self._keys.get(bytes.fromhex(key_id))
        if aead is None:
            raise UnknownKeyId(key_id)
        header, nonce = sealed[:HEADER_BYTES], sealed[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, sealed[HEADER_BYTES + NONCE_BYTES :], header + context.encode())
        except InvalidTag:
            raise SealError("the sealed value does not open: altered, or copied from another row") from None

    def is_current(self, sealed: bytes) -> bool:
        """True when the value is sealed under the sealing key (nothing for a rotation to do)."""
        return sealed_key_id(sealed) == self.primary_id

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for one purpose (HKDF-SHA256 from the sealing key): `derive("cursor")` signs cursors."""
        derived = self._derived.get(purpose)
        if derived is None:
            key_id, _ = self._primary()
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"agora purpose\x00" + purpose.encode())
            derived = self._derived[purpose] = hkdf.derive(self._materials[key_id])
        return derived

    def _primary(self) -> tuple[bytes, AESGCM]:
        if not self._keys:
            raise KeyRingError(f"no data key: set AGORA_SECRET_KEY ({HOW_TO_MAKE_ONE})")
        return next(iter(self._keys.items()))

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self.key_ids)})"


def _decode(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
