"""The provider simulator itself: auth and validation shapes, fault injection, counting.

These talk to the simulator with a plain aiohttp client, so they also pin the documented
request and answer shapes of the APIs no provider module of ours covers yet (Twilio, Vonage,
FCM, Web Push, webhooks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from guestcomms.channels.http import basic_auth
from guestcomms.channels.simulator import (
    JWT_BEARER_GRANT,
    ProviderSimulator,
    SimulatorCredentials,
    main,
)

CREDENTIALS = SimulatorCredentials()
SID = CREDENTIALS.twilio_account_sid
TWILIO_AUTH = basic_auth(SID, CREDENTIALS.twilio_auth_token)
WEBHOOK_HEADERS = {"webhook-id": "msg_1", "webhook-timestamp": "1700000000",
                   "webhook-signature": "v1,abc"}  # fmt: skip
WEBPUSH_HEADERS = {"Authorization": "vapid t=jwt, k=key", "TTL": "60"}
SENDGRID_BODY = {
    "personalizations": [{"to": [{"email": "zoe@example.org"}]}],
    "from": {"email": "hello@example.com"},
    "subject": "Hi",
    "content": [{"type": "text/plain", "value": "Hello"}],
}


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    client: aiohttp.ClientSession, url: str, **kwargs: Any
) -> tuple[int, Any, Mapping[str, str]]:
    """POST and return the status, the JSON (or text) body and the headers."""
    async with client.post(url, **kwargs) as response:
        if response.content_type == "application/json":
            return response.status, await response.json(), response.headers
        return response.status, await response.text(), response.headers


async def send_sendgrid(simulator: ProviderSimulator, client: aiohttp.ClientSession) -> int:
    """One valid SendGrid request; return its status."""
    headers = {"Authorization": f"Bearer {CREDENTIALS.sendgrid_api_key}"}
    status, _, _ = await post(
        client, f"{simulator.base_url}/v3/mail/send", json=SENDGRID_BODY, headers=headers
    )
    return status


# -- authentication and validation -------------------------------------------------------

# path, request keyword arguments with WRONG credentials, expected status, a fragment of
# the provider's documented error body
WRONG_AUTH = [
    ("/v3/mail/send", {"json": SENDGRID_BODY, "headers": {"Authorization": "Bearer nope"}},
     401, "authorization grant is invalid"),
    ("/emails", {"json": {}}, 401, "missing_api_key"),
    ("/emails", {"json": {}, "headers": {"Authorization": "Bearer nope"}}, 403,
     "invalid_api_key"),
    ("/v3/example.com/messages", {"data": {"from": "a@b.c"},
     "headers": {"Authorization": basic_auth("api", "nope")}}, 401, "Forbidden"),
    ("/email", {"json": {}, "headers": {"X-Postmark-Server-Token": "nope"}}, 401,
     '"ErrorCode": 10'),
    ("/email/batch", {"json": []}, 401, '"ErrorCode": 10'),
    (f"/2010-04-01/Accounts/{SID}/Messages.json",
     {"data": {"To": "+1"}, "headers": {"Authorization": basic_auth(SID, "nope")}}, 401,
     '"code": 20003'),
    (f"/2010-04-01/Accounts/{SID}/Calls.json", {"data": {"To": "+1"}}, 401, '"code": 20003'),
    ("/v1/projects/p/messages:send", {"json": {}, "headers": {"Authorization": "Bearer x"}},
     401, "UNAUTHENTICATED"),
    ("/push/abc", {"headers": {"TTL": "60"}}, 401, "VAPID"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "kwargs", "status", "fragment"), WRONG_AUTH)
async def test_wrong_credentials_get_the_providers_401_shape(
    simulator: ProviderSimulator,
    client: aiohttp.ClientSession,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    """Each route refuses bad credentials with the real API's status and error body."""
    async with client.post(f"{simulator.base_url}{path}", **kwargs) as response:
        assert response.status == status
        assert fragment in (await response.text())


async def test_vonage_reports_bad_credentials_inside_a_200(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Vonage answers 200 with status "4" for bad credentials: errors hide in the body."""
    data = {"api_key": "nope", "api_secret": "nope", "from": "Ana", "to": "4477", "text": "x"}
    status, body, _ = await post(client, f"{simulator.base_url}/sms/json", data=data)
    assert status == 200
    assert body["messages"][0]["status"] == "4"


MISSING_FIELDS = [
    ("/v3/mail/send", {"json": {**SENDGRID_BODY, "subject": ""},
     "headers": {"Authorization": f"Bearer {CREDENTIALS.sendgrid_api_key}"}}, 400, "subject"),
    ("/emails", {"json": {"from": "a@b.c", "subject": "x"},
     "headers": {"Authorization": f"Bearer {CREDENTIALS.resend_api_key}"}}, 422, "`to`"),
    ("/v3/example.com/messages", {"data": {"from": "a@b.c", "to": "z@y.x", "subject": "s"},
     "headers": {"Authorization": basic_auth("api", CREDENTIALS.mailgun_api_key)}}, 400,
     "text"),
    ("/email", {"json": {"From": "a@b.c", "To": "z@y.x", "TextBody": "x"},
     "headers": {"X-Postmark-Server-Token": CREDENTIALS.postmark_server_token}}, 422,
     '"ErrorCode": 300'),
    (f"/2010-04-01/Accounts/{SID}/Messages.json", {"data": {"To": "+1555", "Body": "x"},
     "headers": {"Authorization": TWILIO_AUTH}}, 400, '"code": 21603'),
    (f"/2010-04-01/Accounts/{SID}/Calls.json", {"data": {"To": "+1555", "From": "+1666"},
     "headers": {"Authorization": TWILIO_AUTH}}, 400, '"code": 21205'),
    ("/v1/projects/p/messages:send", {"json": {"message": {"notification": {}}},
     "headers": {"Authorization": f"Bearer {CREDENTIALS.fcm_access_token}"}}, 400,
     "INVALID_ARGUMENT"),
    ("/token", {"data": {"grant_type": "password"}}, 400, "invalid_grant"),
    ("/push/abc", {"headers": {"Authorization": "vapid t=x, k=y"}}, 400, "TTL"),
    ("/hooks/orders", {"json": {}, "headers": {"webhook-id": "msg_1",
     "webhook-timestamp": "1700000000"}}, 400, "webhook-signature"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "kwargs", "status", "fragment"), MISSING_FIELDS)
async def test_missing_required_fields_get_the_providers_error_shape(
    simulator: ProviderSimulator,
    client: aiohttp.ClientSession,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    fragment: str,
) -> None:
    """A request without a required field gets the real API's 400/422 and names the field."""
    async with client.post(f"{simulator.base_url}{path}", **kwargs) as response:
        assert response.status == status
        assert fragment in (await response.text())


# -- success shapes of the APIs without a provider module here ---------------------------


async def test_twilio_message_and_call_answer_201_with_sids(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Twilio creates a Message (SM...) and a Call (CA...) from form fields, answering 201."""
    base = f"{simulator.base_url}/2010-04-01/Accounts/{SID}"
    auth = {"Authorization": TWILIO_AUTH}
    form = {"To": "+15551234567", "From": "+15557654321", "Body": "Hello"}
    status, message, _ = await post(client, f"{base}/Messages.json", data=form, headers=auth)
    assert status == 201
    assert message["sid"].startswith("SM")
    assert len(message["sid"]) == 34
    assert (message["status"], message["to"], message["body"]) == (
        "queued",
        "+15551234567",
        "Hello",
    )
    form = {"To": "+15551234567", "From": "+15557654321", "Twiml": "<Response/>"}
    status, call, _ = await post(client, f"{base}/Calls.json", data=form, headers=auth)
    assert status == 201
    assert call["sid"].startswith("CA")
    assert [r.route for r in simulator.requests] == ["twilio.messages", "twilio.calls"]
    assert simulator.requests[0].form == {"To": "+15551234567", "From": "+15557654321",
                                          "Body": "Hello"}  # fmt: skip


async def test_vonage_accepts_form_or_json(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Vonage accepts form or JSON bodies and answers status "0" with a message-id."""
    fields = {"api_key": CREDENTIALS.vonage_api_key, "api_secret": CREDENTIALS.vonage_api_secret,
              "from": "AnaBen", "to": "447700900000", "text": "Hi"}  # fmt: skip
    for kwargs in ({"data": fields}, {"json": fields}):
        status, body, _ = await post(client, f"{simulator.base_url}/sms/json", **kwargs)
        assert status == 200
        assert body["message-count"] == "1"
        assert body["messages"][0]["status"] == "0"
        assert body["messages"][0]["message-id"]


async def test_fcm_token_then_send(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """The OAuth token endpoint gives the access token FCM's send endpoint accepts."""
    form = {"grant_type": JWT_BEARER_GRANT, "assertion": "a.b.c"}
    status, token, _ = await post(client, f"{simulator.base_url}/token", data=form)
    assert status == 200
    assert token["expires_in"] == 3600
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    message = {"message": {"token": "device-1", "notification": {"title": "Hi", "body": "x"}}}
    url = f"{simulator.base_url}/v1/projects/wedding/messages:send"
    status, sent, _ = await post(client, url, json=message, headers=headers)
    assert status == 200
    assert sent["name"].startswith("projects/wedding/messages/")
    simulator.expired_push_targets.add("device-1")
    status, gone, _ = await post(client, url, json=message, headers=headers)
    assert status == 404
    assert gone["error"]["status"] == "NOT_FOUND"


async def test_webpush_and_webhook_success(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Web Push answers 201 with a Location (410 once expired); a signed webhook gets 200."""
    headers = {**WEBPUSH_HEADERS, "Content-Encoding": "aes128gcm"}
    status, _, answer_headers = await post(
        client, f"{simulator.base_url}/push/sub-1", data=b"\x00cipher", headers=headers
    )
    assert status == 201
    assert "Location" in answer_headers
    simulator.expired_push_targets.add("sub-1")
    status, _, _ = await post(client, f"{simulator.base_url}/push/sub-1", headers=headers)
    assert status == 410
    status, text, _ = await post(
        client, f"{simulator.base_url}/hooks/orders", json={"a": 1}, headers=WEBHOOK_HEADERS
    )
    assert (status, text) == (200, "ok")
    assert simulator.requests_for("webhook")[0].json == {"a": 1}


# -- fault injection ---------------------------------------------------------------------


async def test_faults_are_consumed_in_order(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Queued faults answer in the order queued, each for its count, then normal service."""
    simulator.inject("sendgrid", status=500)
    simulator.inject("sendgrid", status=429, retry_after="2", count=2)
    simulator.inject("sendgrid", status=503)
    statuses = [await send_sendgrid(simulator, client) for _ in range(5)]
    assert statuses == [500, 429, 429, 503, 202]


async def test_injected_status_carries_retry_after_and_the_providers_shape(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """An injected 429 has the Retry-After given and SendGrid's errors array."""
    simulator.inject("sendgrid", status=429, retry_after="Wed, 21 Oct 2037 07:28:00 GMT")
    headers = {"Authorization": f"Bearer {CREDENTIALS.sendgrid_api_key}"}
    url = f"{simulator.base_url}/v3/mail/send"
    status, body, answer_headers = await post(client, url, json=SENDGRID_BODY, headers=headers)
    assert status == 429
    assert answer_headers["Retry-After"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert body["errors"][0]["message"] == "simulated fault"


async def test_route_faults_do_not_touch_other_routes(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """A fault for "postmark.batch" leaves "/email" alone; a custom body is sent as given."""
    simulator.inject("postmark.batch", status=500, body={"custom": True})
    headers = {"X-Postmark-Server-Token": CREDENTIALS.postmark_server_token}
    message = {"From": "a@b.c", "To": "z@y.x", "Subject": "s", "TextBody": "t"}
    status, single, _ = await post(
        client, f"{simulator.base_url}/email", json=message, headers=headers
    )
    assert (status, single["ErrorCode"]) == (200, 0)
    status, batch, _ = await post(
        client, f"{simulator.base_url}/email/batch", json=[message], headers=headers
    )
    assert (status, batch) == (500, {"custom": True})


async def test_clear_faults_forgets_queued_faults(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """After clear_faults() requests are served normally."""
    simulator.inject("sendgrid", status=500, count=10)
    simulator.clear_faults()
    assert await send_sendgrid(simulator, client) == 202


async def test_dropped_connection_and_delay(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """drop_connection closes the connection unanswered; delay_seconds delays a success."""
    simulator.inject("sendgrid", drop_connection=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send_sendgrid(simulator, client)
    simulator.inject("sendgrid", delay_seconds=0.2)
    started = time.monotonic()
    assert await send_sendgrid(simulator, client) == 202
    assert time.monotonic() - started >= 0.2


async def test_timeout_holds_the_request_until_the_client_gives_up(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """A timeout fault never answers: the client's own timeout fires."""
    simulator.inject("resend", timeout=True)
    with pytest.raises(TimeoutError):
        await client.post(
            f"{simulator.base_url}/emails", json={}, timeout=aiohttp.ClientTimeout(total=0.2)
        )


async def test_stop_releases_held_requests_quickly() -> None:
    """Stopping the simulator does not wait for a request held by a timeout fault."""
    simulator = ProviderSimulator()
    await simulator.start()
    simulator.inject("resend", timeout=True)
    async with aiohttp.ClientSession() as client:
        pending = asyncio.ensure_future(client.post(f"{simulator.base_url}/emails", json={}))
        while simulator.count("resend") == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await simulator.stop()
        assert time.monotonic() - started < 2.0
        with pytest.raises(aiohttp.ClientError):
            await pending


def test_inject_refuses_a_zero_count() -> None:
    """count must be at least one."""
    with pytest.raises(ValueError, match="count"):
        ProviderSimulator().inject("sendgrid", count=0)


# -- recording and counting --------------------------------------------------------------


async def test_max_in_any_window_counts_the_busiest_window(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """Three quick requests, a pause, then two more: the busiest short window holds three."""
    for _ in range(3):
        await send_sendgrid(simulator, client)
    await asyncio.sleep(0.3)
    for _ in range(2):
        await send_sendgrid(simulator, client)
    assert simulator.count("sendgrid") == 5
    assert simulator.max_in_any_window("sendgrid", seconds=0.2) == 3
    assert simulator.max_in_any_window("sendgrid", seconds=10.0) == 5
    assert simulator.max_in_any_window("twilio") == 0


async def test_recording_can_be_turned_off(client: aiohttp.ClientSession) -> None:
    """With record=False nothing is kept but arrival times still count."""
    async with ProviderSimulator(record=False) as simulator:
        assert await send_sendgrid(simulator, client) == 202
        assert simulator.requests == []
        assert simulator.count("sendgrid") == 1


async def test_recorded_request_holds_what_was_received(
    simulator: ProviderSimulator, client: aiohttp.ClientSession
) -> None:
    """A recorded request has its provider, route, path, headers, raw and parsed body."""
    await send_sendgrid(simulator, client)
    (recorded,) = simulator.requests
    assert (recorded.provider, recorded.route, recorded.method, recorded.path) == (
        "sendgrid",
        "sendgrid",
        "POST",
        "/v3/mail/send",
    )
    assert recorded.headers["authorization"].startswith("Bearer ")
    assert recorded.json == SENDGRID_BODY
    assert recorded.body.startswith(b"{")
    assert recorded.received_at <= time.monotonic()


def test_runs_standalone_help(capsys: pytest.CaptureFixture[str]) -> None:
    """The module runs as a program; --help describes it."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--port" in capsys.readouterr().out
