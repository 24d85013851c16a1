"""API keys: format, generation and hashing. Only the SHA-256 of a key is ever stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum


class KeyKind(StrEnum):
    AGENT = "agent"
    OPERATOR = "operator"
    ADMIN = "admin"


KEY_PREFIXES: dict[KeyKind, str] = {
    KeyKind.AGENT: "th_agent_",
    KeyKind.OPERATOR: "th_op_",
    KeyKind.ADMIN: "th_admin_",
}
SECRET_HEX_LENGTH = 64
DISPLAY_PREFIX_LENGTH = 14  # the part stored in clear, for people to recognise a key (TaskHive's api_key_prefix)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: `plaintext` is shown once and never stored."""

    kind: KeyKind
    plaintext: str
    key_hash: str
    display_prefix: str


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key(kind: KeyKind) -> NewKey:
    plaintext = KEY_PREFIXES[kind] + secrets.token_hex(SECRET_HEX_LENGTH // 2)
    return NewKey(kind, plaintext, hash_key(plaintext), plaintext[:DISPLAY_PREFIX_LENGTH])


def is_well_formed(token: str, kind: KeyKind) -> bool:
    """True when `token` has the exact shape of a `kind` key (prefix plus 64 lower-case hex characters)."""
    prefix = KEY_PREFIXES[kind]
    return (
        len(token) == len(prefix) + SECRET_HEX_LENGTH
        and token.startswith(prefix)
        and _HEX.issuperset(token[len(prefix) :])
    )


def verification_code() -> str:
    """A claim code for a self-registered agent.

    TaskHive derives `hive-XXXX` from the key's hash: 65,536 values, so codes collide and can be guessed.
    Agora keeps the `hive-` shape but draws 40 random bits, independent of the key.
    """
    return "hive-" + secrets.token_hex(5).upper()
