"""FastAPI dependencies: the runtime, a database session, and the authenticated caller."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.api.runtime import Runtime
from guestcomms.audit.recorder import AUDITED_METHODS, watch_request
from guestcomms.domain.clock import utc_now
from guestcomms.errors import AuthenticationError, PermissionDeniedError
from guestcomms.organizations.keys import secret_matches, split_key
from guestcomms.organizations.models import ApiKey
from guestcomms.organizations.repository import OrganizationRepository

LAST_USED_RESOLUTION = timedelta(minutes=1)  # write last_used_at at most this often per key

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer gck_...`")


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime (async though it awaits nothing: FastAPI runs a plain ``def``
    dependency in a worker thread, a hop every request would pay)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep, request: Request) -> AsyncIterator[AsyncSession]:
    """A session for this request; the route opens the transaction (``session.begin()``).
    A changing request's commits each append an audit entry (``audit.recorder``)."""
    async with runtime.sessions() as session:
        if request.method in AUDITED_METHODS:
            watch_request(session, request, await request.body())
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the organization and key behind the request."""

    organization_id: uuid.UUID
    key_id: uuid.UUID
    scopes: frozenset[str]
    key_prefix: str = ""

    def require(self, scope: str) -> None:
        """Raise ``PermissionDeniedError`` unless the key has ``scope`` (or ``admin``)."""
        if "admin" not in self.scopes and scope not in self.scopes:
            raise PermissionDeniedError(f"this API key lacks the {scope!r} scope")


async def get_caller(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Authenticate the bearer key; ``AuthenticationError`` (401) if it is missing, wrong or
    revoked, ``TooManyRequestsError`` (429) if the key is over its rate limit. ``last_used_at``
    is written at most once per ``LAST_USED_RESOLUTION``, not on every request."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError()
    parts = split_key(credentials.credentials)
    if parts is None:
        raise AuthenticationError("malformed API key: expected gck_<prefix>_<secret>")
    prefix, secret = parts
    async with runtime.sessions() as session, session.begin():
        key = await OrganizationRepository(session).key_by_prefix(prefix)
        if key is None or key.revoked_at is not None or not secret_matches(secret, key.secret_hash):
            raise AuthenticationError("unknown or revoked API key")
        now = utc_now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            await session.execute(
                update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now)
            )
    if runtime.api_limiter is not None:  # after authenticating: strangers count for no key
        await runtime.api_limiter.hit(key.id, per_minute=key.rate_limit)
    caller = Caller(
        organization_id=key.organization_id,
        key_id=key.id,
        scopes=frozenset(key.scopes),
        key_prefix=key.prefix,
    )
    request.state.caller = caller  # the audit hook's actor (audit.recorder)
    return caller


CallerDep = Annotated[Caller, Depends(get_caller)]
