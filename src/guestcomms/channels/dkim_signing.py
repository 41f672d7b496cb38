"""DKIM signing (RFC 6376) of the email the SMTP provider sends, one RSA key per sending domain.

Keys are PEM files in one directory (``GUESTCOMMS_DKIM_KEYS_DIR``), named
``<domain>.<selector>.pem``; the selector in use is ``GUESTCOMMS_DKIM_SELECTOR``, so a key is
rotated by creating one under a new selector, publishing it and switching the setting
(docs/operations.md, "DKIM"). ``guestcomms dkim keygen`` writes a key with :func:`write_key`
and prints the TXT record of :func:`dns_txt_value`.

Signatures are ``rsa-sha256`` with ``relaxed/simple`` canonicalization. The header list
``h=`` names every header of :data:`SIGNED_HEADERS` twice, whether or not the message has
it: a header listed but absent is signed as empty, and the second listing signs the absence
of a second instance, so nobody further along can add a List-Unsubscribe to a message that
had none, nor a second From or Subject above ours, without breaking the signature.

dkimpy parses, canonicalizes and hashes the message; the RSA operation itself is OpenSSL's
(``cryptography``), because dkimpy's pure-Python RSA costs about 7 ms per 2048-bit signature
against 0.7 ms. The header is byte for byte what ``dkim.sign`` gives for the same time and
headers (tests/unit/test_dkim_signing.py checks it), about 0.8 ms per message in all.

Private keys are read only here and never logged: errors name the file, not its content.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from pathlib import Path

import dkim  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]

from guestcomms.errors import ConfigError

__all__ = [
    "DEFAULT_SELECTOR",
    "SIGNED_HEADERS",
    "DkimSigner",
    "dns_record_name",
    "dns_txt_strings",
    "dns_txt_value",
    "generate_key",
    "write_key",
]

DEFAULT_SELECTOR = "gc1"
DEFAULT_KEY_BITS = 2048
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
# each name twice: see the module docstring (absent headers and second instances are signed)
_H_TAG = tuple(name.lower().encode() for name in SIGNED_HEADERS) * 2
_CANONICALIZATION = b"relaxed/simple"
_POLICY = CanonicalizationPolicy.from_c_value(_CANONICALIZATION)
_HEADER_NAME = b"DKIM-Signature"
_TXT_STRING_MAX = 255  # bytes per character-string in a DNS TXT record (RFC 1035)
_MISS_RECHECK_SECONDS = 60.0  # a domain without a key is looked for again after this
# one DNS label: a key's domain and selector become a file name, so nothing else is allowed
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})+")
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def key_path(keys_dir: Path, *, domain: str, selector: str) -> Path:
    """The key file of ``domain`` and ``selector``; ``ConfigError`` if either is not a DNS
    name (which also keeps the file inside ``keys_dir``)."""
    domain = domain.lower()
    if not _DOMAIN.fullmatch(domain):
        raise ConfigError(f"dkim: not a domain name: {domain!r}")
    if not _SELECTOR.fullmatch(selector):
        raise ConfigError(f"dkim: not a valid selector: {selector!r}")
    return keys_dir / f"{domain}.{selector}.pem"


def dns_record_name(*, domain: str, selector: str) -> str:
    """The name the TXT record is published under: ``<selector>._domainkey.<domain>``."""
    return f"{selector}._domainkey.{domain.lower()}"


def dns_txt_value(public_key: rsa.RSAPublicKey) -> str:
    """The TXT record's text: ``v=DKIM1; k=rsa; p=<base64 DER SubjectPublicKeyInfo>``."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"


def dns_txt_strings(value: str) -> list[str]:
    """``value`` cut into the at most 255-character strings one TXT record is made of
    (a 2048-bit key's record is longer); resolvers join them back without separators."""
    return [value[i : i + _TXT_STRING_MAX] for i in range(0, len(value), _TXT_STRING_MAX)]


def generate_key(bits: int = DEFAULT_KEY_BITS) -> rsa.RSAPrivateKey:
    """A new RSA key; ``ConfigError`` below 1024 bits (verifiers refuse smaller keys)."""
    if bits < 1024:
        raise ConfigError(f"dkim: a key needs at least 1024 bits, not {bits}")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def write_key(path: Path, key: rsa.RSAPrivateKey, *, overwrite: bool = False) -> None:
    """Store ``key`` as unencrypted PKCS#8 PEM, readable by its owner only.

    Creates the directory (mode 0700) if needed. ``ConfigError`` if the file exists and
    ``overwrite`` is false, or it cannot be written.
    """
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(f"dkim: {path} exists (--force replaces it)") from None
    except OSError as e:
        raise ConfigError(f"dkim: cannot write {path}: {e.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, 0o600)  # a replaced file keeps its old mode otherwise
        file.write(pem)


def _read_key(path: Path) -> rsa.RSAPrivateKey | None:
    """The key in ``path``, None if there is no such file; ``ConfigError`` if unusable."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"dkim: cannot read {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # the parser's message could quote the key: name the file only
        raise ConfigError(f"dkim: {path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"dkim: {path} is not an RSA key")
    return key


class DkimSigner:
    """Signs messages for every domain that has a key under the configured selector.

    Each domain's key is read and parsed once and kept; a domain without a key file is
    looked for again after a minute, so a key created with ``dkim keygen`` is picked up
    without a restart. One signer serves every send of a provider (single event loop).
    """

    def __init__(self, keys_dir: Path, *, selector: str = DEFAULT_SELECTOR) -> None:
        """Sign with the keys in ``keys_dir`` under ``selector``; nothing is read yet."""
        if not _SELECTOR.fullmatch(selector):
            raise ConfigError(f"dkim: not a valid selector: {selector!r}")
        self.keys_dir = keys_dir
        self.selector = selector
        self._keys: dict[str, tuple[rsa.RSAPrivateKey | None, float]] = {}

    def key_for(self, domain: str) -> rsa.RSAPrivateKey | None:
        """The parsed key of ``domain``, or None if it has none (or is no domain name, as
        ``localhost``). ``ConfigError`` if the key file exists but is unusable."""
        domain = domain.lower()
        cached = self._keys.get(domain)
        now = time.monotonic()
        if cached is not None and (cached[0] is not None or now < cached[1]):
            return cached[0]
        if not _DOMAIN.fullmatch(domain):
            return None
        key = _read_key(key_path(self.keys_dir, domain=domain, selector=self.selector))
        self._keys[domain] = (key, now + _MISS_RECHECK_SECONDS)
        return key

    def sign(self, message: bytes, *, domain: str) -> bytes:
        """``message`` with a DKIM-Signature header on top if ``domain`` has a key, else
        ``message`` unchanged. ``ConfigError`` as :meth:`key_for`; ``ValueError`` if the
        message cannot be parsed."""
        key = self.key_for(domain)
        if key is None:
            return message
        return (
            signature_header(
                message,
                key=key,
                domain=domain.lower(),
                selector=self.selector,
                now=int(time.time()),
            )
            + message
        )


def signature_header(
    message: bytes, *, key: rsa.RSAPrivateKey, domain: str, selector: str, now: int
) -> bytes:
    """The ``DKIM-Signature: ...`` header line (folded, ending in CRLF) for ``message``.

    This is ``dkim.DKIM.sign`` and its ``gen_header`` with the RSA step done by OpenSSL;
    keep it in step with dkimpy (the unit test compares the two byte for byte).
    """
    try:
        parsed = dkim.DKIM(message)
    except dkim.DKIMException as e:
        raise ValueError(f"dkim: cannot parse the message: {e}") from e
    body_hash = hashlib.sha256(_POLICY.canonicalize_body(parsed.body)).digest()
    domain_bytes = domain.encode("ascii")
    fields = [
        (b"v", b"1"),
        (b"a", b"rsa-sha256"),
        (b"c", _CANONICALIZATION),
        (b"d", domain_bytes),
        (b"i", b"@" + domain_bytes),
        (b"q", b"dns/txt"),
        (b"s", selector.encode("ascii")),
        (b"t", str(now).encode("ascii")),
        (b"h", b" : ".join(_H_TAG)),
        (b"bh", base64.b64encode(body_hash)),
        (b"b", b"0" * 60),  # as dkimpy: makes b= fold onto its own line, then emptied
    ]
    unsigned = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(_HEADER_NAME))
    unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher,
        _POLICY,
        _POLICY.canonicalize_headers(parsed.headers),
        _H_TAG,
        (_HEADER_NAME, b" " + unsigned),
        dict(fields),
    )
    signature = key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    fields[-1] = (b"b", base64.b64encode(signature))
    value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
    folded: bytes = dkim.fold(value, namelen=len(_HEADER_NAME), linesep=b"\r\n")
    return _HEADER_NAME + b": " + folded
