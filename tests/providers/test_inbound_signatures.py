"""Inbound webhook verification: published vectors, the reference libraries, tampering.

Standard Webhooks is checked against the published vectors and the ``standardwebhooks``
package as the other side; Twilio against its published vectors and the ``twilio`` package's
RequestValidator; SendGrid, SES and Mailgun with keys and signatures made here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from standardwebhooks.webhooks import Webhook
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped]

from guestcomms.channels.events import InboundRequest, InboundSignatureError
from guestcomms.channels.inbound import PARSERS, mailgun, resend, sendgrid, ses, vonage
from guestcomms.channels.inbound.signing import (
    sign_standard_webhook,
    twilio_signature,
    verify_shared_secret,
    verify_standard_webhook,
    verify_twilio_signature,
)

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "provider-events"
STANDARD = json.loads((FIXTURES / "signatures/standard_webhooks_vectors.json").read_text())
TWILIO = json.loads((FIXTURES / "signatures/twilio_request_validator_vectors.json").read_text())
SECRET = STANDARD["sign_vector"]["secret"]
FORM = "application/x-www-form-urlencoded"
UTC = dt.UTC


def at(seconds: float) -> dt.datetime:
    """The aware datetime for a Unix time."""
    return dt.datetime.fromtimestamp(seconds, tz=UTC)


def signed_request(body: bytes, *, timestamp: int, prefix: str = "webhook") -> InboundRequest:
    """A request signed with SECRET under the given header family."""
    signature = sign_standard_webhook(secret=SECRET, msg_id="msg_1", timestamp=timestamp, body=body)
    headers = {f"{prefix}-id": "msg_1", f"{prefix}-timestamp": str(timestamp)}
    headers[f"{prefix}-signature"] = signature
    return InboundRequest(method="POST", url="https://h/x", headers=headers, body=body)


# -- Standard Webhooks ---------------------------------------------------------------------------


def test_standard_webhooks_published_sign_vector() -> None:
    """Our signer reproduces the published vector."""
    v = STANDARD["sign_vector"]
    body = v["payload"].encode()
    got = sign_standard_webhook(
        secret=SECRET, msg_id=v["msg_id"], timestamp=v["timestamp"], body=body
    )
    assert got == v["expected_signature"]


def test_standard_webhooks_vector_verifies_among_decoys() -> None:
    """The vector verifies inside a space-separated header of decoys; v2 entries are ignored."""
    v = STANDARD["sign_vector"]
    header = " ".join([*STANDARD["multi_signature_header_decoys"], v["expected_signature"]])
    headers = {"webhook-id": v["msg_id"], "webhook-timestamp": str(v["timestamp"])}
    request = InboundRequest(
        method="POST",
        url="https://h/x",
        headers={**headers, "webhook-signature": header},
        body=v["payload"].encode(),
    )
    assert verify_standard_webhook(request, secret=SECRET, now=at(v["timestamp"])) == v["msg_id"]
    v2_only = "v2," + v["expected_signature"].split(",", 1)[1]
    for bad in (" ".join(STANDARD["multi_signature_header_decoys"]), v2_only):
        forged = InboundRequest(
            method="POST",
            url="https://h/x",
            headers={**headers, "webhook-signature": bad},
            body=v["payload"].encode(),
        )
        with pytest.raises(InboundSignatureError):
            verify_standard_webhook(forged, secret=SECRET, now=at(v["timestamp"]))


def test_spec_example_headers_are_refused_without_their_secret() -> None:
    """The spec's illustrative headers (a v1 and a v1a entry) do not verify with our secret."""
    request = InboundRequest(
        method="POST", url="https://h/x", headers=STANDARD["spec_example_headers"], body=b"{}"
    )
    now = at(int(STANDARD["spec_example_headers"]["webhook-timestamp"]))
    with pytest.raises(InboundSignatureError):
        verify_standard_webhook(request, secret=SECRET, now=now)


def test_our_signature_verifies_with_the_standardwebhooks_package() -> None:
    """The published receiver accepts what we sign (it checks against the real clock)."""
    timestamp = int(dt.datetime.now(UTC).timestamp())
    request = signed_request(b'{"hello": "world"}', timestamp=timestamp)
    assert Webhook(SECRET).verify(request.body, dict(request.headers)) == {"hello": "world"}


def test_standardwebhooks_package_signature_verifies_with_ours() -> None:
    """We accept what the published package signs."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    body = '{"guest": "Ana"}'
    signature = Webhook(SECRET).sign("msg_2", now, body)
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    request = InboundRequest(method="POST", url="https://h/x", headers=headers, body=body.encode())
    assert verify_standard_webhook(request, secret=SECRET) == "msg_2"


@pytest.mark.parametrize(
    ("change", "now_offset"),
    [
        ("body", 0),
        ("secret", 0),
        (None, -301),  # our clock is 301 s behind: the timestamp is too new
        (None, 301),  # our clock is 301 s ahead: the timestamp is too old
        ("no-id", 0),
        ("no-timestamp", 0),
        ("no-signature", 0),
    ],
)
def test_standard_webhooks_rejects_tampering(change: str | None, now_offset: int) -> None:
    """A changed body, another secret, a timestamp outside 5 minutes or a missing header fail."""
    timestamp = 1_700_000_000
    request = signed_request(b'{"rsvp": "yes"}', timestamp=timestamp)
    headers = dict(request.headers)
    body, secret = request.body, SECRET
    if change == "body":
        body = b'{"rsvp": "no"}'
    elif change == "secret":
        secret = "whsec_" + base64.b64encode(b"another secret").decode()
    elif change is not None:
        del headers[f"webhook-{change.removeprefix('no-')}"]
    tampered = InboundRequest(method="POST", url=request.url, headers=headers, body=body)
    with pytest.raises(InboundSignatureError):
        verify_standard_webhook(tampered, secret=secret, now=at(timestamp + now_offset))


def test_resend_accepts_svix_headers_and_uses_svix_id() -> None:
    """Resend's svix-* headers carry the same scheme; the svix-id becomes the event id."""
    body = (FIXTURES / "resend/email.delivered.json").read_bytes()
    request = signed_request(body, timestamp=1_700_000_000, prefix="svix")
    resend.verify(request, secret=SECRET, now=at(1_700_000_000))
    assert resend.parse(request)[0].event_id == "msg_1"
    with pytest.raises(InboundSignatureError):
        resend.verify(request, secret=SECRET, now=at(1_700_000_000 + 600))


# -- Twilio --------------------------------------------------------------------------------------


def twilio_request(url: str, *, params: list[tuple[str, str]], signature: str) -> InboundRequest:
    """A Twilio form POST to ``url`` carrying ``params`` and ``signature``."""
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    return InboundRequest(method="POST", url=url, headers=headers, body=urlencode(params).encode())


def test_twilio_published_vector() -> None:
    """The published vector's signature is ours, and the request verifies."""
    params = list(TWILIO["params"].items())
    expected = TWILIO["expected_signature"]
    assert twilio_signature(auth_token="12345", url=TWILIO["url"], params=params) == expected
    verify_twilio_signature(
        twilio_request(TWILIO["url"], params=params, signature=expected), auth_token="12345"
    )


PORT_URLS = {  # each published variant's key -> the URL the request arrived at
    "https://mycompany.com:1234/myapp.php?foo=1&bar=2 validates with": (
        "https://mycompany.com:1234/myapp.php?foo=1&bar=2"
    ),
    "http://mycompany.com:1234/myapp.php?foo=1&bar=2 (port kept)": (
        "http://mycompany.com:1234/myapp.php?foo=1&bar=2"
    ),
    "https URL with :443 added": "https://mycompany.com/myapp.php?foo=1&bar=2",
    "http URL with :80 added": "http://mycompany.com/myapp.php?foo=1&bar=2",
}


@pytest.mark.parametrize("variant", sorted(PORT_URLS))
def test_twilio_port_variants(variant: str) -> None:
    """Twilio signs with or without the port; both forms verify, as RequestValidator allows."""
    signature = TWILIO["port_variants"][variant]
    request = twilio_request(
        PORT_URLS[variant], params=list(TWILIO["params"].items()), signature=signature
    )
    verify_twilio_signature(request, auth_token="12345")


def test_twilio_duplicate_params_vector() -> None:
    """Repeated parameter names sign as the published vector says."""
    dup = TWILIO["duplicate_params"]
    params = [tuple(p) for p in dup["params_multi"]]
    got = twilio_signature(auth_token="12345", url=TWILIO["url"], params=params)
    assert got == dup["expected_signature"]


def test_twilio_json_body_vector_and_tampered_body() -> None:
    """A JSON body is covered by bodySHA256; a changed body is refused."""
    v = TWILIO["json_body"]
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": v["expected_signature"]}
    request = InboundRequest(method="POST", url=v["url"], headers=headers, body=v["body"].encode())
    verify_twilio_signature(request, auth_token="12345")
    tampered = InboundRequest(method="POST", url=v["url"], headers=headers, body=b"{}")
    with pytest.raises(InboundSignatureError):
        verify_twilio_signature(tampered, auth_token="12345")


def _ours_accepts(request: InboundRequest, token: str) -> bool:
    try:
        verify_twilio_signature(request, auth_token=token)
    except InboundSignatureError:
        return False
    return True


@pytest.mark.parametrize(
    "tamper", ["none", "param", "extra-param", "url", "token", "no-header", "sha256"]
)
def test_twilio_agrees_with_request_validator(tamper: str) -> None:
    """Our verifier and twilio's RequestValidator accept and refuse the same requests."""
    params = [("Body", "We'll be there!"), ("From", "+14155550100"), ("MessageSid", "SM1")]
    url, token, settings = "https://hooks.example/v1/inbound/twilio/org", "tok", {}
    signature = RequestValidator(token).compute_signature(url, dict(params))
    if tamper == "param":
        params[0] = ("Body", "We can't come")
    elif tamper == "extra-param":
        params.append(("To", "+14155550199"))
    elif tamper == "url":
        url += "?x=1"
    elif tamper == "token":
        token = "other"
    elif tamper == "sha256":
        signature = RequestValidator(token).compute_signature(url, dict(params), "HMAC_SHA256")
        settings = {"X-Twilio-Webhooks-Signature-Settings": "key=k1,algorithm=HMAC_SHA256"}
    request = twilio_request(
        url, params=params, signature="" if tamper == "no-header" else signature
    )
    request = InboundRequest(
        method="POST", url=url, headers={**request.headers, **settings}, body=request.body
    )
    algorithm = "HMAC_SHA256" if tamper == "sha256" else None
    reference = RequestValidator(token).validate(url, dict(params), signature, algorithm)
    assert _ours_accepts(request, token) == (reference and tamper != "no-header")
    assert _ours_accepts(request, token) == (tamper in {"none", "sha256"})


# -- SendGrid (ECDSA P-256) ----------------------------------------------------------------------


def sendgrid_request(
    key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str
) -> InboundRequest:
    """A SendGrid event POST signed with ``key`` over timestamp + body."""
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        sendgrid.SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        sendgrid.TIMESTAMP_HEADER: timestamp,
    }
    return InboundRequest(method="POST", url="https://h/x", headers=headers, body=body)


def test_sendgrid_ecdsa_signature_verifies_and_tampering_is_refused() -> None:
    """A P-256 signature verifies with the base64 DER (or PEM) public key; tampering does not."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secret, now = base64.b64encode(der).decode(), at(1_600_000_000)
    body = (FIXTURES / "sendgrid/delivered.json").read_bytes()
    request = sendgrid_request(key, body=body, timestamp="1600000000")
    sendgrid.verify(request, secret=secret, now=now)
    sendgrid.verify(request, secret=pem.decode(), now=now)
    tampered = InboundRequest(
        method="POST",
        url=request.url,
        headers=request.headers,
        body=body.replace(b"delivered", b"bounce"),
    )
    other = base64.b64encode(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    unsigned = InboundRequest(method="POST", url=request.url, body=body)
    for bad, bad_secret, bad_now in [
        (tampered, secret, now),
        (request, other, now),
        (request, secret, at(1_600_000_000 + 301)),
        (unsigned, secret, now),
    ]:
        with pytest.raises(InboundSignatureError):
            sendgrid.verify(bad, secret=bad_secret, now=bad_now)


# -- Mailgun (HMAC-SHA256 of timestamp + token) --------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in (FIXTURES / "mailgun").glob("*.json")))
def test_mailgun_fixture_signatures_verify(name: str) -> None:
    """The captured payloads were signed with TEST_WEBHOOK_SIGNING_KEY and verify with it."""
    body = (FIXTURES / "mailgun" / name).read_bytes()
    now = at(int(json.loads(body)["signature"]["timestamp"]))
    request = InboundRequest(method="POST", url="https://h/x", body=body)
    mailgun.verify(request, secret="TEST_WEBHOOK_SIGNING_KEY", now=now)


@pytest.mark.parametrize("field", ["signature", "token", "timestamp", "key", "stale", "missing"])
def test_mailgun_tampered_signature_is_refused(field: str) -> None:
    """A changed signature, token or timestamp, another key, a stale or no block is refused."""
    payload: dict[str, Any] = json.loads((FIXTURES / "mailgun/delivered.json").read_bytes())
    now, key = at(int(payload["signature"]["timestamp"])), "TEST_WEBHOOK_SIGNING_KEY"
    if field in {"signature", "token"}:
        payload["signature"][field] = "0" + payload["signature"][field][1:]
    elif field == "timestamp":
        payload["signature"]["timestamp"] = str(int(payload["signature"]["timestamp"]) + 1)
    elif field == "key":
        key = "another-key"
    elif field == "stale":
        now += dt.timedelta(minutes=6)
    else:
        del payload["signature"]
    request = InboundRequest(method="POST", url="https://h/x", body=json.dumps(payload).encode())
    with pytest.raises(InboundSignatureError):
        mailgun.verify(request, secret=key, now=now)


# -- Vonage (sig parameter) ----------------------------------------------------------------------

# Vonage's Python SDK test vectors: params a=1, b=2, timestamp=1461605396, secret "secret".
VONAGE_VECTORS = {
    "md5hash": "6af838ef94998832dbfc29020b564830",
    "md5": "c15c21ced558c93a226c305f58f902f2",
    "sha1": "3e19a4e6880fdc2c1426bfd0587c98b9532f0210",
    "sha256": "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24",
    "sha512": "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c"
    "63ed26ec9702168781b6edcf1633db8ff95af9341701004eec3fcf9550572ee8",
}
VONAGE_PARAMS = {"a": "1", "b": "2", "timestamp": "1461605396"}


@pytest.mark.parametrize("method", sorted(VONAGE_VECTORS))
def test_vonage_sdk_vectors(method: str) -> None:
    """Every Vonage signature method reproduces the SDK's vector and verifies as a request."""
    sig = VONAGE_VECTORS[method]
    assert vonage.signature_for(VONAGE_PARAMS, secret="secret", method=method) == sig
    query = urlencode({**VONAGE_PARAMS, "sig": sig.upper()})
    request = InboundRequest(method="GET", url=f"https://h/x?{query}")
    vonage.verify(request, secret=f"{method}:secret", now=at(1461605396))


def test_vonage_refuses_tampering_downgrade_and_staleness() -> None:
    """A changed parameter, an md5 signature when sha256 is configured, or an old one fail."""
    now = at(1461605396)
    good = urlencode({**VONAGE_PARAMS, "sig": VONAGE_VECTORS["sha256"]})
    changed = good.replace("a=1", "a=9")
    downgraded = urlencode({**VONAGE_PARAMS, "sig": VONAGE_VECTORS["md5hash"]})
    cases = [(changed, now), (downgraded, now), (good, now + dt.timedelta(minutes=6))]
    cases.append((urlencode(VONAGE_PARAMS), now))
    for query, when in cases:
        with pytest.raises(InboundSignatureError):
            vonage.verify(
                InboundRequest(method="GET", url=f"https://h/x?{query}"),
                secret="sha256:secret",
                now=when,
            )


# -- SES through SNS (RSA over the canonical string) ---------------------------------------------

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:1234567890:SES_Events"


@pytest.fixture(scope="module")
def sns_key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate standing in for SNS's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    start = dt.datetime(2018, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sns_request(key: rsa.RSAPrivateKey, *, version: str = "1", **changes: str) -> InboundRequest:
    """The bounce fixture's envelope, signed as SNS would sign it, then ``changes`` applied."""
    envelope = json.loads((FIXTURES / "amazon_ses/sns_bounce_permanent.json").read_bytes())
    envelope.update(SignatureVersion=version, SigningCertURL=CERT_URL, TopicArn=TOPIC)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1
    signature = key.sign(ses.canonical_string(envelope), padding.PKCS1v15(), algorithm)
    envelope.update(Signature=base64.b64encode(signature).decode(), **changes)
    return InboundRequest(method="POST", url="https://h/x", body=json.dumps(envelope).encode())


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_signature_verifies_with_the_supplied_certificate(
    sns_key_and_cert: tuple[rsa.RSAPrivateKey, bytes], version: str
) -> None:
    """SignatureVersion 1 (SHA1) and 2 (SHA256) verify against the certificate we are given."""
    key, pem = sns_key_and_cert
    asked: list[str] = []

    def certificates(url: str) -> bytes:
        asked.append(url)
        return pem

    ses.verify(sns_request(key, version=version), secret=TOPIC, certificates=certificates)
    assert asked == [CERT_URL]


def test_sns_refuses_tampering_other_topics_and_foreign_certificates(
    sns_key_and_cert: tuple[rsa.RSAPrivateKey, bytes],
) -> None:
    """A changed Message, another topic, a non-AWS certificate URL or no source is refused."""
    key, pem = sns_key_and_cert
    cases: list[tuple[InboundRequest, Any]] = [
        (sns_request(key, Message='{"notificationType": "Delivery"}'), lambda _url: pem),
        (sns_request(key, TopicArn="arn:aws:sns:us-east-1:666:theirs"), lambda _url: pem),
        (sns_request(key, SigningCertURL="https://evil.example/cert.pem"), lambda _url: pem),
        (sns_request(key), None),
    ]
    for request, certificates in cases:
        with pytest.raises(InboundSignatureError):
            ses.verify(request, secret=TOPIC, certificates=certificates)


# -- Shared secrets (Postmark, Brevo) and failing closed -----------------------------------------


@pytest.mark.parametrize(
    ("headers", "query", "accepted"),
    [
        ({"Authorization": "Basic " + base64.b64encode(b"hook:s3cret").decode()}, "", True),
        ({"Authorization": "Basic " + base64.b64encode(b"hook:wrong").decode()}, "", False),
        ({"Authorization": "Bearer hook:s3cret"}, "", True),
        ({}, "?token=hook:s3cret", True),
        ({}, "?token=nope", False),
        ({}, "", False),
    ],
)
def test_shared_secret_credentials(headers: dict[str, str], query: str, accepted: bool) -> None:
    """Basic credentials, a bearer token or a token parameter must equal the secret."""
    request = InboundRequest(method="POST", url=f"https://h/x{query}", headers=headers, body=b"{}")
    if accepted:
        verify_shared_secret(request, secret="hook:s3cret")
    else:
        with pytest.raises(InboundSignatureError):
            verify_shared_secret(request, secret="hook:s3cret")


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_provider_fails_closed_without_a_secret(name: str) -> None:
    """With no secret configured, no request verifies."""
    body = hashlib.sha256(b"anything").hexdigest().encode()
    with pytest.raises(InboundSignatureError):
        PARSERS[name].verify(
            InboundRequest(method="POST", url="https://h/x", body=body), secret=None
        )
