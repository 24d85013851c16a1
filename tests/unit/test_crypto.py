"""app/crypto.py: sealing under a key ring (format, binding to a context, key ids, rotation) and derived keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.config import SettingsError, load_settings
from app.crypto import (
    HEADER_BYTES,
    MIN_SEALED_BYTES,
    NONCE_BYTES,
    KeyRing,
    KeyRingError,
    SealError,
    UnknownKeyId,
    key_id_for,
    new_key_entry,
    sealed_key_id,
)

CONTEXT = "webhook:17"
SECRET = b"whsec_0123456789abcdef"


def ring(*entries: str) -> KeyRing:
    return KeyRing.parse(",".join(entries))


@pytest.fixture
def keys() -> KeyRing:
    return ring(new_key_entry())


def material_of(entry: str) -> bytes:
    return base64.urlsafe_b64decode(entry.split(":")[1] + "=")


def test_a_sealed_value_opens_to_the_plaintext_and_hides_it(keys):
    sealed = keys.seal(SECRET, CONTEXT)
    assert keys.open(sealed, CONTEXT) == SECRET
    assert SECRET not in sealed and SECRET.hex().encode() not in sealed
    assert len(sealed) == MIN_SEALED_BYTES + len(SECRET)


def test_the_same_value_seals_differently_each_time(keys):
    first, second = keys.seal(SECRET, CONTEXT), keys.seal(SECRET, CONTEXT)
    assert first != second
    assert first[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES] != second[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]


def test_the_format_is_version_key_id_nonce_then_aes_gcm_over_header_and_context():
    """Read back with the bare AES-GCM primitive: the layout is what the module docstring says."""
    entry = new_key_entry()
    sealed = ring(entry).seal(SECRET, CONTEXT)
    header, nonce, body = sealed[:5], sealed[5:17], sealed[17:]
    assert header == b"\x01" + key_id_for(material_of(entry))
    assert AESGCM(material_of(entry)).decrypt(nonce, body, header + CONTEXT.encode()) == SECRET


@pytest.mark.parametrize("position", [0, 1, 4, 5, 16, 17, -1])
def test_a_changed_byte_anywhere_does_not_open(keys, position):
    sealed = bytearray(keys.seal(SECRET, CONTEXT))
    sealed[position] ^= 0x01
    with pytest.raises(SealError):
        keys.open(bytes(sealed), CONTEXT)


def test_a_cut_value_does_not_open(keys):
    sealed = keys.seal(SECRET, CONTEXT)
    for cut in (sealed[:-1], sealed[: MIN_SEALED_BYTES - 1], b""):
        with pytest.raises(SealError):
            keys.open(cut, CONTEXT)


def test_a_value_moved_to_another_place_does_not_open(keys):
    """The context is the additional data: a webhook secret copied into another webhook's row stays closed."""
    sealed = keys.seal(SECRET, "webhook:17")
    for elsewhere in ("webhook:18", "webhook:170", "idempotency_key:agent:1|k", ""):
        with pytest.raises(SealError, match="altered, or copied from another row"):
            keys.open(sealed, elsewhere)


def test_a_value_under_a_key_not_in_the_ring_names_the_key(keys):
    other = ring(new_key_entry())
    sealed = other.seal(SECRET, CONTEXT)
    with pytest.raises(UnknownKeyId) as raised:
        keys.open(sealed, CONTEXT)
    assert raised.value.key_id == other.primary_id == sealed_key_id(sealed)


def test_plaintext_marked_by_the_migration_is_not_a_sealed_value(keys):
    assert sealed_key_id(b"\x00" + SECRET) is None
    with pytest.raises(SealError, match="not a sealed value"):
        keys.open(b"\x00" + SECRET + bytes(32), CONTEXT)


def test_rotation_the_first_key_seals_every_key_opens_then_the_old_one_is_dropped():
    old = ring(new_key_entry())
    under_old = old.seal(SECRET, CONTEXT)
    rotating = old.with_new_key()
    assert rotating.key_ids[1:] == old.key_ids and rotating.primary_id != old.primary_id
    assert rotating.open(under_old, CONTEXT) == SECRET  # old values still open
    under_new = rotating.seal(SECRET, CONTEXT)
    assert sealed_key_id(under_new) == rotating.primary_id
    assert rotating.is_current(under_new) and not rotating.is_current(under_old)
    new_only = rotating.only_primary()
    assert new_only.key_ids == (rotating.primary_id,)
    assert new_only.open(under_new, CONTEXT) == SECRET
    with pytest.raises(UnknownKeyId):
        new_only.open(under_old, CONTEXT)
    with pytest.raises(UnknownKeyId):
        old.open(under_new, CONTEXT)


def test_the_setting_holds_several_keys_with_or_without_ids_in_any_separator():
    first, second, third = new_key_entry(), new_key_entry(), new_key_entry()
    bare = first.split(":")[1]
    parsed = KeyRing.parse(f"  {bare},{second}\n {third}\t")
    assert parsed.key_ids == (first.split(":")[0], second.split(":")[0], third.split(":")[0])
    assert KeyRing.parse(parsed.to_text()).key_ids == parsed.key_ids
    assert KeyRing.parse(parsed.to_text(separator="\n")).key_ids == parsed.key_ids
    padded = base64.urlsafe_b64encode(material_of(first)).decode()  # with its "=" padding
    assert KeyRing.parse(padded).primary_id == parsed.primary_id


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        base64.urlsafe_b64encode(os.urandom(16)).decode(),  # too short for AES-256
        base64.urlsafe_b64encode(os.urandom(33)).decode(),
        "zzzzzzzz:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
    ],
)
def test_a_malformed_entry_is_refused_naming_the_setting(text):
    with pytest.raises(KeyRingError, match="AGORA_SECRET_KEY") as raised:
        KeyRing.parse(text)
    assert "agora secrets new-key" in str(raised.value) or "does not match" in str(raised.value)


def test_a_written_key_id_is_a_checksum_of_its_key():
    entry = new_key_entry()
    key_id, key = entry.split(":")
    wrong_id = f"{(int(key_id, 16) ^ 1):08x}"
    with pytest.raises(KeyRingError, match=f"key id {wrong_id} does not match its key"):
        KeyRing.parse(f"{wrong_id}:{key}")
    mistyped = key[:-2] + ("A" if key[-2] != "A" else "B") + key[-1]
    with pytest.raises(KeyRingError, match="does not match"):
        KeyRing.parse(f"{key_id}:{mistyped}")


def test_a_key_listed_twice_is_refused():
    entry = new_key_entry()
    with pytest.raises(KeyRingError, match="listed twice"):
        KeyRing.parse(f"{entry},{entry.split(':')[1]}")


def test_an_empty_ring_refuses_to_seal_or_derive_and_says_how_to_make_a_key():
    empty = KeyRing.parse("")
    assert empty.empty and empty.key_ids == ()
    for use in (lambda: empty.seal(SECRET, CONTEXT), lambda: empty.derive("cursor")):
        with pytest.raises(KeyRingError, match=r"AGORA_SECRET_KEY.*agora secrets new-key"):
            use()


def test_new_keys_are_random():
    entries = {new_key_entry() for _ in range(50)}
    assert len(entries) == 50
    assert all(len(material_of(entry)) == 32 for entry in entries)


def test_derive_is_hkdf_sha256_of_the_first_key_per_purpose():
    first, second = new_key_entry(), new_key_entry()
    keys = ring(first, second)
    derived = keys.derive("cursor")
    # RFC 5869 by hand (no salt: a string of zeros; one block of output).
    prk = hmac.new(bytes(32), material_of(first), hashlib.sha256).digest()
    expected = hmac.new(prk, b"agora purpose\x00cursor" + b"\x01", hashlib.sha256).digest()
    assert derived == expected and len(derived) == 32
    assert keys.derive("cursor") == derived  # stable
    assert keys.derive("other") != derived  # one key per purpose
    assert ring(first).derive("cursor") == derived  # only the first key counts
    assert ring(second, first).derive("cursor") != derived


def test_no_repr_shows_key_material():
    entry = new_key_entry()
    keys = ring(entry)
    settings = load_settings({"AGORA_SECRET_KEY": entry})
    pretty = pytest.importorskip("rich.pretty").pretty_repr  # what rich tracebacks show of a frame's locals
    for shown in (repr(keys), str(keys), repr(settings), str(settings), pretty(settings), pretty(keys)):
        assert entry.split(":")[1] not in shown
    assert keys.primary_id in repr(keys)
    assert "secret_key='<redacted>'" in repr(settings)


def test_a_malformed_setting_stops_the_start_naming_the_variable():
    with pytest.raises(SettingsError, match="AGORA_SECRET_KEY"):
        load_settings({"AGORA_SECRET_KEY": "hunter2"})
    assert load_settings({}).secret_key == ""  # no default key: an empty ring
