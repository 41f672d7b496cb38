"""The SMS and voice providers against the provider simulator: one conformance suite for all.

Every provider in ``CASES`` (Twilio Messaging, Vonage SMS, Twilio Calls) must send the
documented request (auth, endpoint, form fields, our delivery id where its callbacks carry it
back), turn the answer into a receipt, and classify 2xx, 400, 401, wrong credentials, 429
(with and without Retry-After), 5xx, a dropped connection and a timeout the same way.
Provider-specific behaviour (Twilio's error codes, Vonage's statuses inside a 200, TwiML
escaping) follows the suite.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from guestcomms.channels.base import (
    CredentialsError,
    OutgoingCall,
    OutgoingSms,
    PermanentProviderError,
    ProviderError,
    RateLimitedError,
    SendReceipt,
    TransientProviderError,
)
from guestcomms.channels.http import (
    DEFAULT_RETRY_AFTER_SECONDS,
    DELIVERY_ID_KEY,
    HttpProvider,
    basic_auth,
)
from guestcomms.channels.registry import KINDS
from guestcomms.channels.simulator import ProviderSimulator, RecordedRequest, SimulatorCredentials
from guestcomms.channels.twilio_sms import TwilioSmsProvider, delivery_ref, with_delivery_ref
from guestcomms.channels.twilio_voice import MAX_TWIML_CHARS, TwilioVoiceProvider, say_twiml
from guestcomms.channels.vonage_sms import STATUSES, VonageSmsProvider
from guestcomms.domain.enums import Channel
from guestcomms.domain.sms import SmsEncoding
from guestcomms.errors import ConfigError

TIMEOUT_SECONDS = 0.5  # the providers' request timeout in these tests
GUEST = "+447911123456"
TWILIO_NUMBER = "+15005550006"
CALLBACK_BASE = "https://hooks.example.com/inbound/twilio"
CALLBACK = f"{CALLBACK_BASE}?org=acme"
SERVICE_SID = "MG" + "0123456789abcdef" * 2
Item = OutgoingSms | OutgoingCall
AnyProvider = HttpProvider[Any]


def make_sms(**changes: Any) -> OutgoingSms:
    """A GSM-7 text with a status callback and no sender of its own."""
    item = OutgoingSms(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        idempotency_key=f"dlv-{uuid.uuid4().hex}",
        to=GUEST,
        body="Save the date: 12 June! Reply STOP to opt out.",
        status_callback_url=CALLBACK,
    )
    return dataclasses.replace(item, **changes)


def make_call(**changes: Any) -> OutgoingCall:
    """A text-to-speech call with a status callback and no sender of its own."""
    item = OutgoingCall(
        delivery_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        idempotency_key=f"dlv-{uuid.uuid4().hex}",
        to=GUEST,
        say="The ceremony moves indoors because of the storm.",
        language="en-GB",
        voice="Polly.Amy",
        status_callback_url=CALLBACK,
    )
    return dataclasses.replace(item, **changes)


def callback_query(url: str) -> dict[str, list[str]]:
    """The query of a StatusCallback URL, after checking it still points at CALLBACK."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK_BASE
    return parse_qs(parts.query)


# -- the conformance table ---------------------------------------------------------------


def check_twilio_sms(request: RecordedRequest, item: Item, creds: SimulatorCredentials) -> None:
    """Messages.json: Basic sid:token, To/From/Body, StatusCallback with our delivery id."""
    assert isinstance(item, OutgoingSms)
    sid = creds.twilio_account_sid
    assert request.path == f"/2010-04-01/Accounts/{sid}/Messages.json"
    assert request.headers["Authorization"] == basic_auth(sid, creds.twilio_auth_token)
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    form = dict(request.form or {})
    assert set(form) == {"To", "From", "Body", "StatusCallback"}
    assert (form["To"], form["From"], form["Body"]) == (GUEST, TWILIO_NUMBER, item.body)
    query = callback_query(form["StatusCallback"])
    assert query == {"org": ["acme"], DELIVERY_ID_KEY: [delivery_ref(item)]}


def check_vonage(request: RecordedRequest, item: Item, creds: SimulatorCredentials) -> None:
    """/sms/json: credentials in the form, to without '+', client-ref, no type for GSM."""
    assert isinstance(item, OutgoingSms)
    assert request.path == "/sms/json"
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert "Authorization" not in request.headers
    assert request.form == {
        "api_key": creds.vonage_api_key,
        "api_secret": creds.vonage_api_secret,
        "from": "AnaBen",
        "to": GUEST.removeprefix("+"),
        "text": item.body,
        "client-ref": delivery_ref(item),
        "callback": CALLBACK,
    }


def check_twilio_voice(request: RecordedRequest, item: Item, creds: SimulatorCredentials) -> None:
    """Calls.json: Basic sid:token, To/From, <Say> TwiML, StatusCallback with the id."""
    assert isinstance(item, OutgoingCall)
    sid = creds.twilio_account_sid
    assert request.path == f"/2010-04-01/Accounts/{sid}/Calls.json"
    assert request.headers["Authorization"] == basic_auth(sid, creds.twilio_auth_token)
    form = dict(request.form or {})
    assert set(form) == {"To", "From", "Twiml", "StatusCallback"}
    assert (form["To"], form["From"]) == (GUEST, TWILIO_NUMBER)
    assert form["Twiml"] == (
        '<Response><Say language="en-GB" voice="Polly.Amy">'
        "The ceremony moves indoors because of the storm.</Say></Response>"
    )
    assert callback_query(form["StatusCallback"])[DELIVERY_ID_KEY] == [delivery_ref(item)]


def twilio_config(creds: SimulatorCredentials) -> dict[str, Any]:
    """Twilio's account settings, with the simulator's credentials."""
    return {
        "account_sid": creds.twilio_account_sid,
        "auth_token": creds.twilio_auth_token,
        "sender": TWILIO_NUMBER,
    }


def vonage_config(creds: SimulatorCredentials) -> dict[str, Any]:
    """Vonage's settings, with the simulator's credentials and an alphanumeric sender."""
    return {
        "api_key": creds.vonage_api_key,
        "api_secret": creds.vonage_api_secret,
        "sender": "AnaBen",
    }


@dataclass(frozen=True)
class Case:
    """One provider's entry in the conformance suite."""

    name: str
    provider_class: type[AnyProvider]
    channel: Channel
    route: str  # the simulator route that faults target
    config: Callable[[SimulatorCredentials], dict[str, Any]]
    make_item: Callable[..., Item]
    check_request: Callable[[RecordedRequest, Item, SimulatorCredentials], None]
    receipt_id: re.Pattern[str]  # what the provider's id looks like
    secret_setting: str  # the config key a wrong credential goes into
    required: tuple[str, ...]  # settings from_config insists on


CASES = [
    Case("twilio_sms", TwilioSmsProvider, Channel.SMS, "twilio.messages", twilio_config,
         make_sms, check_twilio_sms, re.compile(r"SM[0-9a-f]{32}"), "auth_token",
         ("account_sid", "auth_token")),
    Case("vonage_sms", VonageSmsProvider, Channel.SMS, "vonage", vonage_config,
         make_sms, check_vonage, re.compile(r"[0-9A-F]{16}"), "api_secret",
         ("api_key", "api_secret")),
    Case("twilio_voice", TwilioVoiceProvider, Channel.VOICE, "twilio.calls", twilio_config,
         make_call, check_twilio_voice, re.compile(r"CA[0-9a-f]{32}"), "auth_token",
         ("account_sid", "auth_token")),
]  # fmt: skip


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    """Each provider of the conformance suite in turn."""
    chosen: Case = request.param
    return chosen


def build(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession, **overrides: Any
) -> AnyProvider:
    """The case's provider from a plain config dict, aimed at the simulator."""
    config: dict[str, Any] = {
        **case.config(simulator.credentials),
        "base_url": simulator.base_url,
        "timeout_seconds": TIMEOUT_SECONDS,
        **overrides,
    }
    return case.provider_class.from_config(config, session=session)


@pytest.fixture
def provider(case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession) -> Any:
    """The case's provider with the simulator's credentials."""
    return build(case, simulator, session)


async def test_sends_the_documented_request_shape(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """One send makes one request of the provider's documented shape and returns its id."""
    item = case.make_item()
    receipt = await provider.send(item)
    assert len(simulator.requests) == 1
    case.check_request(simulator.requests[0], item, simulator.credentials)
    assert receipt.provider_message_id is not None
    assert case.receipt_id.fullmatch(receipt.provider_message_id)


def test_is_registered_under_its_name_and_channel(case: Case, provider: AnyProvider) -> None:
    """The registry maps the kind to this class and channel; one item per request."""
    kind = KINDS[case.name]
    assert (kind.cls, kind.channel) == (case.provider_class, case.channel)
    assert (provider.name, provider.channel) == (case.name, case.channel)
    assert provider.capabilities.max_batch_size == 1
    assert not provider.capabilities.supports_idempotency_key


async def test_injected_400_is_permanent(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A 400 in the provider's error shape is permanent, with its message kept."""
    simulator.inject(case.route, status=400)
    with pytest.raises(PermanentProviderError, match="simulated fault") as raised:
        await provider.send(case.make_item())
    assert not isinstance(raised.value, CredentialsError)


async def test_wrong_credentials_raise_credentials_error(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """A secret the provider does not know gets its real refusal and a CredentialsError."""
    provider = build(case, simulator, session, **{case.secret_setting: "wrong-secret"})
    with pytest.raises(CredentialsError):
        await provider.send(case.make_item())


async def test_injected_401_raises_credentials_error(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """Any 401 answer is a CredentialsError."""
    simulator.inject(case.route, status=401)
    with pytest.raises(CredentialsError):
        await provider.send(case.make_item())


async def test_429_with_retry_after_is_rate_limited(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A 429 with ``Retry-After: 7`` is rate limited for 7 seconds."""
    simulator.inject(case.route, status=429, retry_after="7")
    with pytest.raises(RateLimitedError) as raised:
        await provider.send(case.make_item())
    assert raised.value.retry_after_seconds == pytest.approx(7.0)


async def test_429_without_retry_after_uses_the_default(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A 429 without Retry-After waits the default second."""
    simulator.inject(case.route, status=429)
    with pytest.raises(RateLimitedError) as raised:
        await provider.send(case.make_item())
    assert raised.value.retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator, status: int
) -> None:
    """A server error is transient (retried later), and not a rate limit."""
    simulator.inject(case.route, status=status)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(case.make_item())
    assert not isinstance(raised.value, RateLimitedError)
    assert raised.value.code == str(status)


async def test_dropped_connection_is_transient(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A connection closed without an answer is transient; the next send succeeds."""
    simulator.inject(case.route, drop_connection=True)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(case.make_item())
    assert isinstance(raised.value.__cause__, aiohttp.ClientError)
    assert isinstance(await provider.send(case.make_item()), SendReceipt)


async def test_timeout_is_transient(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """An answer slower than the provider's timeout is a transient error."""
    simulator.inject(case.route, timeout=True)
    with pytest.raises(TransientProviderError) as raised:
        await provider.send(case.make_item())
    assert isinstance(raised.value.__cause__, TimeoutError)


async def test_send_batch_returns_one_result_per_item_and_never_raises(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A 503 during a batch fails the one item that met it; the others are accepted."""
    simulator.inject(case.route, status=503)
    results = await provider.send_batch([case.make_item() for _ in range(3)])
    assert len(results) == 3
    assert sum(isinstance(r, TransientProviderError) for r in results) == 1
    assert sum(isinstance(r, SendReceipt) for r in results) == 2


@pytest.mark.parametrize("number", ["+44 12", "07911 123456", "call me"])
async def test_invalid_number_is_permanent_without_a_request(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator, number: str
) -> None:
    """A number phonenumbers rejects never reaches the provider and is never retried."""
    with pytest.raises(PermanentProviderError, match="invalid phone number") as raised:
        await provider.send(case.make_item(to=number))
    assert raised.value.code == "invalid_number"
    assert simulator.requests == []


async def test_number_is_sent_normalised(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A valid number written with spaces and brackets is sent in E.164."""
    await provider.send(case.make_item(to="+44 (0)7911 123 456"))
    form = simulator.requests[0].form or {}
    assert form.get("To", form.get("to")) in (GUEST, GUEST.removeprefix("+"))


async def test_no_sender_anywhere_is_permanent_without_a_request(
    case: Case, simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """Without a configured sender or one on the item, nothing is sent."""
    provider = build(case, simulator, session, sender=None)
    with pytest.raises(PermanentProviderError, match="no sender"):
        await provider.send(case.make_item())
    assert simulator.requests == []


async def test_the_items_sender_wins_over_the_configured_one(
    case: Case, provider: AnyProvider, simulator: ProviderSimulator
) -> None:
    """A sender on the item replaces the provider's default sender."""
    await provider.send(case.make_item(sender="+15005550001"))
    form = simulator.requests[0].form or {}
    assert form.get("From", form.get("from")) in ("+15005550001", "15005550001")


def test_missing_settings_are_config_errors_naming_them(case: Case) -> None:
    """from_config names each required setting that is missing."""
    full = case.config(SimulatorCredentials())
    for key in case.required:
        config = {k: v for k, v in full.items() if k != key}
        with pytest.raises(ConfigError, match=key):
            case.provider_class.from_config(config, session=None)


def test_a_callback_url_that_is_not_http_is_a_config_error(case: Case) -> None:
    """``status_callback_url`` must be an http(s) URL."""
    config = {**case.config(SimulatorCredentials()), "status_callback_url": "ftp://x/y"}
    with pytest.raises(ConfigError, match="status_callback_url"):
        case.provider_class.from_config(config, session=None)


async def test_without_a_shared_session_it_opens_and_closes_its_own(
    case: Case, simulator: ProviderSimulator
) -> None:
    """A provider built without a session opens one on start and closes it on close."""
    provider = build(case, simulator, None)  # type: ignore[arg-type]
    await provider.start()
    try:
        assert isinstance(await provider.send(case.make_item()), SendReceipt)
    finally:
        await provider.close()


# -- Twilio Messaging --------------------------------------------------------------------


@pytest.fixture
def twilio(simulator: ProviderSimulator, session: aiohttp.ClientSession) -> TwilioSmsProvider:
    """A Twilio SMS provider aimed at the simulator, with a configured callback URL."""
    return TwilioSmsProvider.from_config(
        {
            **twilio_config(simulator.credentials),
            "base_url": simulator.base_url,
            "status_callback_url": "https://hooks.example.com/configured",
        },
        session=session,
    )


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, 21211, PermanentProviderError),  # invalid 'To' number
        (400, 21610, PermanentProviderError),  # the recipient replied STOP
        (400, 21614, PermanentProviderError),  # not a mobile number
        (400, 21408, PermanentProviderError),  # region not enabled
        (401, 20003, CredentialsError),  # authentication failed
        (403, 20005, CredentialsError),  # account not active
        (429, 20429, RateLimitedError),  # too many requests
        (400, 14107, RateLimitedError),  # SMS send rate limit exceeded
        (400, 12345, PermanentProviderError),  # unknown code: by status, code kept
        (404, 20404, PermanentProviderError),  # not found
    ],
)
async def test_twilio_classifies_by_error_code(
    twilio: TwilioSmsProvider,
    simulator: ProviderSimulator,
    status: int,
    code: int,
    expected: type[ProviderError],
) -> None:
    """Twilio's error ``code`` decides the class of a 4xx and is kept on the error."""
    body = {"code": code, "message": "from the simulator", "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}  # fmt: skip
    simulator.inject("twilio.messages", status=status, body=body, retry_after="3")
    with pytest.raises(expected) as raised:
        await twilio.send(make_sms())
    assert type(raised.value) is expected
    if status != 429:
        assert raised.value.code == str(code)
        assert f"Twilio error {code}" in str(raised.value)


async def test_twilio_refuses_an_empty_body_permanently(
    twilio: TwilioSmsProvider,
) -> None:
    """An empty Body gets Twilio's real 400/21602, which is permanent."""
    with pytest.raises(PermanentProviderError, match="body is required") as raised:
        await twilio.send(make_sms(body=""))
    assert raised.value.code == "21602"


async def test_twilio_uses_the_configured_callback_when_the_item_has_none(
    twilio: TwilioSmsProvider, simulator: ProviderSimulator
) -> None:
    """Without an item callback the configured URL carries the delivery id."""
    item = make_sms(status_callback_url=None)
    await twilio.send(item)
    form = simulator.requests[0].form or {}
    assert form["StatusCallback"] == (
        f"https://hooks.example.com/configured?{DELIVERY_ID_KEY}={delivery_ref(item)}"
    )


async def test_twilio_sends_no_callback_when_none_is_known(
    simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """No callback URL on the item or in the settings: no StatusCallback field."""
    twilio = TwilioSmsProvider.from_config(
        {**twilio_config(simulator.credentials), "base_url": simulator.base_url}, session=session
    )
    await twilio.send(make_sms(status_callback_url=None))
    assert "StatusCallback" not in (simulator.requests[0].form or {})


def test_with_delivery_ref_replaces_a_forged_id() -> None:
    """A delivery id already in the URL is replaced, other parameters kept."""
    url = f"https://h.example.com/cb?a=1&{DELIVERY_ID_KEY}=dlv_forged&b="
    result = parse_qs(urlsplit(with_delivery_ref(url, "dlv_real")).query, keep_blank_values=True)
    assert result == {"a": ["1"], "b": [""], DELIVERY_ID_KEY: ["dlv_real"]}


async def test_twilio_sends_through_a_messaging_service(
    simulator: ProviderSimulator, session: aiohttp.ClientSession
) -> None:
    """A configured Messaging Service SID replaces From; so does an MG... item sender."""
    twilio = TwilioSmsProvider.from_config(
        {**twilio_config(simulator.credentials), "base_url": simulator.base_url,
         "messaging_service_sid": SERVICE_SID},
        session=session,
    )  # fmt: skip
    await twilio.send(make_sms())
    other_service = "MG" + "f" * 32
    await twilio.send(make_sms(sender=other_service))
    first, second = (r.form or {} for r in simulator.requests)
    assert first["MessagingServiceSid"] == SERVICE_SID
    assert second["MessagingServiceSid"] == other_service
    assert "From" not in first
    assert "From" not in second


@pytest.mark.parametrize(
    ("key", "value"),
    [("account_sid", "SK123"), ("messaging_service_sid", "not-a-service")],
)
def test_twilio_config_checks_sid_shapes(key: str, value: str) -> None:
    """An account SID or Messaging Service SID of the wrong shape is a ConfigError."""
    config = {**twilio_config(SimulatorCredentials()), key: value}
    with pytest.raises(ConfigError, match=key):
        TwilioSmsProvider.from_config(config, session=None)


def test_twilio_reports_segments() -> None:
    """segments_of gives the encoding and part count of the body."""
    counted = TwilioSmsProvider.segments_of(make_sms(body="\U0001f492" + "a" * 80))
    assert (counted.encoding, counted.characters, counted.segments) == (SmsEncoding.UCS2, 82, 2)


# -- Vonage SMS --------------------------------------------------------------------------


@pytest.fixture
def vonage(simulator: ProviderSimulator, session: aiohttp.ClientSession) -> VonageSmsProvider:
    """A Vonage SMS provider aimed at the simulator."""
    return VonageSmsProvider.from_config(
        {**vonage_config(simulator.credentials), "base_url": simulator.base_url}, session=session
    )


def vonage_answer(*parts: dict[str, str]) -> dict[str, Any]:
    """Vonage's 200 answer listing ``parts``."""
    return {"message-count": str(len(parts)), "messages": list(parts)}


@pytest.mark.parametrize(
    ("status", "expected"),
    [*STATUSES.items(), ("99", PermanentProviderError)],
    ids=[*STATUSES, "unknown"],
)
async def test_vonage_classifies_the_status_inside_a_200(
    vonage: VonageSmsProvider,
    simulator: ProviderSimulator,
    status: str,
    expected: type[ProviderError],
) -> None:
    """Vonage's ``status`` decides the class (the module's table; unknown is permanent)."""
    body = vonage_answer({"status": status, "error-text": "from the simulator"})
    simulator.inject("vonage", status=200, body=body)
    with pytest.raises(expected) as raised:
        await vonage.send(make_sms())
    assert type(raised.value) is expected
    assert raised.value.code == status
    assert "from the simulator" in str(raised.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("1", RateLimitedError), ("2", PermanentProviderError), ("3", PermanentProviderError),
     ("4", CredentialsError), ("5", TransientProviderError), ("6", PermanentProviderError),
     ("7", PermanentProviderError), ("8", PermanentProviderError), ("9", PermanentProviderError),
     ("15", PermanentProviderError)],
)  # fmt: skip
def test_vonage_table_matches_the_agreed_classes(
    status: str, expected: type[ProviderError]
) -> None:
    """The statuses the issue names map to the agreed classes (8 and 9 are not credentials)."""
    assert STATUSES[status] is expected


async def test_vonage_throttled_waits_the_default_second(
    vonage: VonageSmsProvider, simulator: ProviderSimulator
) -> None:
    """Status 1 (throttled) carries no Retry-After: wait the default second."""
    simulator.inject("vonage", status=200, body=vonage_answer({"status": "1"}))
    with pytest.raises(RateLimitedError) as raised:
        await vonage.send(make_sms())
    assert raised.value.retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS


async def test_vonage_sends_ucs2_text_as_unicode(
    vonage: VonageSmsProvider, simulator: ProviderSimulator
) -> None:
    """A text that needs UCS-2 is sent with ``type=unicode``; a GSM text without a type."""
    await vonage.send(make_sms(body="Fran\u00e7oise says hi \U0001f492"))
    await vonage.send(make_sms(body="Plain {GSM} text \u20ac"))
    ucs2, gsm = (r.form or {} for r in simulator.requests)
    assert ucs2["type"] == "unicode"
    assert ucs2["text"] == "Fran\u00e7oise says hi \U0001f492"
    assert "type" not in gsm


async def test_vonage_refuses_an_empty_text_permanently(vonage: VonageSmsProvider) -> None:
    """An empty text gets Vonage's status 2 (missing parameter), which is permanent."""
    with pytest.raises(PermanentProviderError, match="text") as raised:
        await vonage.send(make_sms(body=""))
    assert raised.value.code == "2"


async def test_vonage_multipart_answer_gives_the_first_id(
    vonage: VonageSmsProvider, simulator: ProviderSimulator
) -> None:
    """A long text split into two accepted parts is one receipt with the first part's id."""
    body = vonage_answer(
        {"status": "0", "message-id": "0A0000001"}, {"status": "0", "message-id": "0A0000002"}
    )
    simulator.inject("vonage", status=200, body=body)
    receipt = await vonage.send(make_sms(body="a" * 200))
    assert receipt.provider_message_id == "0A0000001"


async def test_vonage_refused_later_part_decides_the_error(
    vonage: VonageSmsProvider, simulator: ProviderSimulator
) -> None:
    """If a later part is throttled the whole send is rate limited, saying which part."""
    body = vonage_answer({"status": "0", "message-id": "0A0000001"}, {"status": "1"})
    simulator.inject("vonage", status=200, body=body)
    with pytest.raises(RateLimitedError, match="part 2 of 2"):
        await vonage.send(make_sms(body="a" * 200))


@pytest.mark.parametrize("body", ["<html>proxy page</html>", {"messages": []}])
async def test_vonage_unexpected_200_is_permanent(
    vonage: VonageSmsProvider, simulator: ProviderSimulator, body: Any
) -> None:
    """A 200 that is not Vonage's answer (a wrong base URL) is a permanent error."""
    simulator.inject("vonage", status=200, body=body)
    with pytest.raises(PermanentProviderError, match="unexpected Vonage answer"):
        await vonage.send(make_sms())


async def test_vonage_numeric_sender_loses_its_plus(
    vonage: VonageSmsProvider, simulator: ProviderSimulator
) -> None:
    """A number as sender is sent without '+', as Vonage expects; no callback, no field."""
    await vonage.send(make_sms(sender="+447911000111", status_callback_url=None))
    form = simulator.requests[0].form or {}
    assert form["from"] == "447911000111"
    assert "callback" not in form


# -- Twilio Calls ------------------------------------------------------------------------


@pytest.fixture
def voice(simulator: ProviderSimulator, session: aiohttp.ClientSession) -> TwilioVoiceProvider:
    """A Twilio voice provider aimed at the simulator."""
    return TwilioVoiceProvider.from_config(
        {**twilio_config(simulator.credentials), "base_url": simulator.base_url}, session=session
    )


async def test_voice_twiml_escapes_markup(
    voice: TwilioVoiceProvider, simulator: ProviderSimulator
) -> None:
    """``<`` and ``&`` in the text are escaped, and the TwiML parses back to the same text."""
    text = 'Dinner <b>at 7</b> at Smith & Sons, "the barn"'
    await voice.send(make_call(say=text, voice='Polly."Amy"'))
    twiml = (simulator.requests[0].form or {})["Twiml"]
    assert "&lt;b&gt;at 7&lt;/b&gt;" in twiml
    assert "Smith &amp; Sons" in twiml
    say = ET.fromstring(twiml).find("Say")  # noqa: S314 - our own TwiML
    assert say is not None
    assert say.text == text
    assert say.attrib == {"language": "en-GB", "voice": 'Polly."Amy"'}


def test_voice_attribute_comes_from_the_item_then_the_config() -> None:
    """No voice anywhere: no attribute; the configured voice fills in for the item's."""
    assert say_twiml("Hi", language="en-US") == (
        '<Response><Say language="en-US">Hi</Say></Response>'
    )
    voice = TwilioVoiceProvider.from_config(
        {**twilio_config(SimulatorCredentials()), "voice": "Polly.Joanna"}, session=None
    )
    form = dict(voice.build_request(make_call(voice=None)).form or [])
    assert 'voice="Polly.Joanna"' in form["Twiml"]


async def test_voice_refuses_twiml_over_twilios_limit(
    voice: TwilioVoiceProvider, simulator: ProviderSimulator
) -> None:
    """A text whose TwiML exceeds 4000 characters is permanent and never sent."""
    with pytest.raises(PermanentProviderError, match=str(MAX_TWIML_CHARS)):
        await voice.send(make_call(say="a" * MAX_TWIML_CHARS))
    assert simulator.requests == []
