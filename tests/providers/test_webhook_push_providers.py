"""The webhook, Web Push and FCM providers against the provider simulator.

Webhooks are verified as a receiver would, with the published ``standardwebhooks`` package;
Web Push bodies are decrypted with the subscriber's key and the VAPID JWT checked with the
VAPID public key; FCM's JWT assertion is checked with the service account's public key and
its access token is counted (fetched once, reused, renewed). Each provider classifies 2xx,
4xx, 429, 5xx and dropped connections.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import http_ece  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from guestcomms.channels.base import (
    CredentialsError,
    OutgoingPush,
    OutgoingWebhook,
    PermanentProviderError,
    PushSubscription,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.fcm import FCM_SCOPE, FcmProvider, ServiceAccount
from guestcomms.channels.registry import get_kind
from guestcomms.channels.simulator import ProviderSimulator, RecordedRequest
from guestcomms.channels.webhook import WebhookProvider, generate_secret
from guestcomms.channels.webpush import WebPushProvider
from guestcomms.domain.enums import Channel
from guestcomms.errors import ConfigError

TIMEOUT_SECONDS = 0.5  # the providers' request timeout in these tests
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
VAPID_SUBJECT = "mailto:ops@example.com"
PROJECT_ID = "wedding-app"


def b64url(raw: bytes) -> str:
    """Unpadded base64url, as Web Push and JWTs write it."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """A JWT's header, claims, signing input and signature."""
    header, claims, signature = token.split(".")
    return (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(claims)),
        f"{header}.{claims}".encode("ascii"),
        b64url_decode(signature),
    )


# -- webhooks ----------------------------------------------------------------------------


def make_webhook(url: str, **changes: Any) -> OutgoingWebhook:
    """A webhook for an RSVP event, signed with one fresh secret unless ``changes`` say."""
    fields: dict[str, Any] = {
        "delivery_id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "idempotency_key": f"msg_{uuid.uuid4().hex}",
        "url": url,
        "secrets": [generate_secret()],
        "event_type": "rsvp.received",
        "payload": {"contact_id": "con_123", "attending": True, "guests": 2},
    }
    return OutgoingWebhook(**{**fields, **changes})


@pytest.fixture
def webhook(session: aiohttp.ClientSession) -> WebhookProvider:
    """A webhook provider built from an (almost) empty config."""
    return WebhookProvider.from_config({"timeout_seconds": TIMEOUT_SECONDS}, session=session)


@pytest.fixture
def hook_url(simulator: ProviderSimulator) -> str:
    """The simulator's webhook receiver."""
    return f"{simulator.base_url}/hooks/rsvp"


def received(simulator: ProviderSimulator) -> RecordedRequest:
    """The one webhook the simulator received."""
    (request,) = simulator.requests_for("webhook")
    return request


async def test_webhook_verifies_with_standardwebhooks_for_each_rotated_secret(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """During a rotation both the old and the new secret verify; a third one does not."""
    old, new = generate_secret(), generate_secret()
    item = make_webhook(hook_url, secrets=[old, new])
    receipt = await webhook.send(item)
    assert receipt == SendReceipt(provider_message_id=None)
    request = received(simulator)
    headers = dict(request.headers)
    for secret in (old, new):
        envelope = Webhook(secret).verify(request.body, headers)
        assert envelope["type"] == "rsvp.received"
        assert envelope["data"] == item.payload
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", envelope["timestamp"])
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(request.body, headers)
    assert [s.split(",")[0] for s in request.headers["webhook-signature"].split(" ")] == [
        "v1",
        "v1",
    ]
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == "guestcomms"
    assert request.path == "/hooks/rsvp"


async def test_webhook_tampered_body_fails_verification(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """A body changed after signing does not verify."""
    item = make_webhook(hook_url)
    await webhook.send(item)
    request = received(simulator)
    tampered = request.body.replace(b'"guests":2', b'"guests":9')
    assert tampered != request.body
    with pytest.raises(WebhookVerificationError):
        Webhook(item.secrets[0]).verify(tampered, dict(request.headers))


async def test_webhook_id_is_the_idempotency_key_on_every_retry(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """A retried webhook carries the same webhook-id, so the receiver can deduplicate."""
    item = make_webhook(hook_url)
    simulator.inject("webhook", status=503)
    with pytest.raises(TransientProviderError):
        await webhook.send(item)
    await webhook.send(item)
    requests = simulator.requests_for("webhook")
    assert [r.headers["webhook-id"] for r in requests] == [item.idempotency_key] * 2
    for request in requests:
        Webhook(item.secrets[0]).verify(request.body, dict(request.headers))


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (400, PermanentProviderError, "400"),
        (401, PermanentProviderError, "401"),  # the receiver's auth, not our credentials
        (404, PermanentProviderError, "404"),
        (410, PermanentProviderError, "endpoint_gone"),
        (408, TransientProviderError, "408"),
        (500, TransientProviderError, "500"),
        (503, TransientProviderError, "503"),
    ],
)
async def test_webhook_classifies_statuses(
    webhook: WebhookProvider,
    simulator: ProviderSimulator,
    hook_url: str,
    status: int,
    expected: type[Exception],
    code: str,
) -> None:
    """4xx are permanent (410 says the endpoint is gone), 408 and 5xx transient."""
    simulator.inject("webhook", status=status)
    with pytest.raises(expected) as raised:
        await webhook.send(make_webhook(hook_url))
    assert type(raised.value) is expected
    assert raised.value.code == code  # type: ignore[attr-defined]


async def test_webhook_any_2xx_is_accepted(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """A 202 is as good as the simulator's 200."""
    simulator.inject("webhook", status=202, body="queued")
    assert isinstance(await webhook.send(make_webhook(hook_url)), SendReceipt)


async def test_webhook_429_honours_retry_after(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """A 429 with Retry-After: 7 is rate limited for 7 seconds."""
    simulator.inject("webhook", status=429, retry_after="7")
    with pytest.raises(RateLimitedError) as raised:
        await webhook.send(make_webhook(hook_url))
    assert raised.value.retry_after_seconds == pytest.approx(7.0)


async def test_webhook_dropped_connection_and_timeout_are_transient(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """No answer (connection closed, or too slow) is transient."""
    simulator.inject("webhook", drop_connection=True)
    with pytest.raises(TransientProviderError) as dropped:
        await webhook.send(make_webhook(hook_url))
    assert isinstance(dropped.value.__cause__, aiohttp.ClientError)
    simulator.inject("webhook", timeout=True)
    with pytest.raises(TransientProviderError) as slow:
        await webhook.send(make_webhook(hook_url))
    assert isinstance(slow.value.__cause__, TimeoutError)


async def test_webhook_does_not_follow_redirects(
    webhook: WebhookProvider, simulator: ProviderSimulator, hook_url: str
) -> None:
    """A 307 to another URL is a permanent error naming the target; it is never requested."""

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(hook_url)

    app = web.Application()
    app.router.add_post("/moved", moved)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        with pytest.raises(PermanentProviderError, match="redirect") as raised:
            await webhook.send(make_webhook(f"http://{host}:{port}/moved"))
    finally:
        await runner.cleanup()
    assert hook_url in str(raised.value)
    assert raised.value.code == "307"
    assert simulator.count("webhook") == 0


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"url": "/relative/path"}, "bad_url"),
        ({"url": "ftp://example.com/hook"}, "bad_url"),
        ({"secrets": []}, "no_secret"),
        ({"secrets": ["whsec_"]}, "bad_secret"),
    ],
)
async def test_webhook_refuses_unsendable_items_without_a_request(
    webhook: WebhookProvider, simulator: ProviderSimulator, changes: dict[str, Any], code: str
) -> None:
    """A relative or non-http URL, or a missing or empty secret, fails before any request."""
    item = make_webhook(f"{simulator.base_url}/hooks/x")
    item = dataclasses.replace(item, **changes)
    with pytest.raises(PermanentProviderError) as raised:
        await webhook.send(item)
    assert raised.value.code == code
    assert simulator.count("webhook") == 0


def test_generate_secret_is_whsec_base64_of_24_bytes() -> None:
    """Secrets are ``whsec_`` + base64 of 24 random bytes, each one new."""
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24
    assert generate_secret() != secret


def test_webhook_from_config_needs_no_settings() -> None:
    """Everything is optional; a bad timeout is a ConfigError naming it."""
    provider = WebhookProvider.from_config({}, session=None)
    assert (provider.name, provider.channel) == ("webhook", Channel.WEBHOOK)
    assert provider.capabilities.supports_idempotency_key
    with pytest.raises(ConfigError, match="timeout_seconds"):
        WebhookProvider.from_config({"timeout_seconds": -1}, session=None)


# -- Web Push ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A browser's side of a push subscription: its ECDH key and auth secret."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def subscription(self, endpoint: str) -> PushSubscription:
        """The subscription as the browser reports it (base64url keys)."""
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return PushSubscription(endpoint=endpoint, p256dh=b64url(public), auth=b64url(self.auth))

    def decrypt(self, body: bytes) -> Any:
        """The JSON notification inside an aes128gcm body."""
        plaintext = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plaintext)


@pytest.fixture
def subscriber() -> Subscriber:
    """A fresh browser key pair and auth secret."""
    return Subscriber(ec.generate_private_key(ec.SECP256R1()), os.urandom(16))


@pytest.fixture
def vapid_key() -> ec.EllipticCurvePrivateKey:
    """A fresh VAPID key pair."""
    return ec.generate_private_key(ec.SECP256R1())


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """A private key as PKCS#8 PEM text."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture
def webpush(
    vapid_key: ec.EllipticCurvePrivateKey, session: aiohttp.ClientSession
) -> WebPushProvider:
    """A Web Push provider with the test's VAPID key."""
    config = {
        "vapid_private_key": pem(vapid_key),
        "vapid_subject": VAPID_SUBJECT,
        "timeout_seconds": TIMEOUT_SECONDS,
    }
    return WebPushProvider.from_config(config, session=session)


def make_push(subscription: PushSubscription, **changes: Any) -> OutgoingPush:
    """A push notification with a link and data."""
    fields: dict[str, Any] = {
        "delivery_id": uuid.uuid4(),
        "organization_id": uuid.uuid4(),
        "idempotency_key": f"dlv-{uuid.uuid4().hex}",
        "subscription": subscription,
        "title": "Ana & Ben",
        "body": "The ceremony starts in one hour",
        "url": "https://example.com/w/ana-ben",
        "data": {"kind": "reminder"},
        "ttl_seconds": 3600,
        "urgency": "high",
    }
    return OutgoingPush(**{**fields, **changes})


async def test_webpush_payload_round_trips_through_encryption(
    webpush: WebPushProvider, simulator: ProviderSimulator, subscriber: Subscriber
) -> None:
    """The subscriber decrypts the body to our notification; headers follow RFC 8030/8188."""
    item = make_push(subscriber.subscription(f"{simulator.base_url}/push/sub-1"))
    receipt = await webpush.send(item)
    (request,) = simulator.requests_for("webpush")
    assert request.path == "/push/sub-1"
    assert subscriber.decrypt(request.body) == {
        "title": item.title,
        "body": item.body,
        "url": item.url,
        "data": {"kind": "reminder"},
    }
    assert request.headers["Content-Encoding"] == "aes128gcm"
    assert request.headers["Content-Type"] == "application/octet-stream"
    assert (request.headers["TTL"], request.headers["Urgency"]) == ("3600", "high")
    assert receipt.provider_message_id is not None
    assert re.fullmatch(f"/push/message/{UUID}", receipt.provider_message_id)


async def test_webpush_authorization_is_a_valid_vapid_jwt(
    webpush: WebPushProvider,
    simulator: ProviderSimulator,
    subscriber: Subscriber,
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    """``vapid t=<ES256 JWT>,k=<our public key>``, signed by the VAPID key, aud = origin."""
    await webpush.send(make_push(subscriber.subscription(f"{simulator.base_url}/push/s")))
    (request,) = simulator.requests_for("webpush")
    scheme, _, params = request.headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.split("=", 1) for part in params.split(","))
    public = vapid_key.public_key()
    raw_public = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert fields["k"] == b64url(raw_public) == webpush.public_key
    header, claims, signed, signature = jwt_parts(fields["t"])
    assert header == {"typ": "JWT", "alg": "ES256"}
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public.verify(utils.encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    assert claims["aud"] == simulator.base_url
    assert claims["sub"] == VAPID_SUBJECT
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600


async def test_webpush_410_means_remove_the_subscription(
    webpush: WebPushProvider, simulator: ProviderSimulator, subscriber: Subscriber
) -> None:
    """An unsubscribed endpoint's real 410 is permanent, code subscription_expired."""
    simulator.expired_push_targets.add("gone")
    item = make_push(subscriber.subscription(f"{simulator.base_url}/push/gone"))
    with pytest.raises(PermanentProviderError, match="remove the subscription") as raised:
        await webpush.send(item)
    assert raised.value.code == "subscription_expired"


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (404, PermanentProviderError, "subscription_expired"),
        (400, PermanentProviderError, "400"),
        (413, PermanentProviderError, "payload_too_large"),
        (401, CredentialsError, "401"),  # our VAPID JWT refused
        (500, TransientProviderError, "500"),
        (503, TransientProviderError, "503"),
    ],
)
async def test_webpush_classifies_statuses(
    webpush: WebPushProvider,
    simulator: ProviderSimulator,
    subscriber: Subscriber,
    status: int,
    expected: type[Exception],
    code: str,
) -> None:
    """404 like 410, 413 too large, other 4xx permanent, 5xx transient."""
    simulator.inject("webpush", status=status)
    with pytest.raises(expected) as raised:
        await webpush.send(make_push(subscriber.subscription(f"{simulator.base_url}/push/a")))
    assert type(raised.value) is expected
    assert raised.value.code == code  # type: ignore[attr-defined]


async def test_webpush_429_and_dropped_connection_are_retried(
    webpush: WebPushProvider, simulator: ProviderSimulator, subscriber: Subscriber
) -> None:
    """A 429 waits for Retry-After; a dropped connection is transient."""
    item = make_push(subscriber.subscription(f"{simulator.base_url}/push/a"))
    simulator.inject("webpush", status=429, retry_after="12")
    with pytest.raises(RateLimitedError) as limited:
        await webpush.send(item)
    assert limited.value.retry_after_seconds == pytest.approx(12.0)
    simulator.inject("webpush", drop_connection=True)
    with pytest.raises(TransientProviderError):
        await webpush.send(item)


@pytest.mark.parametrize(
    ("subscription", "changes", "code"),
    [
        (PushSubscription(endpoint="http://127.0.0.1:9/push/a"), {}, "invalid_subscription"),
        (PushSubscription(fcm_token="device-token"), {}, "invalid_subscription"),
        (None, {"body": "x" * 5000}, "payload_too_large"),
        (None, {"urgency": "urgent"}, "urgency"),
    ],
)
async def test_webpush_refuses_unsendable_items_without_a_request(
    webpush: WebPushProvider,
    simulator: ProviderSimulator,
    subscriber: Subscriber,
    subscription: PushSubscription | None,
    changes: dict[str, Any],
    code: str,
) -> None:
    """No keys, no endpoint, a body over 4 KiB or an unknown urgency fail before sending."""
    target = subscription or subscriber.subscription(f"{simulator.base_url}/push/a")
    with pytest.raises(PermanentProviderError) as raised:
        await webpush.send(make_push(target, **changes))
    assert raised.value.code == code
    assert simulator.count("webpush") == 0


async def test_webpush_accepts_a_raw_base64url_vapid_key(
    vapid_key: ec.EllipticCurvePrivateKey,
    simulator: ProviderSimulator,
    subscriber: Subscriber,
    session: aiohttp.ClientSession,
) -> None:
    """The 32-byte raw key most guides print works as well as PEM."""
    raw = vapid_key.private_numbers().private_value.to_bytes(32, "big")
    provider = WebPushProvider.from_config(
        {"vapid_private_key": b64url(raw), "vapid_subject": "https://example.com"},
        session=session,
    )
    await provider.send(make_push(subscriber.subscription(f"{simulator.base_url}/push/a")))
    assert simulator.count("webpush") == 1


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"vapid_subject": VAPID_SUBJECT}, "vapid_private_key"),
        ({"vapid_private_key": "not a key", "vapid_subject": VAPID_SUBJECT}, "vapid_private_key"),
        ({"vapid_private_key": "RSA", "vapid_subject": VAPID_SUBJECT}, "vapid_private_key"),
        ({"vapid_private_key": "EC"}, "vapid_subject"),
        ({"vapid_private_key": "EC", "vapid_subject": "ops@example.com"}, "vapid_subject"),
    ],
)
def test_webpush_config_errors_name_the_setting(
    vapid_key: ec.EllipticCurvePrivateKey,
    service_account_key: rsa.RSAPrivateKey,
    config: dict[str, str],
    named: str,
) -> None:
    """A missing or invalid key (or an RSA one) or subject is a ConfigError naming it."""
    keys = {"EC": pem(vapid_key), "RSA": pem(service_account_key)}
    resolved = {k: keys.get(v, v) for k, v in config.items()}
    with pytest.raises(ConfigError, match=named):
        WebPushProvider.from_config(resolved, session=None)


# -- Firebase Cloud Messaging ------------------------------------------------------------


@pytest.fixture(scope="module")
def service_account_key() -> rsa.RSAPrivateKey:
    """An RSA key for the fake service account (made once: RSA generation is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def service_account(service_account_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """A service-account JSON as Firebase hands it out."""
    return {
        "type": "service_account",
        "project_id": PROJECT_ID,
        "private_key_id": "key-1",
        "private_key": pem(service_account_key),
        "client_email": f"push@{PROJECT_ID}.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """The FCM provider's clock."""
    return FakeClock()


@pytest.fixture(scope="module")
def parsed_account(service_account: dict[str, str]) -> ServiceAccount:
    """The service account parsed once (checking an RSA key takes a tenth of a second)."""
    return ServiceAccount.from_info(service_account)


@pytest.fixture
def fcm(
    parsed_account: ServiceAccount,
    simulator: ProviderSimulator,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> FcmProvider:
    """An FCM provider aimed at the simulator, on the fake clock."""
    return FcmProvider(
        service_account=dataclasses.replace(
            parsed_account, token_uri=f"{simulator.base_url}/token"
        ),
        clock=clock,
        base_url=simulator.base_url,
        session=session,
        timeout_seconds=TIMEOUT_SECONDS,
    )


def make_fcm_push(**changes: Any) -> OutgoingPush:
    """A push to an FCM device token."""
    return make_push(PushSubscription(fcm_token="device-token-1"), **changes)


def sends(simulator: ProviderSimulator) -> list[RecordedRequest]:
    """The messages:send requests (the route shares its name with the provider)."""
    return [r for r in simulator.requests if r.route == "fcm"]


async def test_fcm_sends_the_documented_request_shape(
    service_account: dict[str, str], simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """messages:send with the Bearer token and the v1 message; the name is the receipt id."""
    config = {
        "service_account_json": json.dumps(service_account),
        "token_uri": f"{simulator.base_url}/token",
        "base_url": simulator.base_url,
    }
    provider = FcmProvider.from_config(config, session=session)
    item = make_fcm_push()
    receipt = await provider.send(item)
    (request,) = sends(simulator)
    assert request.path == f"/v1/projects/{PROJECT_ID}/messages:send"
    assert request.headers["Authorization"] == f"Bearer {simulator.credentials.fcm_access_token}"
    message = request.json["message"]
    assert message["token"] == "device-token-1"
    assert message["notification"] == {"title": item.title, "body": item.body}
    assert message["data"] == {"kind": "reminder", "url": item.url}
    assert message["webpush"]["fcm_options"] == {"link": item.url}
    assert message["android"] == {"ttl": "3600s", "priority": "HIGH"}
    assert receipt.provider_message_id is not None
    assert re.fullmatch(f"projects/{PROJECT_ID}/messages/{UUID}", receipt.provider_message_id)


async def test_fcm_assertion_is_an_rs256_jwt_for_the_token_uri(
    fcm: FcmProvider, simulator: ProviderSimulator, service_account_key: rsa.RSAPrivateKey
) -> None:
    """The token request is a jwt-bearer grant whose JWT the account's public key verifies."""
    await fcm.send(make_fcm_push())
    (request,) = simulator.requests_for("fcm.token")
    assert request.form is not None
    assert request.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    header, claims, signed, signature = jwt_parts(request.form["assertion"])
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "key-1"}
    service_account_key.public_key().verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    assert claims["iss"] == f"push@{PROJECT_ID}.iam.gserviceaccount.com"
    assert claims["scope"] == FCM_SCOPE
    assert claims["aud"] == f"{simulator.base_url}/token"
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 5


async def test_fcm_fetches_one_token_for_concurrent_sends(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """Twenty sends at once share one token request."""
    results = await fcm.send_batch([make_fcm_push() for _ in range(20)])
    assert all(isinstance(r, SendReceipt) for r in results)
    assert simulator.count("fcm.token") == 1
    assert len(sends(simulator)) == 20


async def test_fcm_reuses_the_token_until_shortly_before_expiry(
    fcm: FcmProvider, simulator: ProviderSimulator, clock: FakeClock
) -> None:
    """The one-hour token is reused for 55 minutes, then renewed."""
    await fcm.send(make_fcm_push())
    clock.now += 3600 - 300 - 1
    await fcm.send(make_fcm_push())
    assert simulator.count("fcm.token") == 1
    clock.now += 2
    await fcm.send(make_fcm_push())
    assert simulator.count("fcm.token") == 2
    assert len(sends(simulator)) == 3


async def test_fcm_401_renews_the_token_and_retries_once(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """A token messages:send refuses (401) is dropped; the send succeeds with a new one."""
    simulator.inject("fcm.token", status=200, body={"access_token": "revoked", "expires_in": 3600})
    assert isinstance(await fcm.send(make_fcm_push()), SendReceipt)
    assert simulator.count("fcm.token") == 2
    authorizations = [r.headers["Authorization"] for r in sends(simulator)]
    good = f"Bearer {simulator.credentials.fcm_access_token}"
    assert authorizations == ["Bearer revoked", good]
    await fcm.send(make_fcm_push())  # the renewed token is cached
    assert simulator.count("fcm.token") == 2


async def test_fcm_persistent_401_is_a_credentials_error(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """A 401 with the renewed token too is not retried again: CredentialsError, two sends."""
    revoked = {"access_token": "revoked", "expires_in": 3600}
    simulator.inject("fcm.token", status=200, body=revoked, count=2)
    with pytest.raises(CredentialsError):
        await fcm.send(make_fcm_push())
    assert simulator.count("fcm.token") == 2
    assert len(sends(simulator)) == 2


async def test_fcm_token_endpoint_refusal_is_a_credentials_error(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """A 401 from the token endpoint means the service account is unusable; nothing is sent."""
    simulator.inject("fcm.token", status=401)
    with pytest.raises(CredentialsError) as raised:
        await fcm.send(make_fcm_push())
    assert raised.value.code == "token_refused"
    assert sends(simulator) == []


async def test_fcm_token_endpoint_outage_is_shared_by_waiting_sends(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """Sends waiting on a token fetch that fails share its error instead of refetching."""
    simulator.inject("fcm.token", status=503)
    results = await fcm.send_batch([make_fcm_push() for _ in range(5)])
    assert all(isinstance(r, TransientProviderError) for r in results)
    assert simulator.count("fcm.token") == 1
    assert isinstance(await fcm.send(make_fcm_push()), SendReceipt)  # the next send refetches


async def test_fcm_unregistered_token_means_remove_it(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """The simulator's real 404 NOT_FOUND for an expired token is subscription_expired."""
    simulator.expired_push_targets.add("device-token-1")
    with pytest.raises(PermanentProviderError, match="remove it") as raised:
        await fcm.send(make_fcm_push())
    assert raised.value.code == "subscription_expired"


def fcm_error(status: int, grpc: str, error_code: str | None = None) -> dict[str, Any]:
    """FCM's error body, with an FcmError detail when ``error_code`` is given."""
    error: dict[str, Any] = {"code": status, "message": "from the test", "status": grpc}
    if error_code:
        fcm_type = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
        error["details"] = [{"@type": fcm_type, "errorCode": error_code}]
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "expected", "code"),
    [
        (404, fcm_error(404, "NOT_FOUND", "UNREGISTERED"), PermanentProviderError,
         "subscription_expired"),
        (400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"), PermanentProviderError,
         "invalid_argument"),
        (403, fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH"), PermanentProviderError,
         "sender_id_mismatch"),
        (429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED"), RateLimitedError,
         "quota_exceeded"),
        (503, fcm_error(503, "UNAVAILABLE"), TransientProviderError, "unavailable"),
        (500, fcm_error(500, "INTERNAL", "INTERNAL"), TransientProviderError, "internal"),
        (502, "Bad Gateway", TransientProviderError, "502"),
    ],
)  # fmt: skip
async def test_fcm_classifies_its_errors(
    fcm: FcmProvider,
    simulator: ProviderSimulator,
    status: int,
    body: Any,
    expected: type[Exception],
    code: str,
) -> None:
    """FCM's errorCode (else its gRPC status, else the HTTP status) decides the class."""
    await fcm.access_token()  # a fault aimed at "fcm" would otherwise hit the token route
    simulator.inject("fcm", status=status, body=body, retry_after="4")
    with pytest.raises(expected) as raised:
        await fcm.send(make_fcm_push())
    assert type(raised.value) is expected
    assert raised.value.code == code  # type: ignore[attr-defined]
    if isinstance(raised.value, RateLimitedError):
        assert raised.value.retry_after_seconds == pytest.approx(4.0)


async def test_fcm_dropped_connection_is_transient(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """No answer from messages:send is transient."""
    await fcm.access_token()
    simulator.inject("fcm", drop_connection=True)
    with pytest.raises(TransientProviderError):
        await fcm.send(make_fcm_push())


async def test_fcm_refuses_a_subscription_without_a_token(
    fcm: FcmProvider, simulator: ProviderSimulator
) -> None:
    """A Web Push subscription given to FCM fails before any request."""
    item = make_push(PushSubscription(endpoint="https://push.example.com/x", p256dh="k", auth="a"))
    with pytest.raises(PermanentProviderError) as raised:
        await fcm.send(item)
    assert raised.value.code == "invalid_subscription"
    assert simulator.count("fcm") == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"service_account_json": None}, "service_account_json"),
        ({"service_account_json": "{not json"}, "service_account_json"),
        ({"client_email": None}, "client_email"),
        ({"project_id": ""}, "project_id"),
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"},
         "private_key"),
    ],
)  # fmt: skip
def test_fcm_config_errors_name_the_setting(
    service_account: dict[str, str], change: dict[str, Any], named: str
) -> None:
    """A missing or broken service account is a ConfigError naming the field."""
    if "service_account_json" in change:
        config: dict[str, Any] = change
    else:
        config = {"service_account_json": {**service_account, **change}}
    with pytest.raises(ConfigError, match=named):
        FcmProvider.from_config(config, session=None)


def test_fcm_config_takes_the_token_uri_from_the_account_unless_overridden(
    service_account: dict[str, str],
) -> None:
    """The account's token_uri is used; a ``token_uri`` setting overrides it."""
    plain = FcmProvider.from_config({"service_account_json": service_account}, session=None)
    assert plain.account.token_uri == "https://oauth2.googleapis.com/token"
    assert plain.base_url == "https://fcm.googleapis.com"
    custom = FcmProvider.from_config(
        {"service_account_json": service_account, "token_uri": "http://127.0.0.1:1/token"},
        session=None,
    )
    assert custom.account.token_uri == "http://127.0.0.1:1/token"


# -- the registry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "channel", "cls"),
    [
        ("webhook", Channel.WEBHOOK, WebhookProvider),
        ("webpush", Channel.PUSH, WebPushProvider),
        ("fcm", Channel.PUSH, FcmProvider),
    ],
)
def test_registry_knows_the_push_and_webhook_kinds(
    kind: str, channel: Channel, cls: type[Any]
) -> None:
    """Each kind is registered with its channel and class."""
    registered = get_kind(kind)
    assert (registered.channel, registered.cls) == (channel, cls)


async def test_providers_own_and_close_their_session_when_none_is_given(
    simulator: ProviderSimulator, hook_url: str
) -> None:
    """Without an injected session a provider opens one in start() and closes it."""
    provider = WebhookProvider.from_config({}, session=None)
    await provider.start()
    try:
        await provider.send(make_webhook(hook_url))
    finally:
        await provider.close()
    assert provider._session is None
    await asyncio.sleep(0)  # let the closed connector finish
