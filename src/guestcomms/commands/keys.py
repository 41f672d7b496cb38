"""``guestcomms keys list`` and ``guestcomms keys revoke``: an organization's API keys (their
prefixes, scopes and last use; never a secret), and revoking one by id or prefix.
``keys create`` lives in ``cli.py``; all three are on the same ``keys`` command group."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from guestcomms.audit.recorder import record_cli
from guestcomms.commands.support import (
    console,
    organization_session,
    run_async,
    settings_or_exit,
)
from guestcomms.domain.ids import IdKind, InvalidIdError, from_public, to_public
from guestcomms.errors import NotFoundError
from guestcomms.organizations.models import ApiKey
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.service import revoke_key

Org = Annotated[str, typer.Option("--org", help="organization name")]
LIST_LIMIT = 10_000  # keys listed at most; an organization has a handful


def keys_list(org: Org) -> None:
    """List an organization's API keys, revoked ones included (never a secret)."""
    settings = settings_or_exit()

    async def main() -> list[ApiKey]:
        async with organization_session(settings, org) as (session, organization):
            repo = OrganizationRepository(session)
            return list(await repo.keys_of(organization.id, after=None, limit=LIST_LIMIT))

    table = Table(title=f"{org}: API keys")
    for column in ("id", "prefix", "name", "scopes", "rate/min", "last used", "revoked"):
        table.add_column(column, no_wrap=column in {"id", "prefix"})
    for key in run_async(main):
        table.add_row(
            to_public(IdKind.API_KEY, key.id),
            key.prefix,
            key.name,
            " ".join(key.scopes),
            "" if key.rate_limit is None else str(key.rate_limit),
            "" if key.last_used_at is None else key.last_used_at.isoformat(timespec="seconds"),
            "" if key.revoked_at is None else key.revoked_at.isoformat(timespec="seconds"),
        )
    console.print(table)


def keys_revoke(
    org: Org,
    key: Annotated[str, typer.Argument(help="the key's id (key_...) or its prefix")],
) -> None:
    """Revoke an API key: it is refused (401) from then on."""
    settings = settings_or_exit()

    async def main() -> str:
        async with organization_session(settings, org) as (session, organization):
            repo = OrganizationRepository(session)
            try:
                key_id = from_public(IdKind.API_KEY, key)
            except InvalidIdError:
                found = await repo.key_by_prefix(key)
                if found is None or found.organization_id != organization.id:
                    raise NotFoundError(f"{org} has no API key {key!r}") from None
                key_id = found.id
            revoked = await revoke_key(repo, organization.id, key_id)
            public = to_public(IdKind.API_KEY, revoked.id)
            await record_cli(
                session, organization_id=organization.id, action="keys.revoke", target=public
            )
            return public

    console.print(f"API key {run_async(main)} revoked")
