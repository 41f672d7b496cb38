"""The provider simulator: one local HTTP server that speaks the provider APIs we send to.

Tests, the demo and the benchmarks point providers' ``base_url`` at it. Each route checks
credentials and required fields the way the real API does, answers with the provider's
documented success or error shape, and records what it received::

    async with ProviderSimulator() as simulator:
        provider = SendGridProvider(api_key=simulator.credentials.sendgrid_api_key,
                                    base_url=simulator.base_url)
        ...
        assert simulator.requests[0].json["subject"] == "Save the date"

Routes (route name in brackets; a fault or count may target a provider or a route name):

    POST /v3/mail/send                               sendgrid   [sendgrid]
    POST /emails                                     resend     [resend]
    POST /v3/{domain}/messages                       mailgun    [mailgun]
    POST /email, /email/batch                        postmark   [postmark, postmark.batch]
    POST /2010-04-01/Accounts/{sid}/Messages.json    twilio     [twilio.messages]
    POST /2010-04-01/Accounts/{sid}/Calls.json       twilio     [twilio.calls]
    POST /sms/json                                   vonage     [vonage]
    POST /v1/projects/{project}/messages:send        fcm        [fcm]
    POST /token                                      fcm        [fcm.token]  (OAuth2 token)
    POST /push/{id}                                  webpush    [webpush]
    POST /hooks/{name}                               webhook    [webhook]

Faults are queued with :meth:`ProviderSimulator.inject` and consumed in order: an HTTP status
(with the provider's error shape, and ``Retry-After`` when given), a delay, a dropped
connection, or a timeout (the request is held until the client gives up). It runs standalone
too: ``python -m guestcomms.channels.simulator --port 8025``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import format_datetime, parseaddr
from types import TracebackType
from typing import Any

from aiohttp import web

from guestcomms.channels.http import basic_auth
from guestcomms.domain.clock import utc_now

__all__ = ["ProviderSimulator", "RecordedRequest", "SimulatorCredentials", "main"]

TIMEOUT_HOLD_SECONDS = 60.0  # how long a "timeout" fault holds a request (or until stop)
SHUTDOWN_SECONDS = 0.5  # how long stop() lets requests in flight finish
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_TOKEN_EXPIRES_SECONDS = 3600
POSTMARK_MAX_BATCH = 500  # messages per /email/batch request
_POSTMARK_TOKEN = "X-Postmark-Server-Token"  # noqa: S105 - a header name
_TWILIO_ERRORS = "https://www.twilio.com/docs/errors/"

Handler = Callable[[web.Request, "_Body"], Awaitable[web.StreamResponse]]
# fmt: off
_ROUTES = (  # method, path, route name, provider, handler method, form-encoded body
    ("POST", "/v3/mail/send", "sendgrid", "sendgrid", "_sendgrid", False),
    ("POST", "/emails", "resend", "resend", "_resend", False),
    ("POST", "/v3/{domain}/messages", "mailgun", "mailgun", "_mailgun", True),
    ("POST", "/email", "postmark", "postmark", "_postmark", False),
    ("POST", "/email/batch", "postmark.batch", "postmark", "_postmark_batch", False),
    ("POST", "/2010-04-01/Accounts/{sid}/Messages.json", "twilio.messages", "twilio",
     "_twilio_message", True),
    ("POST", "/2010-04-01/Accounts/{sid}/Calls.json", "twilio.calls", "twilio", "_twilio_call",
     True),
    ("POST", "/sms/json", "vonage", "vonage", "_vonage", True),
    ("POST", "/v1/projects/{project}/messages:send", "fcm", "fcm", "_fcm", False),
    ("POST", "/token", "fcm.token", "fcm", "_fcm_token", True),
    ("POST", "/push/{id}", "webpush", "webpush", "_webpush", False),
    ("POST", "/hooks/{name}", "webhook", "webhook", "_webhook", False),
)
# Required fields, in the order the provider checks them; "a|b" means either will do.
_RESEND_FIELDS = ("from", "to", "subject")
_MAILGUN_FIELDS = ("from", "to", "subject", "text|html|template")
_POSTMARK_FIELDS = ("From", "To", "Subject", "TextBody|HtmlBody")
_VONAGE_FIELDS = ("from", "to", "text")
_TWILIO_MESSAGE_FIELDS = {  # field -> Twilio's error code and message when it is missing
    "To": (21604, "A 'To' phone number is required."),
    "From|MessagingServiceSid": (21603, "A 'From' phone number is required."),
    "Body|MediaUrl": (21602, "Message body is required."),
}
_TWILIO_CALL_FIELDS = {
    "To": (21201, "No 'To' number is specified"),
    "From": (21213, "No 'From' number is specified"),
    "Url|Twiml|ApplicationSid": (21205, "Url, Twiml or ApplicationSid is required"),
}
_GRPC_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}
# fmt: on


@dataclass(frozen=True, slots=True)
class SimulatorCredentials:
    """The credentials each simulated API accepts; anything else gets its 401 shape.

    The defaults are well-known fakes (hence the ``noqa: S105``): the simulator guards nothing.
    """

    sendgrid_api_key: str = "SG.simulator-key"
    resend_api_key: str = "re_simulator_key"
    mailgun_api_key: str = "key-simulator"
    postmark_server_token: str = "postmark-simulator-token"  # noqa: S105
    twilio_account_sid: str = "AC" + "5" * 32
    twilio_auth_token: str = "twilio-simulator-token"  # noqa: S105
    vonage_api_key: str = "vonage-key"
    vonage_api_secret: str = "vonage-secret"  # noqa: S105
    fcm_access_token: str = "ya29.simulator-access-token"  # noqa: S105


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator received it."""

    provider: str
    route: str
    method: str
    path: str
    headers: Mapping[str, str]  # case-insensitive
    body: bytes  # empty for multipart bodies, which are parsed into ``form``
    json: Any  # the parsed JSON body, or None
    form: Mapping[str, str] | None  # the parsed form fields, or None
    received_at: float  # time.monotonic()


@dataclass(slots=True)
class _Fault:
    status: int | None
    retry_after: str | None
    delay_seconds: float
    drop_connection: bool
    timeout: bool
    body: bytes | str | Mapping[str, Any] | list[Any] | None
    remaining: int


@dataclass(slots=True)
class _Body:
    raw: bytes
    json: Any = None
    form: Mapping[str, str] | None = None


@dataclass(slots=True)
class _Route:
    method: str
    path: str
    name: str
    provider: str
    handler: Handler
    form: bool  # form-encoded (or multipart) rather than JSON


class ProviderSimulator:
    """An aiohttp server speaking the provider APIs (see the module docstring)."""

    def __init__(
        self, *, credentials: SimulatorCredentials | None = None, record: bool = True
    ) -> None:
        """``record=False`` keeps only arrival times (for benchmarks), not the requests."""
        self.credentials = credentials or SimulatorCredentials()
        self.record = record
        self.requests: list[RecordedRequest] = []
        self.inactive_recipients: set[str] = set()  # Postmark answers ErrorCode 406
        self.expired_push_targets: set[str] = set()  # Web Push ids (410), FCM tokens (404)
        self._arrivals: dict[str, list[float]] = defaultdict(list)
        self._faults: dict[str, list[_Fault]] = defaultdict(list)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self._routes = [
            _Route(method, path, name, provider, getattr(self, handler), form)
            for method, path, name, provider, handler, form in _ROUTES
        ]

    def application(self) -> web.Application:
        """The aiohttp application, for running under another server or test client."""
        app = web.Application()
        for route in self._routes:
            app.router.add_route(route.method, route.path, self._wrap(route))
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 = a free port); ``base_url`` says where."""
        self._stopping.clear()
        self._runner = web.AppRunner(
            self.application(), access_log=None, shutdown_timeout=SHUTDOWN_SECONDS
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{bound_host}:{bound_port}"

    async def stop(self) -> None:
        """Release held requests, close connections and stop listening."""
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ProviderSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def inject(
        self,
        target: str,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: str | None = None,
        delay_seconds: float = 0.0,
        drop_connection: bool = False,
        timeout: bool = False,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
    ) -> None:
        """Queue a fault for the next ``count`` requests to ``target`` (provider or route).

        ``status`` answers that status with the provider's error shape (or ``body``) and a
        ``Retry-After`` header when ``retry_after`` is given (``"2"`` or an HTTP-date). A
        fault with only ``delay_seconds`` delays a normal answer; ``drop_connection`` closes
        the connection unanswered; ``timeout`` holds the request until the client gives up.
        With none of these, the fault is a 500. Faults are consumed in the order queued.
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        if status is None and not (delay_seconds or drop_connection or timeout):
            status = 500
        fault = _Fault(status, retry_after, delay_seconds, drop_connection, timeout, body, count)
        self._faults[target].append(fault)

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    def requests_for(self, target: str) -> list[RecordedRequest]:
        """The recorded requests of one provider or route, in order of arrival."""
        return [r for r in self.requests if target in (r.provider, r.route)]

    def count(self, target: str) -> int:
        """How many requests a provider or route received (recorded or not)."""
        return len(self._arrivals[target])

    def max_in_any_window(self, target: str, *, seconds: float = 1.0) -> int:
        """The most requests ``target`` received within any window of ``seconds``."""
        times = self._arrivals[target]  # appended in arrival order, so already sorted
        best = start = 0
        for end, arrived in enumerate(times):
            while arrived - times[start] > seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -- the request pipeline ------------------------------------------------------------

    def _wrap(self, route: _Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            received_at = time.monotonic()
            self._arrivals[route.provider].append(received_at)
            if route.name != route.provider:
                self._arrivals[route.name].append(received_at)
            body = await _read_body(request, form=route.form)
            if self.record:
                self.requests.append(
                    RecordedRequest(route.provider, route.name, request.method, request.path,
                                    request.headers, body.raw, body.json, body.form, received_at)
                )  # fmt: skip
            fault = self._take_fault(route)
            if fault is not None:
                response = await self._apply(fault, request, route)
                if response is not None:
                    return response
            return await route.handler(request, body)

        return handle

    def _take_fault(self, route: _Route) -> _Fault | None:
        for key in (route.name, route.provider):
            queue = self._faults.get(key)
            if queue:
                fault = queue[0]
                fault.remaining -= 1
                if fault.remaining == 0:
                    queue.pop(0)
                return fault
        return None

    async def _apply(
        self, fault: _Fault, request: web.Request, route: _Route
    ) -> web.StreamResponse | None:
        if fault.timeout or fault.delay_seconds:
            await self._hold(TIMEOUT_HOLD_SECONDS if fault.timeout else fault.delay_seconds)
        if fault.timeout or fault.drop_connection:
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never written: the connection is gone
        if fault.status is None:
            return None
        if fault.body is not None:
            response = _raw(fault.status, fault.body)
        else:
            response = _error(route.provider, fault.status, "simulated fault")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response

    async def _hold(self, seconds: float) -> None:
        # A held request ends early when the simulator stops, so stop() never waits on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- email APIs ----------------------------------------------------------------------

    async def _sendgrid(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if _bearer(request) != self.credentials.sendgrid_api_key:
            return _error(
                "sendgrid", 401, "The provided authorization grant is invalid, expired, or revoked"
            )
        data = _dict(body.json)
        people = [_dict(p) for p in data.get("personalizations") or [{}]]
        present = {
            "personalizations.0.to": all(p.get("to") for p in people),
            "from.email": bool(_dict(data.get("from")).get("email")),
            "subject": bool(data.get("subject")) or all(p.get("subject") for p in people),
            "content": bool(data.get("content") or data.get("template_id")),
        }
        for name, ok in present.items():
            if not ok:
                return _error("sendgrid", 400, f"The {name} field is required.", field=name)
        return web.Response(status=202, headers={"X-Message-Id": secrets.token_urlsafe(16)})

    async def _resend(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if (key := _bearer(request)) != self.credentials.resend_api_key:
            return (
                _error("resend", 403, "API key is invalid.")
                if key
                else _error("resend", 401, "Missing API key in the authorization header.")
            )
        if missing := _missing(_dict(body.json), _RESEND_FIELDS):
            return _error("resend", 422, f"Missing `{missing}` field.")
        return web.json_response({"id": _uuid()})

    async def _mailgun(self, request: web.Request, body: _Body) -> web.StreamResponse:
        expected = basic_auth("api", self.credentials.mailgun_api_key)
        if request.headers.get("Authorization") != expected:
            return _error("mailgun", 401, "Forbidden")
        if missing := _missing(body.form or {}, _MAILGUN_FIELDS):
            return _error("mailgun", 400, f"'{missing}' parameter is missing")
        domain = request.match_info["domain"]
        message_id = f"<{utc_now():%Y%m%d%H%M%S}.{secrets.token_hex(8)}@{domain}>"
        return web.json_response({"id": message_id, "message": "Queued. Thank you."})

    async def _postmark(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if request.headers.get(_POSTMARK_TOKEN) != self.credentials.postmark_server_token:
            return _error("postmark", 401, "Request does not contain a valid Server token.")
        result = self._postmark_result(body.json)
        return web.json_response(result, status=422 if result["ErrorCode"] else 200)

    async def _postmark_batch(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if request.headers.get(_POSTMARK_TOKEN) != self.credentials.postmark_server_token:
            return _error("postmark", 401, "Request does not contain a valid Server token.")
        if not isinstance(body.json, list) or len(body.json) > POSTMARK_MAX_BATCH:
            return _error(
                "postmark", 422, "A batch is a JSON array of up to 500 messages.", code=410
            )
        return web.json_response([self._postmark_result(m) for m in body.json])

    def _postmark_result(self, message: Any) -> dict[str, Any]:
        data = _dict(message)
        if missing := _missing(data, _POSTMARK_FIELDS):
            return {"ErrorCode": 300, "Message": f"Invalid email request: {missing} missing"}
        # Parsing the address costs more than the rest of the request: only when it matters.
        address = parseaddr(str(data["To"]))[1].lower() if self.inactive_recipients else ""
        if address and address in self.inactive_recipients:
            return {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been "
                f"marked as inactive. Found inactive addresses: {address}.",
            }
        return {"To": data["To"], "SubmittedAt": utc_now().isoformat(), "MessageID": _uuid(),
                "ErrorCode": 0, "Message": "OK"}  # fmt: skip

    # -- SMS, voice, push and webhooks ---------------------------------------------------

    async def _twilio_message(self, request: web.Request, body: _Body) -> web.StreamResponse:
        return self._twilio(
            request, body, prefix="SM", kind="Messages", fields=_TWILIO_MESSAGE_FIELDS
        )

    async def _twilio_call(self, request: web.Request, body: _Body) -> web.StreamResponse:
        return self._twilio(request, body, prefix="CA", kind="Calls", fields=_TWILIO_CALL_FIELDS)

    def _twilio(
        self,
        request: web.Request,
        body: _Body,
        *,
        prefix: str,
        kind: str,
        fields: Mapping[str, tuple[int, str]],
    ) -> web.StreamResponse:
        account, token = self.credentials.twilio_account_sid, self.credentials.twilio_auth_token
        if request.match_info["sid"] != account or request.headers.get(
            "Authorization"
        ) != basic_auth(account, token):
            return _error("twilio", 401, "Authenticate", code=20003)
        form = body.form or {}
        if missing := _missing(form, tuple(fields)):
            code, message = fields[missing]
            return _error("twilio", 400, message, code=code)
        sid = f"{prefix}{secrets.token_hex(16)}"
        return web.json_response(
            {"sid": sid, "account_sid": account, "to": form["To"], "from": form.get("From"),
             "body": form.get("Body"), "status": "queued", "direction": "outbound-api",
             "api_version": "2010-04-01", "date_created": format_datetime(utc_now(), usegmt=True),
             "uri": f"/2010-04-01/Accounts/{account}/{kind}/{sid}.json"},
            status=201,
        )  # fmt: skip

    async def _vonage(self, request: web.Request, body: _Body) -> web.StreamResponse:
        data: Mapping[str, Any] = body.form or _dict(body.json)
        credentials = (self.credentials.vonage_api_key, self.credentials.vonage_api_secret)
        if (data.get("api_key"), data.get("api_secret")) != credentials:
            return _vonage_answer({"status": "4", "error-text": "Bad Credentials"})
        if missing := _missing(data, _VONAGE_FIELDS):
            return _vonage_answer({"status": "2", "error-text": f"Missing {missing} param"})
        return _vonage_answer(
            {"to": data["to"], "message-id": secrets.token_hex(8).upper(), "status": "0",
             "remaining-balance": "10.00000000", "message-price": "0.03330000", "network": "23410"}
        )  # fmt: skip

    async def _fcm(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if _bearer(request) != self.credentials.fcm_access_token:
            return _error("fcm", 401, "Request had invalid authentication credentials.")
        message = _dict(_dict(body.json).get("message"))
        if sum(1 for key in ("token", "topic", "condition") if message.get(key)) != 1:
            return _error("fcm", 400, "Exactly one of token, topic or condition is required.")
        if message.get("token") in self.expired_push_targets:
            return _error("fcm", 404, "Requested entity was not found.")
        project = request.match_info["project"]
        return web.json_response({"name": f"projects/{project}/messages/{_uuid()}"})

    async def _fcm_token(self, request: web.Request, body: _Body) -> web.StreamResponse:
        form = body.form or {}
        if form.get("grant_type") != JWT_BEARER_GRANT or not form.get("assertion"):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT assertion."},
                status=400,
            )
        token = self.credentials.fcm_access_token
        expires = FCM_TOKEN_EXPIRES_SECONDS
        return web.json_response(
            {"access_token": token, "expires_in": expires, "token_type": "Bearer"}
        )

    async def _webpush(self, request: web.Request, body: _Body) -> web.StreamResponse:
        if not request.headers.get("Authorization", "").lower().startswith(("vapid ", "webpush ")):
            return _error("webpush", 401, "Missing or invalid VAPID authorization")
        if "TTL" not in request.headers:
            return _error("webpush", 400, "Missing TTL header")
        if body.raw and request.headers.get("Content-Encoding") != "aes128gcm":
            return _error("webpush", 400, "Content-Encoding must be aes128gcm")
        if request.match_info["id"] in self.expired_push_targets:
            return _error("webpush", 410, "push subscription has unsubscribed or expired.")
        return web.Response(status=201, headers={"Location": f"/push/message/{_uuid()}"})

    async def _webhook(self, request: web.Request, body: _Body) -> web.StreamResponse:
        for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            if header not in request.headers:
                return _error("webhook", 400, f"missing {header} header")
        return web.Response(status=200, text="ok")


def _missing(data: Mapping[str, Any], fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` ("a|b": either) that ``data`` lacks, or None."""
    for spec in fields:
        if not any(data.get(name) for name in spec.split("|")):
            return spec
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


async def _read_body(request: web.Request, *, form: bool) -> _Body:
    content_type = request.content_type
    if form and content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = await request.post()
        raw = await request.read()  # cached for urlencoded; empty once multipart is parsed
        return _Body(raw, form={k: str(v) for k, v in fields.items()})
    raw = await request.read()
    if not raw:
        return _Body(raw)
    try:
        return _Body(raw, json=json.loads(raw))
    except ValueError:
        return _Body(raw)  # not JSON: each route then finds its required fields missing


def _uuid() -> str:
    token = secrets.token_hex(16)
    return f"{token[:8]}-{token[8:12]}-{token[12:16]}-{token[16:20]}-{token[20:]}"


def _raw(status: int, body: bytes | str | Mapping[str, Any] | list[Any]) -> web.Response:
    if isinstance(body, bytes):
        return web.Response(status=status, body=body)
    if isinstance(body, str):
        return web.Response(status=status, text=body)
    return web.json_response(body, status=status)


def _vonage_answer(message: Mapping[str, str]) -> web.Response:
    return web.json_response({"message-count": "1", "messages": [message]})


def _error(
    provider: str, status: int, message: str, *, code: int | None = None, field: str | None = None
) -> web.Response:
    """An error answer in ``provider``'s documented shape."""
    body: Any
    if provider == "sendgrid":
        body = {"errors": [{"message": message, "field": field, "help": None}]}
    elif provider == "resend":
        names = {401: "missing_api_key", 403: "invalid_api_key", 429: "rate_limit_exceeded"}
        name = names.get(status, "application_error" if status >= 500 else "validation_error")
        body = {"statusCode": status, "name": name, "message": message}
    elif provider == "mailgun":
        if status == 401:
            return web.Response(status=401, text=message)
        body = {"message": message}
    elif provider == "postmark":
        if status >= 500:
            return web.Response(status=status, text="Internal Server Error")
        default_codes = {401: 10, 429: 429}
        body = {"ErrorCode": code or default_codes.get(status, 300), "Message": message}
    elif provider == "twilio":
        twilio_code = code or (20429 if status == 429 else 20500 if status >= 500 else status)
        body = {
            "code": twilio_code,
            "message": message,
            "status": status,
            "more_info": f"{_TWILIO_ERRORS}{twilio_code}",
        }
    elif provider == "fcm":
        grpc = _GRPC_STATUS.get(status, "INTERNAL")
        body = {"error": {"code": status, "message": message, "status": grpc}}
    elif provider == "vonage":
        body = {"type": "about:blank", "title": message, "status": status}
    else:
        return web.Response(status=status, text=message)
    return web.json_response(body, status=status)


async def _serve(host: str, port: int) -> None:
    simulator = ProviderSimulator(record=False)
    await simulator.start(host, port)
    try:
        print(f"provider simulator listening on {simulator.base_url}", flush=True)
        await asyncio.Event().wait()  # until interrupted
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until interrupted: ``python -m guestcomms.channels.simulator``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
