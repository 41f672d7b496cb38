"""DKIM keys, DNS records and signatures (guestcomms.channels.dkim_signing)."""

from __future__ import annotations

import base64
import stat
import types
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from guestcomms.channels.dkim_signing import (
    SIGNED_HEADERS,
    DkimSigner,
    dns_record_name,
    dns_txt_strings,
    dns_txt_value,
    generate_key,
    key_path,
    signature_header,
    write_key,
)
from guestcomms.errors import ConfigError

NOW = 1_795_000_000
MESSAGE = (
    b"From: Ana & Ben <hello@anaben.example>\r\n"
    b"To: Zoe Martin <zoe@example.org>\r\n"
    b"Subject: Save the date\r\n"
    b"Date: Sun, 22 Nov 2026 18:00:00 +0000\r\n"
    b"Message-ID: <abc@anaben.example>\r\n"
    b"List-Unsubscribe: <https://anaben.example/u/abc>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Hello Zo=C3=AB,\r\nsee you at the villa.\r\n"
)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    """One 2048-bit key for the module (generating one takes tens of milliseconds)."""
    return generate_key(2048)


def _dns(key: rsa.RSAPrivateKey, name: str) -> object:
    def lookup(qname: bytes, timeout: float = 5) -> bytes | None:
        return dns_txt_value(key.public_key()).encode() if qname.decode() == name else None

    return lookup


def test_record_name_is_selector_domainkey_domain() -> None:
    """The TXT record lives at <selector>._domainkey.<domain>, lower-cased."""
    assert (
        dns_record_name(domain="AnaBen.example", selector="gc1") == "gc1._domainkey.anaben.example"
    )


def test_txt_value_carries_the_public_key(key: rsa.RSAPrivateKey) -> None:
    """The value is v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo of the key>."""
    value = dns_txt_value(key.public_key())
    prefix = "v=DKIM1; k=rsa; p="
    assert value.startswith(prefix)
    public = serialization.load_der_public_key(base64.b64decode(value.removeprefix(prefix)))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()


def test_txt_strings_are_at_most_255_characters_and_join_back(key: rsa.RSAPrivateKey) -> None:
    """A 2048-bit record is cut into 255-character strings that join back to the value."""
    value = dns_txt_value(key.public_key())
    strings = dns_txt_strings(value)
    assert len(value) > 255
    assert len(strings) == 2
    assert all(len(s) <= 255 for s in strings)
    assert "".join(strings) == value
    assert dns_txt_strings("v=DKIM1; k=rsa; p=AB") == ["v=DKIM1; k=rsa; p=AB"]


@pytest.mark.parametrize(
    ("domain", "selector"),
    [("../etc", "gc1"), ("example.com", "../x"), ("localhost", "gc1"), ("a/b.example", "gc1")],
)
def test_key_path_refuses_what_is_not_a_dns_name(domain: str, selector: str) -> None:
    """A domain or selector that is not a DNS name cannot name a file outside the directory."""
    with pytest.raises(ConfigError):
        key_path(Path("/keys"), domain=domain, selector=selector)


def test_key_file_is_owner_only_and_not_overwritten(tmp_path: Path) -> None:
    """write_key makes a 0600 file and refuses to replace it unless asked."""
    path = key_path(tmp_path / "keys", domain="anaben.example", selector="gc1")
    write_key(path, generate_key(1024))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="exists"):
        write_key(path, generate_key(1024))
    write_key(path, generate_key(1024), overwrite=True)


def test_signature_is_byte_for_byte_dkimpys(
    key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our header (OpenSSL RSA) equals dkim.sign's (pure-Python RSA) for the same time."""
    monkeypatch.setattr(dkim, "time", types.SimpleNamespace(time=lambda: NOW))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    expected = dkim.sign(
        MESSAGE,
        b"gc1",
        b"anaben.example",
        pem,
        include_headers=[h.encode() for h in SIGNED_HEADERS] * 2,
        canonicalize=(b"relaxed", b"simple"),
    )
    ours = signature_header(MESSAGE, key=key, domain="anaben.example", selector="gc1", now=NOW)
    assert ours == expected


def test_signed_message_verifies_and_tampering_fails(
    key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    """dkimpy verifies the signature; a changed header, a body change or an added
    List-Unsubscribe-Post or second Subject breaks it (oversigned headers)."""
    write_key(key_path(tmp_path, domain="anaben.example", selector="gc1"), key)
    signed = DkimSigner(tmp_path).sign(MESSAGE, domain="AnaBen.example")
    dns = _dns(key, "gc1._domainkey.anaben.example.")
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple;")
    assert dkim.verify(signed, dnsfunc=dns)
    headers, body = signed.split(b"\r\n\r\n", 1)
    for tampered in (
        signed.replace(b"Subject: Save the date", b"Subject: Save the dates"),
        signed.replace(b"see you at", b"see you near"),
        headers + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n" + body,
        b"Subject: Pay this invoice\r\n" + signed,
    ):
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_domain_without_a_key_is_sent_unsigned(tmp_path: Path) -> None:
    """No key file for the From domain (or no domain name at all): the message is unchanged."""
    signer = DkimSigner(tmp_path)
    assert signer.sign(MESSAGE, domain="anaben.example") is MESSAGE
    assert signer.sign(MESSAGE, domain="localhost") is MESSAGE


def test_unreadable_key_names_the_file_not_its_content(tmp_path: Path) -> None:
    """A broken key file is a ConfigError naming the file, without quoting what is in it."""
    path = key_path(tmp_path, domain="anaben.example", selector="gc1")
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as caught:
        DkimSigner(tmp_path).sign(MESSAGE, domain="anaben.example")
    assert str(path) in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)


def test_parsed_key_is_kept_per_domain(key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    """The key file is read once: removing it afterwards does not stop signing."""
    path = key_path(tmp_path, domain="anaben.example", selector="gc1")
    write_key(path, key)
    signer = DkimSigner(tmp_path)
    assert signer.key_for("anaben.example") is not None
    path.unlink()
    assert signer.key_for("ANABEN.example") is not None
