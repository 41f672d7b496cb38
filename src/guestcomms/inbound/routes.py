"""``POST /v1/inbound/{provider}/{org}``: provider webhooks (no API key: they are signed).

The answer is the JSON :class:`InboundResult`, except when a guest's text asks for a reply
(HELP) through Twilio: then it is TwiML, ``<Response><Message>help text</Message></Response>``,
which Twilio sends back to the guest from the number they texted. Other providers have no
such reply channel; their HELP is recorded (``applied``) but not answered (yet).
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from guestcomms.api.deps import SessionDep
from guestcomms.api.params import path_id
from guestcomms.channels.events import InboundRequest, InboundSignatureError
from guestcomms.channels.inbound import get_parser
from guestcomms.compliance.repository import SuppressionRepository
from guestcomms.domain.ids import IdKind
from guestcomms.inbound.repository import InboundRepository
from guestcomms.inbound.service import InboundService

router = APIRouter(prefix="/v1/inbound", tags=["inbound"])


class InboundResult(BaseModel):
    """What the webhook did."""

    received: int
    applied: int
    duplicates: int
    unmatched: int
    suppressed: int
    resubscribed: int = 0


@router.post(
    "/{provider}/{organization_id}",
    summary="Receive a provider's webhook",
    response_model=InboundResult,
    responses={200: {"content": {"text/xml": {}}}},
)
async def receive_webhook(
    provider: str, organization_id: str, request: Request, session: SessionDep
) -> InboundResult | Response:
    """Verify the provider's signature with the organization's secret for it (401 if unsigned
    or badly signed, and nothing changes), normalise its events, and apply them once each."""
    parser = get_parser(provider)
    org = path_id(IdKind.ORGANIZATION, organization_id, what="organization")
    inbound = InboundRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        body=await request.body(),
    )
    async with session.begin():
        repo = InboundRepository(session, org)
        secret = await repo.webhook_secret(provider)
        if secret is None:
            raise InboundSignatureError(f"no {provider} webhook secret is configured")
        parser.verify(inbound, secret=secret)
        events = parser.parse(inbound)
        report = await InboundService(
            repo=repo, suppressions=SuppressionRepository(session, org)
        ).apply(events)
    if report.reply is not None and provider == "twilio":
        return Response(content=twiml_message(report.reply), media_type="text/xml")
    return InboundResult(
        received=report.received,
        applied=report.applied,
        duplicates=report.duplicates,
        unmatched=report.unmatched,
        suppressed=report.suppressed,
        resubscribed=report.resubscribed,
    )


def twiml_message(text: str) -> str:
    """A TwiML document that replies ``text`` to the sender."""
    message = f"<Response><Message>{escape(text)}</Message></Response>"
    return f'<?xml version="1.0" encoding="UTF-8"?>{message}'


@router.get(
    "/{provider}/{organization_id}",
    summary="Receive a provider's webhook sent as GET (Vonage's default)",
    response_model=InboundResult,
)
async def receive_webhook_get(
    provider: str, organization_id: str, request: Request, session: SessionDep
) -> InboundResult | Response:
    """The same as the POST: Vonage calls back with GET and a query string by default."""
    return await receive_webhook(provider, organization_id, request, session)
