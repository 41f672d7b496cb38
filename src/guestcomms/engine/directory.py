"""The live providers of each organization and channel, built from its provider accounts.

Accounts are read from the database and cached per organization for ``refresh_seconds``, so a
new or changed account takes effect within seconds without a restart; a provider instance is
rebuilt only when its account changed. A channel with no usable account falls back to the
process's default provider (SMTP or the dev outbox, from settings). An account whose
credentials a provider refused is taken out of rotation (``credentials_failing``) and an
operational event is recorded until someone fixes it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from guestcomms.channels.base import Provider
from guestcomms.channels.registry import get_kind
from guestcomms.domain.clock import utc_now
from guestcomms.domain.routing import ProviderChoice, Strategy
from guestcomms.errors import GuestcommsError
from guestcomms.providers.models import ChannelRoute, OperationalEvent, ProviderAccount
from guestcomms.security.ssrf import SsrfGuard

log = structlog.get_logger("guestcomms.directory")

DEFAULT_REFRESH_SECONDS = 5.0
HTTP_CONNECTIONS_PER_HOST = 64
CREDENTIALS_FAILING = "credentials_failing"


@dataclass(frozen=True, slots=True)
class Route:
    """One provider an organization may use for a channel, with its routing facts."""

    key: str  # names its breaker and rate bucket
    name: str  # recorded on each delivery it sends
    provider: Provider[Any]
    choice: ProviderChoice
    rate_per_second: float | None = None
    burst: int = 1
    account_id: uuid.UUID | None = None


@dataclass(slots=True)
class _OrgRoutes:
    loaded_at: float
    routes: dict[str, list[Route]] = field(default_factory=dict)
    strategies: dict[str, Strategy] = field(default_factory=dict)


class ProviderDirectory:
    """Builds and caches the providers of every organization the worker sends for."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        defaults: Mapping[str, Provider[Any]],
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        guard: SsrfGuard | None = None,
    ) -> None:
        self._sessions = sessions
        self._guard = guard or SsrfGuard()  # the strict policy unless told otherwise
        self._defaults = dict(defaults)
        self._refresh = refresh_seconds
        self._orgs: dict[uuid.UUID, _OrgRoutes] = {}
        self._built: dict[tuple[uuid.UUID, Any], Provider[Any]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Start the default providers and the shared HTTP session (behind the SSRF guard)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=self._guard.connector(limit_per_host=HTTP_CONNECTIONS_PER_HOST)
            )
        for provider in self._defaults.values():
            await provider.start()

    async def close(self) -> None:
        """Close every provider and the HTTP session."""
        for provider in [*self._defaults.values(), *self._built.values()]:
            await provider.close()
        self._built.clear()
        self._orgs.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def routes(
        self, organization_id: uuid.UUID, channel: str
    ) -> tuple[list[Route], Strategy]:
        """The usable providers of ``channel`` for the organization, and its strategy."""
        cached = self._orgs.get(organization_id)
        if cached is None or time.monotonic() - cached.loaded_at > self._refresh:
            cached = await self._load(organization_id)
            self._orgs[organization_id] = cached
        routes = (
            cached.routes[channel] if channel in cached.routes else self._default_route(channel)
        )
        return routes, cached.strategies.get(channel, Strategy.PRIORITY_FAILOVER)

    def forget(self, organization_id: uuid.UUID) -> None:
        """Reload the organization's accounts on next use."""
        self._orgs.pop(organization_id, None)

    def _default_route(self, channel: str) -> list[Route]:
        provider = self._defaults.get(channel)
        if provider is None:
            return []
        return [
            Route(
                key=f"default:{channel}",
                name=provider.name,
                provider=provider,
                choice=ProviderChoice(name=provider.name),
            )
        ]

    async def _load(self, organization_id: uuid.UUID) -> _OrgRoutes:
        async with self._sessions() as session:
            accounts = (
                await session.scalars(
                    select(ProviderAccount).where(
                        ProviderAccount.organization_id == organization_id
                    )
                )
            ).all()
            strategies = {
                r.channel: Strategy(r.strategy)
                for r in await session.scalars(
                    select(ChannelRoute).where(ChannelRoute.organization_id == organization_id)
                )
            }
        loaded = _OrgRoutes(loaded_at=time.monotonic(), strategies=strategies)
        for account in accounts:
            # a channel the organization configured never falls back to the process default,
            # even when all its accounts are disabled or failing: mail must not leave through
            # a server the organization did not choose
            routes = loaded.routes.setdefault(account.channel, [])
            if account.enabled and account.status == "active":
                route = await self._route_for(account)
                if route is not None:
                    routes.append(route)
        return loaded

    async def _route_for(self, account: ProviderAccount) -> Route | None:
        version = (account.id, account.updated_at)
        provider = self._built.get(version)
        if provider is None:
            try:
                provider = get_kind(account.kind).build(
                    {**account.settings, **account.credentials}, session=self._http
                )
            except GuestcommsError as e:
                log.warning("directory.account_unusable", account=account.name, error=str(e))
                return None
            await provider.start()
            # the account changed: close what its previous version held open (SMTP pools)
            for old in [v for v in self._built if v[0] == account.id]:
                await self._built.pop(old).close()
            self._built[version] = provider
        return Route(
            key=f"{account.organization_id.hex}:{account.name}",
            name=account.name,
            provider=provider,
            choice=ProviderChoice(
                name=account.name,
                priority=account.priority,
                weight=account.weight,
                cost_per_message=account.cost_per_message,
            ),
            rate_per_second=account.rate_per_second,
            burst=account.burst or max(1, int(account.rate_per_second or 1)),
            account_id=account.id,
        )

    async def credentials_failed(self, route: Route, *, reason: str) -> None:
        """Take the route's account out of rotation and tell the operator, once."""
        if route.account_id is None:
            log.error("directory.default_credentials_failing", provider=route.name, error=reason)
            return
        async with self._sessions() as session, session.begin():
            account = await session.get(ProviderAccount, route.account_id)
            if account is None or account.status == CREDENTIALS_FAILING:
                return
            await session.execute(
                update(ProviderAccount)
                .where(ProviderAccount.id == route.account_id)
                .values(
                    status=CREDENTIALS_FAILING, status_reason=reason[:500], updated_at=utc_now()
                )
            )
            session.add(
                OperationalEvent(
                    organization_id=account.organization_id,
                    kind="provider.credentials_failing",
                    subject=account.name,
                    detail={"kind": account.kind, "error": reason[:500]},
                )
            )
        self.forget(account.organization_id)
        log.error("directory.credentials_failing", provider=route.name, error=reason)
