"""Provider account logic: a configuration is proven buildable before it is saved."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from guestcomms.channels.registry import get_kind
from guestcomms.domain.clock import utc_now
from guestcomms.domain.enums import Channel
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.domain.routing import Strategy
from guestcomms.errors import ConfigError, ConflictError, NotFoundError, ValidationFailedError
from guestcomms.providers.models import ChannelRoute, ProviderAccount
from guestcomms.providers.repository import ProviderRepository
from guestcomms.providers.schemas import ProviderCreate, ProviderOut, ProviderUpdate


def provider_out(account: ProviderAccount) -> ProviderOut:
    """The API view: credential names only."""
    return ProviderOut(
        id=to_public(IdKind.PROVIDER, account.id),
        name=account.name,
        kind=account.kind,
        channel=account.channel,
        settings=account.settings,
        credential_keys=sorted(account.credentials),
        priority=account.priority,
        weight=account.weight,
        cost_per_message=account.cost_per_message,
        rate_per_second=account.rate_per_second,
        burst=account.burst,
        enabled=account.enabled,
        status=account.status,
        status_reason=account.status_reason,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def _check_buildable(
    kind: str, settings: Mapping[str, Any], credentials: Mapping[str, str]
) -> None:
    try:
        get_kind(kind).build({**settings, **credentials}, session=None)
    except ConfigError as e:
        raise ValidationFailedError(str(e), field="settings") from e


class ProviderService:
    """Provider account use cases for one organization."""

    def __init__(self, repo: ProviderRepository) -> None:
        self._repo = repo

    async def create(self, data: ProviderCreate) -> ProviderAccount:
        """Save a new account; 422 if its kind or settings are wrong, 409 if the name is taken."""
        kind = get_kind(data.kind)
        _check_buildable(data.kind, data.settings, data.credentials)
        if await self._repo.by_name(data.name):
            raise ConflictError(f"a provider named {data.name!r} exists", field="name")
        account = ProviderAccount(
            name=data.name,
            kind=kind.name,
            channel=kind.channel.value,
            settings=data.settings,
            credentials=data.credentials,
            priority=data.priority,
            weight=data.weight,
            cost_per_message=data.cost_per_message,
            rate_per_second=data.rate_per_second,
            burst=data.burst,
            enabled=data.enabled,
            status="active",
        )
        await self._repo.add(account)
        return account

    async def get(self, account_id: uuid.UUID) -> ProviderAccount:
        """One account; 404 if it is not this organization's."""
        account = await self._repo.get(account_id)
        if account is None:
            raise NotFoundError("provider not found")
        return account

    async def update(self, account_id: uuid.UUID, data: ProviderUpdate) -> ProviderAccount:
        """Apply the fields given; new credentials make a failing account active again."""
        account = await self.get(account_id)
        changes = data.model_dump(exclude_unset=True)
        settings = changes.pop("settings", None)
        credentials = changes.pop("credentials", None)
        if settings is not None or credentials is not None:
            _check_buildable(
                account.kind,
                account.settings if settings is None else settings,
                account.credentials if credentials is None else credentials,
            )
        if settings is not None:
            account.settings = settings
        if credentials is not None:
            account.credentials = credentials
            account.status, account.status_reason = "active", None
        for key, value in changes.items():
            setattr(account, key, value)
        account.updated_at = utc_now()
        return account

    async def delete(self, account_id: uuid.UUID) -> None:
        """Delete an account."""
        await self._repo.delete(await self.get(account_id))

    async def set_strategy(self, channel: Channel, strategy: Strategy) -> ChannelRoute:
        """Choose how the channel's providers are ranked."""
        route = await self._repo.route(channel.value)
        if route is None:
            route = ChannelRoute(channel=channel.value, strategy=strategy.value)
            await self._repo.add_route(route)
        else:
            route.strategy = strategy.value
        return route
