"""API key endpoints: list the organization's keys, create one (its secret shown once), and
revoke one. All need the ``admin`` scope: a key that manages keys can grant itself anything."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.organizations.models import ApiKey
from guestcomms.organizations.repository import OrganizationRepository
from guestcomms.organizations.schemas import KeyCreate, KeyOut, KeyPage, KeyWithSecret
from guestcomms.organizations.service import add_key, revoke_key

router = APIRouter(prefix="/v1/keys", tags=["keys"])
SCOPE = "admin"


def key_out(key: ApiKey) -> KeyOut:
    """The API view of a key: never its secret or hash."""
    return KeyOut(
        id=to_public(IdKind.API_KEY, key.id),
        prefix=key.prefix,
        name=key.name,
        scopes=list(key.scopes),
        rate_limit=key.rate_limit,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


@router.get("", summary="List API keys")
async def list_keys(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    after: Annotated[
        str | None, Query(description="cursor: the last id of the previous page")
    ] = None,
) -> KeyPage:
    """The organization's keys, revoked ones included, oldest first (never a secret)."""
    caller.require(SCOPE)
    size = page_size(limit, settings=runtime.settings)
    cursor = body_id(IdKind.API_KEY, after, field="after") if after else None
    rows = await OrganizationRepository(session).keys_of(
        caller.organization_id, after=cursor, limit=size + 1
    )
    page, next_cursor = split_page(rows, size=size, kind=IdKind.API_KEY)
    return KeyPage(items=[key_out(k) for k in page], next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an API key")
async def create_key(body: KeyCreate, session: SessionDep, caller: CallerDep) -> KeyWithSecret:
    """Make a key of the caller's organization with `scopes` (see docs/api.md); the response
    holds the key itself, shown this once. 422 for an unknown scope."""
    caller.require(SCOPE)
    async with session.begin():
        key, plaintext = await add_key(
            OrganizationRepository(session),
            caller.organization_id,
            key_name=body.name,
            scopes=tuple(body.scopes),
            rate_limit=body.rate_limit,
        )
    return KeyWithSecret(**key_out(key).model_dump(), key=plaintext)


@router.post("/{key_id}/revoke", summary="Revoke an API key")
async def revoke(key_id: str, session: SessionDep, caller: CallerDep) -> KeyOut:
    """Revoke a key: it is refused (401) from then on. Revoking twice keeps the first time."""
    caller.require(SCOPE)
    key_uuid = path_id(IdKind.API_KEY, key_id, what="API key")
    async with session.begin():
        key = await revoke_key(OrganizationRepository(session), caller.organization_id, key_uuid)
    return key_out(key)
