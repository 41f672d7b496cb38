"""Vonage (Nexmo) SMS API webhooks: delivery receipts and inbound messages.

Vonage sends the fields as query parameters (GET), a form body or a JSON body (POST); all
three are read.

Signed webhooks carry a ``sig`` parameter computed over every other parameter (names sorted,
each added as ``&name=value`` with ``&`` and ``=`` in values replaced by ``_``) and include a
Unix ``timestamp``, held to the tolerance. ``secret`` is the account's *signature secret*,
optionally prefixed with the method configured in the Vonage dashboard:
``md5hash:<secret>`` (the default when there is no prefix: MD5 of the string followed by the
secret), or ``md5:``, ``sha1:``, ``sha256:``, ``sha512:`` for HMAC of the string keyed with the
secret (Vonage recommends ``sha256``). The method comes from our configuration, never from the
request, so a signature cannot be downgraded.

In a delivery receipt, ``msisdn`` is the recipient and ``to`` is the sender id we used; in an
inbound message, ``msisdn`` is the guest and ``to`` is our number.

Matching: every send sets ``client-ref`` to our delivery id, which receipts echo.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

from guestcomms.channels.events import (
    InboundPayloadError,
    InboundRequest,
    InboundSignatureError,
    ProviderEvent,
    ProviderEventType,
    parse_timestamp,
    stable_event_id,
    text_or_none,
)
from guestcomms.channels.inbound.signing import (
    check_timestamp,
    constant_time_equals,
    require_secret,
)

NAME = "vonage"
SIGNATURE_METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
DEFAULT_SIGNATURE_METHOD = "md5hash"  # what Vonage's own SDKs assume without a method

T = ProviderEventType
# Delivery-receipt `status` -> our type.
STATUSES: dict[str, ProviderEventType] = {
    "accepted": T.SENT,  # accepted by the carrier, no outcome yet
    "buffered": T.DEFERRED,  # held by the carrier for a later attempt
    "delivered": T.DELIVERED,
    "expired": T.FAILED,  # the carrier gave up before it could deliver
    "failed": T.FAILED,
    "rejected": T.REJECTED,  # refused by Vonage or the carrier before sending
    "unknown": T.UNKNOWN,
}
# `err-code` meanings (Vonage's SMS delivery error codes); 0 means no error.
ERROR_REASONS: dict[str, str] = {
    "1": "Unknown",
    "2": "Absent subscriber (temporary)",
    "3": "Absent subscriber (permanent)",
    "4": "Call barred by user",
    "5": "Portability error",
    "6": "Anti-spam rejection",
    "7": "Handset busy",
    "8": "Network error",
    "9": "Illegal number: the user asked not to receive messages from this service",
    "10": "Illegal message",
    "11": "Unroutable",
    "12": "Destination unreachable",
    "13": "Subscriber age restriction",
    "14": "Number blocked by carrier",
    "15": "Pre-paid insufficient funds",
    "99": "General error",
}
OPTED_OUT_ERROR = "9"


def params_of(request: InboundRequest) -> dict[str, str]:
    """The webhook's fields from the query and, for POST, the form or JSON body."""
    params = dict(request.query.items())
    if request.method.upper() == "POST" and request.body:
        if request.content_type == "application/json":
            body = request.json()
            if not isinstance(body, dict):
                raise InboundPayloadError("A Vonage JSON webhook body is an object.")
            params.update({k: "" if v is None else str(v) for k, v in body.items()})
        else:
            params.update(request.form.items())
    return params


def signature_for(params: dict[str, str], *, secret: str, method: str) -> str:
    """The lower-case hex ``sig`` Vonage computes for ``params`` (without ``sig``)."""
    data = "".join(
        f"&{key}={params[key].replace('&', '_').replace('=', '_')}" for key in sorted(params)
    ).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(data + secret.encode("utf-8"), usedforsecurity=False).hexdigest()
    if method not in SIGNATURE_METHODS:
        raise InboundSignatureError(f"Unknown Vonage signature method {method!r}.")
    return hmac.new(secret.encode("utf-8"), data, method).hexdigest()


def _method_and_secret(secret: str) -> tuple[str, str]:
    method, sep, rest = secret.partition(":")
    if sep and method in SIGNATURE_METHODS:
        return method, rest
    return DEFAULT_SIGNATURE_METHOD, secret


def verify(request: InboundRequest, *, secret: str | None, now: datetime | None = None) -> None:
    """Verify the ``sig`` parameter and its ``timestamp``; raise InboundSignatureError."""
    method, key = _method_and_secret(require_secret(secret, NAME))
    try:
        params = params_of(request)
    except InboundPayloadError as e:
        raise InboundSignatureError("The Vonage request carries no signature.") from e
    signature = params.pop("sig", "")
    if not signature or not params.get("timestamp"):
        raise InboundSignatureError("The Vonage request is not signed.")
    check_timestamp(params["timestamp"], now=now)
    expected = signature_for(params, secret=key, method=method)
    if not constant_time_equals(expected, signature.lower()):
        raise InboundSignatureError("The Vonage signature does not match.")


def _receipt(params: dict[str, Any]) -> ProviderEvent:
    error = text_or_none(params.get("err-code"))
    error = None if error == "0" else error
    return ProviderEvent(
        type=STATUSES.get(str(params.get("status")), T.UNKNOWN),
        provider=NAME,
        provider_message_id=text_or_none(params.get("messageId")),
        recipient=text_or_none(params.get("msisdn")),
        occurred_at=parse_timestamp(params.get("message-timestamp")),
        event_id=stable_event_id(params),
        reason=ERROR_REASONS.get(error, f"Vonage error {error}") if error else None,
        error_code=error,
        from_number=text_or_none(params.get("to")),
        to_number=text_or_none(params.get("msisdn")),
        delivery_ref=text_or_none(params.get("client-ref")),
        opted_out=error == OPTED_OUT_ERROR,
        raw=params,
    )


def _inbound(params: dict[str, Any]) -> ProviderEvent:
    return ProviderEvent(
        type=T.INBOUND_SMS,
        provider=NAME,
        provider_message_id=text_or_none(params.get("messageId")),
        occurred_at=parse_timestamp(params.get("message-timestamp")),
        event_id=stable_event_id(params),
        text=params.get("text"),
        from_number=text_or_none(params.get("msisdn")),
        to_number=text_or_none(params.get("to")),
        raw=params,
    )


def parse(request: InboundRequest) -> list[ProviderEvent]:
    """The one receipt or inbound message; raises InboundPayloadError for anything else."""
    params = params_of(request)
    params.pop("sig", None)
    if "status" in params:
        return [_receipt(params)]
    if "msisdn" in params and ("text" in params or params.get("type") == "binary"):
        return [_inbound(params)]
    raise InboundPayloadError("A Vonage webhook is a delivery receipt or an inbound SMS.")
