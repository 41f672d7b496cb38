"""Signature schemes shared by several providers, and the checks every verifier uses.

- Standard Webhooks (https://www.standardwebhooks.com/), also used by Svix and so by Resend:
  headers ``webhook-id``, ``webhook-timestamp``, ``webhook-signature`` (Svix: ``svix-*``); the
  signature is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the
  base64-decoded ``whsec_...`` secret; several signatures may be sent space-separated (secret
  rotation), and entries of other versions are ignored. Timestamps more than
  :data:`TOLERANCE_SECONDS` away from now, either way, are refused.
- Twilio ``X-Twilio-Signature``: base64 HMAC-SHA1 (or SHA-256 when
  ``X-Twilio-Webhooks-Signature-Settings`` says ``algorithm=HMAC_SHA256``) keyed with the auth
  token, over the full URL followed by every form parameter as name+value, names sorted. A JSON
  body is instead covered by the ``bodySHA256`` query parameter (hex SHA-256 of the body).
  Twilio signs the URL with or without the default port inconsistently, so both are tried, as
  the twilio package's ``RequestValidator`` does.
- Shared-secret credentials for providers that do not sign (Postmark, Brevo): HTTP Basic
  credentials, a Bearer token, or a ``token`` query parameter.

Every comparison is constant-time. Every failure raises :class:`InboundSignatureError`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit, urlunsplit

from guestcomms.channels.events import InboundRequest, InboundSignatureError

TOLERANCE_SECONDS = 5 * 60  # how far a signed timestamp may be from our clock, either way
WHSEC_PREFIX = "whsec_"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TWILIO_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
_TWILIO_HASHES = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
_DEFAULT_PORTS = {"https": 443, "http": 80}


def constant_time_equals(a: str | bytes, b: str | bytes) -> bool:
    """Whether ``a`` equals ``b``, in time that does not depend on where they differ."""
    a_bytes = a.encode("utf-8") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


def require_secret(secret: str | None, provider: str) -> str:
    """``secret``, or InboundSignatureError when none is configured (we never accept unsigned)."""
    if not secret:
        raise InboundSignatureError(f"No {provider} webhook secret is configured.")
    return secret


def check_timestamp(
    timestamp: str | float,
    *,
    now: datetime | None = None,
    tolerance_seconds: int = TOLERANCE_SECONDS,
) -> int:
    """The signed Unix ``timestamp`` as an int; raises when unreadable or outside tolerance."""
    try:
        seconds = int(float(timestamp))
    except (TypeError, ValueError) as e:
        raise InboundSignatureError("The signature timestamp is not a number.") from e
    current = (now or datetime.now(UTC)).timestamp()
    if seconds < current - tolerance_seconds:
        raise InboundSignatureError("The signature timestamp is too old.")
    if seconds > current + tolerance_seconds:
        raise InboundSignatureError("The signature timestamp is in the future.")
    return seconds


# -- Standard Webhooks / Svix ------------------------------------------------------------------


def decode_whsec(secret: str) -> bytes:
    """The HMAC key inside a ``whsec_<base64>`` secret (the prefix is optional)."""
    encoded = secret.removeprefix(WHSEC_PREFIX)
    try:
        # Secrets are sometimes published without padding; extra padding is ignored.
        key = base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError) as e:
        raise InboundSignatureError("The webhook secret is not base64.") from e
    if not key:
        raise InboundSignatureError("The webhook secret is empty.")
    return key


def sign_standard_webhook(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of ``body`` for a ``webhook-signature`` header."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(decode_whsec(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_standard_webhook(
    request: InboundRequest,
    *,
    secret: str,
    now: datetime | None = None,
    prefixes: Iterable[str] = ("webhook",),
) -> str:
    """Verify a Standard Webhooks signature; return the message id (``webhook-id``).

    ``prefixes`` names the header families tried in order (``("webhook", "svix")`` for Resend):
    the first family whose three headers are all present is used.
    """
    for prefix in prefixes:
        msg_id = request.headers.get(f"{prefix}-id")
        timestamp = request.headers.get(f"{prefix}-timestamp")
        signatures = request.headers.get(f"{prefix}-signature")
        if msg_id and timestamp and signatures:
            break
    else:
        raise InboundSignatureError("The webhook signature headers are missing.")
    seconds = check_timestamp(timestamp, now=now)
    expected = sign_standard_webhook(
        secret=secret, msg_id=msg_id, timestamp=seconds, body=request.body
    )
    for candidate in signatures.split():
        version, _, _value = candidate.partition(",")
        # Only v1 (symmetric) is defined for us; v1a (asymmetric) and others are skipped.
        if version == "v1" and constant_time_equals(candidate, expected):
            return msg_id
    raise InboundSignatureError("No webhook signature matches.")


# -- Twilio ------------------------------------------------------------------------------------


def twilio_signature(
    *,
    auth_token: str,
    url: str,
    params: Iterable[tuple[str, str]] = (),
    algorithm: str = "HMAC_SHA1",
) -> str:
    """The X-Twilio-Signature Twilio computes for ``url`` and the form ``params``.

    Names are sorted, and each name's distinct values are sorted, as twilio's RequestValidator
    does, so a repeated identical pair counts once.
    """
    hash_function = _TWILIO_HASHES.get(algorithm.upper())
    if hash_function is None:
        raise InboundSignatureError(f"Unsupported Twilio signature algorithm {algorithm!r}.")
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    data = url + "".join(name + v for name in sorted(values) for v in sorted(values[name]))
    digest = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hash_function).digest()
    return base64.b64encode(digest).decode("ascii")


def _url_port_variants(url: str) -> tuple[str, str]:
    """``url`` without and with its scheme's default port (as Twilio may sign either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.username is not None or ":" in host:
        return url, url  # credentials or IPv6 in the URL: leave it exactly as received
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    without = urlunsplit(parts._replace(netloc=host)) if parts.port else url
    with_port = urlunsplit(parts._replace(netloc=f"{host}:{port}")) if port else url
    return without, with_port


def _twilio_algorithm(request: InboundRequest) -> str:
    for part in request.headers.get(TWILIO_SETTINGS_HEADER, "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            return value.strip()
    return "HMAC_SHA1"


def verify_twilio_signature(request: InboundRequest, *, auth_token: str) -> None:
    """Verify X-Twilio-Signature for a form-encoded or a JSON (``bodySHA256``) request."""
    signature = request.headers.get(TWILIO_SIGNATURE_HEADER)
    if not signature:
        raise InboundSignatureError("The X-Twilio-Signature header is missing.")
    body_hashes = parse_qs(urlsplit(request.url).query).get("bodySHA256")
    params: list[tuple[str, str]] = []
    if body_hashes:
        if not constant_time_equals(hashlib.sha256(request.body).hexdigest(), body_hashes[0]):
            raise InboundSignatureError("The body does not match bodySHA256.")
    elif request.method.upper() == "POST":
        params = list(request.form.items())
    algorithm = _twilio_algorithm(request)
    for url in dict.fromkeys(_url_port_variants(request.url)):
        expected = twilio_signature(
            auth_token=auth_token, url=url, params=params, algorithm=algorithm
        )
        if constant_time_equals(expected, signature):
            return
    raise InboundSignatureError("The X-Twilio-Signature does not match.")


# -- Shared credentials (no signing scheme) -----------------------------------------------------


def verify_shared_secret(request: InboundRequest, *, secret: str) -> None:
    """Accept the request when it carries ``secret`` as credentials; raise otherwise.

    ``secret`` is ``user:password`` for HTTP Basic credentials (put in the webhook URL as
    ``https://user:password@host/...``; clients send them as an Authorization header) or a
    token, sent as ``Authorization: Bearer <token>`` or a ``token`` query parameter.
    """
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    presented: list[str] = []
    if scheme.lower() == "basic":
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            presented.append(base64.b64decode(credentials, validate=True).decode("utf-8"))
    elif scheme.lower() == "bearer":
        presented.append(credentials.strip())
    presented.extend(v for k, v in request.query.items() if k == "token")
    # Compare against every candidate so the time taken does not reveal which one was close.
    matches = [constant_time_equals(candidate, secret) for candidate in presented]
    if not any(matches):
        raise InboundSignatureError("The webhook credentials are missing or wrong.")
