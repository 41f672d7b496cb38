"""Provider account endpoints and channel routing (admin scope: they hold secrets)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Response, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import path_id
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind
from guestcomms.providers.repository import ProviderRepository
from guestcomms.providers.schemas import (
    ProviderCreate,
    ProviderList,
    ProviderOut,
    ProviderUpdate,
    RouteIn,
    RouteOut,
)
from guestcomms.providers.service import ProviderService, provider_out
from guestcomms.security.ssrf import SsrfGuard

router = APIRouter(tags=["providers"])
SCOPE = "providers:write"


def _check_base_url(settings: Mapping[str, Any] | None, runtime: RuntimeDep) -> None:
    # the SSRF guard on a literal address; names are judged, resolved, at send time
    base_url = (settings or {}).get("base_url")
    if isinstance(base_url, str) and base_url:
        guard = SsrfGuard.from_settings(runtime.settings)
        guard.check_url(base_url, field="settings.base_url")


def _service(session: SessionDep, caller: CallerDep) -> ProviderService:
    return ProviderService(ProviderRepository(session, caller.organization_id))


@router.post("/v1/providers", status_code=status.HTTP_201_CREATED, summary="Add a provider")
async def create_provider(
    body: ProviderCreate, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> ProviderOut:
    """Configure a provider account. Its settings are checked by building the provider (and
    a `base_url` by the SSRF guard); credentials are stored and never returned (only their
    names are)."""
    caller.require(SCOPE)
    _check_base_url(body.settings, runtime)
    async with session.begin():
        account = await _service(session, caller).create(body)
    return provider_out(account)


@router.get("/v1/providers", summary="List providers")
async def list_providers(session: SessionDep, caller: CallerDep) -> ProviderList:
    """Every provider account, by channel and priority."""
    caller.require("providers:read")
    accounts = await ProviderRepository(session, caller.organization_id).all()
    return ProviderList(items=[provider_out(a) for a in accounts])


@router.get("/v1/providers/{provider_id}", summary="Get a provider")
async def get_provider(provider_id: str, session: SessionDep, caller: CallerDep) -> ProviderOut:
    """One provider account, with its status (``credentials_failing`` after a 401)."""
    caller.require("providers:read")
    key = path_id(IdKind.PROVIDER, provider_id, what="provider")
    return provider_out(await _service(session, caller).get(key))


@router.patch("/v1/providers/{provider_id}", summary="Update a provider")
async def update_provider(
    provider_id: str,
    body: ProviderUpdate,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
) -> ProviderOut:
    """Change routing, settings or credentials; new credentials reactivate a failing account."""
    caller.require(SCOPE)
    _check_base_url(body.settings, runtime)
    key = path_id(IdKind.PROVIDER, provider_id, what="provider")
    async with session.begin():
        account = await _service(session, caller).update(key, body)
    return provider_out(account)


@router.delete("/v1/providers/{provider_id}", status_code=204, summary="Delete a provider")
async def delete_provider(provider_id: str, session: SessionDep, caller: CallerDep) -> Response:
    """Remove a provider account."""
    caller.require(SCOPE)
    key = path_id(IdKind.PROVIDER, provider_id, what="provider")
    async with session.begin():
        await _service(session, caller).delete(key)
    return Response(status_code=204)


@router.put("/v1/routes/{channel}", summary="Set a channel's routing strategy")
async def set_route(
    channel: Channel, body: RouteIn, session: SessionDep, caller: CallerDep
) -> RouteOut:
    """priority_failover (default), weighted, round_robin, least_outstanding or lowest_cost."""
    caller.require(SCOPE)
    async with session.begin():
        route = await _service(session, caller).set_strategy(channel, body.strategy)
    return RouteOut(channel=route.channel, strategy=body.strategy)
