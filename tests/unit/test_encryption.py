"""Field encryption primitives: AES-256-GCM ciphertexts name their key and their column, any
alteration is detected, wrapped keys need the right master key, and master keys are checked."""

from __future__ import annotations

import pytest

from guestcomms.config import Settings, load_settings
from guestcomms.errors import ConfigError
from guestcomms.security.encryption import (
    PREFIX,
    EncryptionError,
    KeyRing,
    derive_key,
    encode_key,
    is_ciphertext,
    key_id_of,
    new_key,
    parse_master_key,
    unwrap_key,
    wrap_key,
)

RING = KeyRing(keys={"k1": new_key(), "k2": new_key()}, active="k2")


def test_a_value_round_trips_and_names_the_active_key() -> None:
    token = RING.encrypt("ana@example.com", "contacts.email")
    assert token.startswith(f"{PREFIX}k2$")
    assert "ana" not in token
    assert key_id_of(token) == "k2"
    assert RING.decrypt(token, "contacts.email") == "ana@example.com"


def test_the_same_value_encrypts_differently_each_time() -> None:
    """Random nonces: equal plaintexts do not give equal ciphertexts (so no frequency
    analysis, and no look-up by ciphertext: look-ups use the keyed hashes)."""
    assert RING.encrypt("x", "c") != RING.encrypt("x", "c")


def test_an_older_key_still_decrypts() -> None:
    old = KeyRing(keys={"k1": RING.keys["k1"]}, active="k1")
    token = old.encrypt("+14155550123", "contacts.phone")
    assert RING.decrypt(token, "contacts.phone") == "+14155550123"


def test_every_altered_character_is_detected() -> None:
    token = RING.encrypt("guest@example.com", "contacts.email")
    body_start = len(PREFIX) + len("k2$")
    for position in range(body_start, len(token)):
        replacement = "A" if token[position] != "A" else "B"
        altered = token[:position] + replacement + token[position + 1 :]
        with pytest.raises(EncryptionError):
            RING.decrypt(altered, "contacts.email")


def test_a_ciphertext_moved_to_another_column_or_relabelled_does_not_decrypt() -> None:
    token = RING.encrypt("guest@example.com", "contacts.email")
    with pytest.raises(EncryptionError, match="does not authenticate"):
        RING.decrypt(token, "contacts.first_name")
    relabelled = token.replace(f"{PREFIX}k2$", f"{PREFIX}k1$", 1)
    with pytest.raises(EncryptionError, match="does not authenticate"):
        RING.decrypt(relabelled, "contacts.email")
    with pytest.raises(EncryptionError, match="unknown data key k9"):
        RING.decrypt(token.replace(f"{PREFIX}k2$", f"{PREFIX}k9$", 1), "contacts.email")


def test_plaintext_is_not_mistaken_for_a_ciphertext() -> None:
    assert not is_ciphertext("ana@example.com")
    assert not is_ciphertext({"a": 1})
    with pytest.raises(EncryptionError):
        key_id_of("ana@example.com")


def test_a_wrapped_key_needs_its_master_key_and_its_id() -> None:
    master, other, key = new_key(), new_key(), new_key()
    wrapped = wrap_key(master, "k3", key)
    assert unwrap_key(master, "k3", wrapped) == key
    with pytest.raises(EncryptionError, match="GUESTCOMMS_MASTER_KEY is not the key"):
        unwrap_key(other, "k3", wrapped)
    with pytest.raises(EncryptionError):
        unwrap_key(master, "k4", wrapped)


def test_the_first_data_key_is_derived_from_the_master_key() -> None:
    master = new_key()
    assert derive_key(master, "k1") == derive_key(master, "k1")
    assert derive_key(master, "k1") != derive_key(new_key(), "k1")
    assert derive_key(master, "k1") != master


def test_master_keys_are_checked_when_settings_load() -> None:
    key = new_key()
    assert parse_master_key(encode_key(key)) == key
    assert Settings(master_key=encode_key(key)).master_key_bytes == key
    assert Settings().master_key_bytes is None
    with pytest.raises(ValueError, match="32 bytes"):
        parse_master_key(encode_key(b"short"))
    with pytest.raises(ValueError, match="base64"):
        parse_master_key("not base64 at all!")
    with pytest.raises(ConfigError, match="GUESTCOMMS_MASTER_KEY"):
        load_settings(master_key="too-short")
