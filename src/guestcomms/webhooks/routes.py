"""Webhook endpoint endpoints: register, list, rotate the secret, delete."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import path_id
from guestcomms.channels.webhook import generate_secret
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import ConflictError, NotFoundError
from guestcomms.security.ssrf import SsrfGuard
from guestcomms.webhooks.models import WebhookEndpoint
from guestcomms.webhooks.repository import WebhookEndpointRepository
from guestcomms.webhooks.schemas import (
    EndpointCreate,
    EndpointList,
    EndpointOut,
    EndpointWithSecret,
    RotateIn,
)
from guestcomms.webhooks.secrets import active_secrets, rotate

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["webhooks"])
SCOPE = "providers:write"


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    """The API view: never a secret."""
    return EndpointOut(
        id=to_public(IdKind.WEBHOOK_ENDPOINT, endpoint.id),
        url=endpoint.url,
        description=endpoint.description,
        active_secrets=len(active_secrets(endpoint.secrets, now=utc_now())),
        created_at=endpoint.created_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Register a webhook endpoint")
async def create_endpoint(
    body: EndpointCreate, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> EndpointWithSecret:
    """Register a URL for the webhook channel (a contact's `webhook_url` must be one) and get
    its signing secret, once. Requests are signed per Standard Webhooks. 422 for a URL the
    SSRF guard refuses (a loopback, private or metadata address)."""
    caller.require(SCOPE)
    SsrfGuard.from_settings(runtime.settings).check_url(str(body.url), field="url")
    repo = WebhookEndpointRepository(session, caller.organization_id)
    secret = generate_secret()
    async with session.begin():
        if await repo.by_urls([str(body.url)]):
            raise ConflictError("this URL is registered already", field="url")
        endpoint = WebhookEndpoint(
            url=str(body.url),
            description=body.description,
            secrets=[{"secret": secret, "expires_at": None}],
        )
        await repo.add(endpoint)
    return EndpointWithSecret(**endpoint_out(endpoint).model_dump(), secret=secret)


@router.get("", summary="List webhook endpoints")
async def list_endpoints(session: SessionDep, caller: CallerDep) -> EndpointList:
    """Every endpoint (no secrets)."""
    caller.require("providers:read")
    endpoints = await WebhookEndpointRepository(session, caller.organization_id).all()
    return EndpointList(items=[endpoint_out(e) for e in endpoints])


@router.post("/{endpoint_id}/rotate", summary="Rotate an endpoint's secret")
async def rotate_secret(
    endpoint_id: str, body: RotateIn, session: SessionDep, caller: CallerDep
) -> EndpointWithSecret:
    """Make a new secret (shown once). Requests are signed with both the new and the previous
    secrets for `overlap_hours`, so the receiver can switch without missing any."""
    caller.require(SCOPE)
    key = path_id(IdKind.WEBHOOK_ENDPOINT, endpoint_id, what="webhook endpoint")
    async with session.begin():
        endpoint = await WebhookEndpointRepository(session, caller.organization_id).get(key)
        if endpoint is None:
            raise NotFoundError("webhook endpoint not found")
        secret, endpoint.secrets = rotate(
            endpoint.secrets, now=utc_now(), overlap=timedelta(hours=body.overlap_hours)
        )
    return EndpointWithSecret(**endpoint_out(endpoint).model_dump(), secret=secret)


@router.delete("/{endpoint_id}", status_code=204, summary="Delete a webhook endpoint")
async def delete_endpoint(endpoint_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Remove an endpoint; webhook deliveries to its URL then fail as unregistered."""
    caller.require(SCOPE)
    key = path_id(IdKind.WEBHOOK_ENDPOINT, endpoint_id, what="webhook endpoint")
    async with session.begin():
        repo = WebhookEndpointRepository(session, caller.organization_id)
        endpoint = await repo.get(key)
        if endpoint is None:
            raise NotFoundError("webhook endpoint not found")
        await repo.delete(endpoint)
    return Response(status_code=204)
