"""The HTTP email providers against the provider simulator: one conformance suite for all.

Every provider in ``CASES`` must send a correctly shaped request (auth header, endpoint,
body fields, our delivery id in its metadata field), turn the answer into a receipt, and
classify 2xx, 4xx, 401, 429 (Retry-After in seconds and as an HTTP date), 5xx, a dropped
connection and a timeout the same way. Provider-specific behaviour follows the suite.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from guestcomms.channels.base import (
    CredentialsError,
    OutgoingEmail,
    PermanentProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.http import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DELIVERY_ID_HEADER,
    DELIVERY_ID_KEY,
    HttpProvider,
    basic_auth,
    public_delivery_id,
)
from guestcomms.channels.mailgun import MailgunProvider
from guestcomms.channels.postmark import PostmarkProvider
from guestcomms.channels.resend import ResendProvider
from guestcomms.channels.sendgrid import SendGridProvider
from guestcomms.channels.ses import SesProvider, ses_smtp_host
from guestcomms.channels.simulator import ProviderSimulator, RecordedRequest, SimulatorCredentials
from guestcomms.config import SmtpSecurity
from guestcomms.errors import ConfigError
from tests.smtp_server import SmtpTestServer

TIMEOUT_SECONDS = 0.5  # the providers' request timeout in these tests
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EmailProvider = HttpProvider[OutgoingEmail]


def make_item(**changes: Any) -> OutgoingEmail:
    """An email with HTML, a reply-to and one extra header; ``changes`` override fields."""
    item = OutgoingEmail(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        idempotency_key=f"dlv-{uuid.uuid4().hex}",
        message_id=f"<{uuid.uuid4().hex}@mail.example.com>",
        sender="Ana & Ben <hello@example.com>",
        recipient="zoe@example.org",
        recipient_name="Zoe Smith",
        subject="Save the date: 12 June",
        text="Hello Zoe,\nwe are getting married!\n",
        html="<p>Hello Zoe,</p><p>we are getting married!</p>",
        reply_to="rsvp@example.com",
        headers={"List-Unsubscribe": "<https://example.com/u/abc>"},
    )
    return dataclasses.replace(item, **changes)


# -- the conformance table ---------------------------------------------------------------


def check_sendgrid(request: RecordedRequest, item: OutgoingEmail, key: str) -> None:
    """SendGrid v3 mail send: Bearer key, personalizations with custom_args, content order."""
    assert request.path == "/v3/mail/send"
    assert request.headers["Authorization"] == f"Bearer {key}"
    body = request.json
    personalization = body["personalizations"][0]
    assert personalization["to"] == [{"email": item.recipient, "name": item.recipient_name}]
    assert personalization["custom_args"] == {DELIVERY_ID_KEY: public_delivery_id(item)}
    assert body["from"] == {"email": "hello@example.com", "name": "Ana & Ben"}
    assert body["subject"] == item.subject
    assert body["content"] == [
        {"type": "text/plain", "value": item.text},
        {"type": "text/html", "value": item.html},
    ]
    assert body["reply_to"] == {"email": "rsvp@example.com"}
    assert body["headers"] == {**item.headers, DELIVERY_ID_HEADER: public_delivery_id(item)}


def check_resend(request: RecordedRequest, item: OutgoingEmail, key: str) -> None:
    """Resend /emails: Bearer key, Idempotency-Key, tags carrying the delivery id."""
    assert request.path == "/emails"
    assert request.headers["Authorization"] == f"Bearer {key}"
    assert request.headers["Idempotency-Key"] == item.idempotency_key
    body = request.json
    assert body["from"] == item.sender
    assert body["to"] == ["Zoe Smith <zoe@example.org>"]
    assert (body["subject"], body["text"], body["html"]) == (item.subject, item.text, item.html)
    assert body["reply_to"] == item.reply_to
    assert body["headers"] == {**item.headers, DELIVERY_ID_HEADER: public_delivery_id(item)}
    assert body["tags"] == [{"name": DELIVERY_ID_KEY, "value": public_delivery_id(item)}]


def check_mailgun(request: RecordedRequest, item: OutgoingEmail, key: str) -> None:
    """Mailgun messages: Basic api:key, form fields, h: headers and the v: variable."""
    assert request.path == "/v3/mg.example.com/messages"
    assert request.headers["Authorization"] == basic_auth("api", key)
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    form = request.form
    assert form is not None
    assert form["from"] == item.sender
    assert form["to"] == "Zoe Smith <zoe@example.org>"
    assert (form["subject"], form["text"], form["html"]) == (item.subject, item.text, item.html)
    assert form["h:Message-Id"] == item.message_id
    assert form["h:Reply-To"] == item.reply_to
    assert form["h:List-Unsubscribe"] == item.headers["List-Unsubscribe"]
    assert form[f"h:{DELIVERY_ID_HEADER}"] == public_delivery_id(item)
    assert form[f"v:{DELIVERY_ID_KEY}"] == public_delivery_id(item)


def check_postmark(request: RecordedRequest, item: OutgoingEmail, key: str) -> None:
    """Postmark /email: server token header, Metadata, Headers as Name/Value pairs."""
    assert request.path == "/email"
    assert request.headers["X-Postmark-Server-Token"] == key
    body = request.json
    assert body["From"] == item.sender
    assert body["To"] == "Zoe Smith <zoe@example.org>"
    assert (body["Subject"], body["TextBody"], body["HtmlBody"]) == (
        item.subject,
        item.text,
        item.html,
    )
    assert body["ReplyTo"] == item.reply_to
    assert body["MessageStream"] == "outbound"
    assert body["Metadata"] == {DELIVERY_ID_KEY: public_delivery_id(item)}
    assert body["Headers"] == [
        {"Name": "List-Unsubscribe", "Value": item.headers["List-Unsubscribe"]},
        {"Name": DELIVERY_ID_HEADER, "Value": public_delivery_id(item)},
    ]


@dataclass(frozen=True)
class Case:
    """One provider's entry in the conformance suite."""

    name: str
    provider_class: type[EmailProvider]
    secret_setting: str  # the config key holding the credential
    secret: Callable[[SimulatorCredentials], str]
    extra_config: dict[str, Any]
    check_request: Callable[[RecordedRequest, OutgoingEmail, str], None]
    receipt_id: re.Pattern[str]  # what the provider's id looks like
    refusal_status: int  # how the provider answers a request it will never accept


CASES = [
    Case("sendgrid", SendGridProvider, "api_key", lambda c: c.sendgrid_api_key, {},
         check_sendgrid, re.compile(r"[\w-]{16,}"), 400),
    Case("resend", ResendProvider, "api_key", lambda c: c.resend_api_key, {},
         check_resend, UUID_RE, 422),
    Case("mailgun", MailgunProvider, "api_key", lambda c: c.mailgun_api_key,
         {"domain": "mg.example.com"}, check_mailgun, re.compile(r"<\d+\.\w+@mg\.example\.com>"),
         400),
    Case("postmark", PostmarkProvider, "server_token", lambda c: c.postmark_server_token, {},
         check_postmark, UUID_RE, 422),
]  # fmt: skip


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    """Each provider of the conformance suite in turn."""
    chosen: Case = request.param
    return chosen


def build(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession, **overrides: Any
) -> EmailProvider:
    """The case's provider from a plain config dict, aimed at the simulator."""
    config: dict[str, Any] = {
        case.secret_setting: case.secret(simulator.credentials),
        "base_url": simulator.base_url,
        "timeout_seconds": TIMEOUT_SECONDS,
        **case.extra_config,
        **overrides,
    }
    return case.provider_class.from_config(config, session=session)


@pytest.fixture
def provider(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> EmailProvider:
    """The case's provider with the simulator's credentials."""
    return build(case, simulator, session)


async def test_sends_the_documented_request_shape(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """One send makes one request of the provider's documented shape and returns its id."""
    item = make_item()
    receipt = await provider.send(item)
    assert len(simulator.requests) == 1
    case.check_request(simulator.requests[0], item, case.secret(simulator.credentials))
    assert receipt.provider_message_id is not None
    assert case.receipt_id.fullmatch(receipt.provider_message_id)


async def test_declares_its_name_and_capabilities(case: Case, provider: EmailProvider) -> None:
    """The provider is registered under its case name and sends at least one item a call."""
    assert provider.name == case.name
    assert provider.capabilities.max_batch_size >= 1


async def test_refused_request_is_permanent(provider: EmailProvider) -> None:
    """A request the provider validates and refuses (no subject) is a permanent error."""
    with pytest.raises(PermanentProviderError, match=r"(?i)subject") as raised:
        await provider.send(make_item(subject=""))
    assert not isinstance(raised.value, CredentialsError)


async def test_injected_4xx_is_permanent(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """The provider's bad-request status (400 or 422) is permanent, with its message kept."""
    simulator.inject(case.name, status=case.refusal_status)
    with pytest.raises(PermanentProviderError, match="simulated fault") as raised:
        await provider.send(make_item())
    assert not isinstance(raised.value, CredentialsError)


async def test_wrong_credentials_raise_credentials_error(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """A key the provider does not know gets its real 401/403 and marks credentials failing."""
    provider = build(case, simulator, session, **{case.secret_setting: "wrong-key"})
    with pytest.raises(CredentialsError):
        await provider.send(make_item())


async def test_injected_401_raises_credentials_error(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """Any 401 answer is a CredentialsError."""
    simulator.inject(case.name, status=401)
    with pytest.raises(CredentialsError):
        await provider.send(make_item())


async def test_429_with_retry_after_seconds(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A 429 with ``Retry-After: 7`` is rate limited for 7 seconds."""
    simulator.inject(case.name, status=429, retry_after="7")
    with pytest.raises(RateLimitedError) as raised:
        await provider.send(make_item())
    assert raised.value.retry_after_seconds == pytest.approx(7.0)


async def test_429_with_retry_after_http_date(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A 429 whose Retry-After is an HTTP date 30 s ahead waits about 30 s."""
    when = datetime.now(UTC) + timedelta(seconds=30)
    simulator.inject(case.name, status=429, retry_after=format_datetime(when, usegmt=True))
    with pytest.raises(RateLimitedError) as raised:
        await provider.send(make_item())
    assert 28.0 <= raised.value.retry_after_seconds <= 30.5  # HTTP dates are whole seconds


async def test_429_without_retry_after_uses_the_default(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A 429 without Retry-After waits the default second."""
    simulator.inject(case.name, status=429)
    with pytest.raises(RateLimitedError) as raised:
        await provider.send(make_item())
    assert raised.value.retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator, status: int
) -> None:
    """A server error is transient (retried later), and not a rate limit."""
    simulator.inject(case.name, status=status)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(make_item())
    assert not isinstance(raised.value, RateLimitedError)
    assert raised.value.code == str(status)


async def test_dropped_connection_is_transient(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A connection closed without an answer is transient; the next send succeeds."""
    simulator.inject(case.name, drop_connection=True)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(make_item())
    assert isinstance(raised.value.__cause__, aiohttp.ClientError)
    assert isinstance(await provider.send(make_item()), SendReceipt)


async def test_timeout_is_transient(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """An answer slower than the provider's timeout is a transient error."""
    simulator.inject(case.name, timeout=True)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(make_item())
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_slow_answer_within_the_timeout_is_accepted(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A delayed answer that arrives before the timeout is an ordinary success."""
    simulator.inject(case.name, delay_seconds=0.05)
    assert isinstance(await provider.send(make_item()), SendReceipt)


async def test_send_batch_returns_one_result_per_item_and_never_raises(
    case: Case, provider: EmailProvider, simulator: ProviderSimulator
) -> None:
    """A 503 during a batch becomes results (one per item), never an exception."""
    simulator.inject(case.name, status=503)
    results = await provider.send_batch([make_item(), make_item(), make_item()])
    failed = sum(isinstance(r, TransientProviderError) for r in results)
    accepted = sum(isinstance(r, SendReceipt) for r in results)
    # One request per item fails just the one that met the 503; a batch API (Postmark)
    # sends the three in one request, which fails as a whole.
    assert (failed, accepted) == ((3, 0) if provider.capabilities.max_batch_size > 1 else (1, 2))


async def test_missing_credential_setting_names_it(case: Case) -> None:
    """from_config without the credential raises a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match=case.secret_setting):
        case.provider_class.from_config({"base_url": "http://x"}, session=None)


async def test_owns_and_closes_its_session_when_none_is_given(
    case: Case, simulator: ProviderSimulator
) -> None:
    """Without an injected session the provider opens one in start() and closes it."""
    config = {case.secret_setting: case.secret(simulator.credentials), **case.extra_config}
    provider = case.provider_class.from_config(
        {**config, "base_url": simulator.base_url}, session=None
    )
    await provider.start()
    try:
        assert isinstance(await provider.send(make_item()), SendReceipt)
    finally:
        await provider.close()
    assert provider._session is None


async def test_leaves_an_injected_session_open(
    provider: EmailProvider, session: aiohttp.ClientSession
) -> None:
    """close() does not close the session the composition root shares."""
    await provider.start()
    await provider.close()
    assert not session.closed


# -- provider-specific behaviour ---------------------------------------------------------


@pytest.fixture
def postmark(simulator: ProviderSimulator, session: aiohttp.ClientSession) -> PostmarkProvider:
    """A Postmark provider aimed at the simulator."""
    token = simulator.credentials.postmark_server_token
    return PostmarkProvider(server_token=token, base_url=simulator.base_url, session=session)


async def test_postmark_batch_maps_per_message_results(
    postmark: PostmarkProvider, simulator: ProviderSimulator
) -> None:
    """A batch of three with one inactive recipient: one request, three results in order."""
    simulator.inactive_recipients.add("bounced@example.org")
    items = [make_item(), make_item(recipient="bounced@example.org"), make_item()]
    results = await postmark.send_batch(items)
    assert [r.route for r in simulator.requests] == ["postmark.batch"]
    assert len(simulator.requests[0].json) == 3
    assert isinstance(results[0], SendReceipt)
    assert isinstance(results[2], SendReceipt)
    assert results[0].provider_message_id != results[2].provider_message_id
    assert isinstance(results[1], PermanentProviderError)
    assert results[1].code == "406"


async def test_postmark_batch_splits_at_500(
    postmark: PostmarkProvider, simulator: ProviderSimulator
) -> None:
    """501 emails go out in two batch requests of 500 and 1."""
    results = await postmark.send_batch([make_item() for _ in range(501)])
    assert all(isinstance(r, SendReceipt) for r in results)
    assert sorted(len(r.json) for r in simulator.requests) == [1, 500]


async def test_postmark_batch_request_failure_fails_every_item(
    postmark: PostmarkProvider, simulator: ProviderSimulator
) -> None:
    """A 503 for the whole batch request is a transient error for each of its items."""
    simulator.inject("postmark.batch", status=503)
    results = await postmark.send_batch([make_item(), make_item()])
    assert all(isinstance(r, TransientProviderError) for r in results)


@pytest.mark.parametrize(
    ("error_code", "status", "expected"),
    [
        (10, 401, CredentialsError),  # bad or missing server token
        (300, 422, PermanentProviderError),  # invalid email request
        (406, 422, PermanentProviderError),  # inactive recipient
        (405, 422, CredentialsError),  # not allowed to send: the account is unusable
        (412, 422, CredentialsError),  # account pending
        (100, 422, TransientProviderError),  # maintenance
        (429, 429, RateLimitedError),  # rate limit exceeded
    ],
)
async def test_postmark_classifies_by_error_code(
    postmark: PostmarkProvider,
    simulator: ProviderSimulator,
    error_code: int,
    status: int,
    expected: type[Exception],
) -> None:
    """Postmark's ErrorCode decides the class, not only the HTTP status."""
    body = {"ErrorCode": error_code, "Message": "from the simulator"}
    simulator.inject("postmark", status=status, body=body, retry_after="3")
    with pytest.raises(expected) as raised:
        await postmark.send(make_item())
    assert type(raised.value) is expected
    assert raised.value.code == str(error_code)  # type: ignore[attr-defined]


async def test_postmark_inactive_recipient_on_single_send(
    postmark: PostmarkProvider, simulator: ProviderSimulator
) -> None:
    """A single send to an inactive recipient gets the real 422/406 and is permanent."""
    simulator.inactive_recipients.add("zoe@example.org")
    with pytest.raises(PermanentProviderError, match="inactive") as raised:
        await postmark.send(make_item())
    assert raised.value.code == "406"


async def test_resend_sends_the_idempotency_key(
    simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """Resend gets the delivery's key as Idempotency-Key; a key over 256 chars is hashed."""
    resend = ResendProvider(
        api_key=simulator.credentials.resend_api_key, base_url=simulator.base_url, session=session
    )
    assert resend.capabilities.supports_idempotency_key
    await resend.send(make_item(idempotency_key="dlv-123"))
    await resend.send(make_item(idempotency_key="k" * 300))
    keys = [r.headers["Idempotency-Key"] for r in simulator.requests]
    assert keys[0] == "dlv-123"
    assert re.fullmatch(r"[0-9a-f]{64}", keys[1])


async def test_resend_encodes_a_display_name_that_needs_quotes(
    simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """Resend refuses quoted names, so "Smith, Zoe" travels as an RFC 2047 encoded word."""
    resend = ResendProvider(
        api_key=simulator.credentials.resend_api_key, base_url=simulator.base_url, session=session
    )
    await resend.send(make_item(recipient_name="Smith, Zoe"))
    (to,) = simulator.requests[0].json["to"]
    assert to.startswith("=?utf-8?")
    assert to.endswith(" <zoe@example.org>")


async def test_mailgun_takes_the_domain_from_the_sender(
    simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """Without a configured domain Mailgun's URL uses the sender's domain."""
    mailgun = MailgunProvider(
        api_key=simulator.credentials.mailgun_api_key, base_url=simulator.base_url, session=session
    )
    receipt = await mailgun.send(make_item())
    assert simulator.requests[0].path == "/v3/example.com/messages"
    assert receipt.provider_message_id is not None
    assert receipt.provider_message_id.endswith("@example.com>")


def test_mailgun_region_picks_the_base_url() -> None:
    """``region: eu`` aims at Mailgun's EU API; an unknown region is a ConfigError."""
    eu = MailgunProvider.from_config({"api_key": "k", "region": "eu"}, session=None)
    assert eu.base_url == "https://api.eu.mailgun.net"
    with pytest.raises(ConfigError, match="region"):
        MailgunProvider.from_config({"api_key": "k", "region": "mars"}, session=None)


# -- Amazon SES through SMTP -------------------------------------------------------------


async def test_ses_sends_through_smtp_with_its_headers(
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:
    """SES logs in, and tags the message with the delivery id and the configuration set."""
    server = start_smtp_server(users={"ses-user": "ses-pass"})
    ses = SesProvider(
        host=server.host,
        port=server.port,
        username="ses-user",
        password="ses-pass",
        configuration_set="wedding-events",
        security=SmtpSecurity.NONE,
        timeout_seconds=5.0,
    )
    item = make_item()
    try:
        receipt = await ses.send(item)
    finally:
        await ses.close()
    assert ses.name == "ses"
    assert receipt.provider_message_id == item.message_id
    (received,) = server.messages
    assert received.login == "ses-user"
    message = email.message_from_bytes(received.content, policy=email.policy.default)
    # The header is long enough to be folded; SES unfolds it like any header.
    tags = message["X-SES-MESSAGE-TAGS"].strip()
    assert tags == f"{DELIVERY_ID_KEY}={public_delivery_id(item)}"
    assert message["X-SES-CONFIGURATION-SET"] == "wedding-events"
    assert message[DELIVERY_ID_HEADER] == public_delivery_id(item)
    assert message["List-Unsubscribe"] == item.headers["List-Unsubscribe"]


async def test_ses_refused_login_raises_credentials_error(
    start_smtp_server: Callable[..., SmtpTestServer],
) -> None:
    """Wrong SMTP credentials (535) mark the SES provider's credentials as failing."""
    server = start_smtp_server(users={"ses-user": "ses-pass"})
    ses = SesProvider(
        host=server.host,
        port=server.port,
        username="ses-user",
        password="wrong",
        security=SmtpSecurity.NONE,
        timeout_seconds=5.0,
    )
    try:
        with pytest.raises(CredentialsError):
            await ses.send(make_item())
    finally:
        await ses.close()


def test_ses_config_aims_at_the_region_on_port_587_with_starttls() -> None:
    """A region becomes email-smtp.<region>.amazonaws.com:587 over STARTTLS."""
    ses = SesProvider.from_config(
        {"region": "eu-west-1", "username": "AKIA", "password": "secret"}, session=None
    )
    assert (ses.host, ses.port, ses.security) == (
        "email-smtp.eu-west-1.amazonaws.com",
        587,
        SmtpSecurity.STARTTLS,
    )
    assert ses_smtp_host("us-east-1") == "email-smtp.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"username": "u", "password": "p"}, "region"),
        ({"region": "eu-west-1", "password": "p"}, "username"),
        ({"region": "eu-west-1", "username": "u"}, "password"),
        ({"region": "nowhere", "username": "u", "password": "p"}, "region"),
    ],
)
def test_ses_config_errors_name_the_setting(config: dict[str, str], named: str) -> None:
    """A missing or invalid SES setting is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=named):
        SesProvider.from_config(config, session=None)
