"""Recording changes: the API's per-request hook and the CLI's actor.

API: ``watch_request`` arms the request's session so that each commit of a POST, PUT, PATCH
or DELETE request by an authenticated caller appends one entry in that same transaction,
just before it commits. A request that fails rolls back and leaves no entry; one that
commits always has one. Unauthenticated endpoints (inbound provider webhooks, tracking,
unsubscribe links) have no caller and are not recorded: they are high-volume and their
effects are recorded as delivery events and suppressions instead.
"""

from __future__ import annotations

import getpass
import json
import uuid
from typing import Any

from fastapi import Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from guestcomms.audit.repository import append_entry, record
from guestcomms.domain.ids import IdKind, to_public

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_DETAIL_FIELDS = 50  # field names kept in an entry's detail
MAX_PARSED_BODY_BYTES = 64 * 1024  # larger bodies (imports) are described by size alone
CLI_SOURCE = "cli"

# the public id kind of the rows a request may create, to name the target of a POST
_KINDS = {
    "contacts": IdKind.CONTACT,
    "templates": IdKind.TEMPLATE,
    "template_versions": IdKind.TEMPLATE_VERSION,
    "messages": IdKind.MESSAGE,
    "events": IdKind.EVENT,
    "campaigns": IdKind.CAMPAIGN,
    "households": IdKind.HOUSEHOLD,
    "provider_accounts": IdKind.PROVIDER,
    "webhook_endpoints": IdKind.WEBHOOK_ENDPOINT,
    "audiences": IdKind.AUDIENCE,
    "api_keys": IdKind.API_KEY,
    "organizations": IdKind.ORGANIZATION,
}


def cli_actor() -> str:
    """``cli:<user>``, the actor of a CLI command (``cli`` when the user is unknown)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name in a bare container
        return "cli"


def body_detail(body: bytes) -> dict[str, Any]:
    """What an entry keeps of a request body: the names of a JSON object's top-level fields,
    or an array's length. Never values: they may be personal data or secrets."""
    if not body:
        return {}
    if len(body) > MAX_PARSED_BODY_BYTES:
        return {"bytes": len(body)}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {"bytes": len(body)}
    if isinstance(data, dict):
        return {"fields": sorted(str(k) for k in data)[:MAX_DETAIL_FIELDS]}
    if isinstance(data, list):
        return {"items": len(data)}
    return {}


def _public_id(obj: object) -> str | None:
    kind = _KINDS.get(getattr(obj, "__tablename__", ""))
    key = getattr(obj, "id", None)
    return to_public(kind, key) if kind is not None and isinstance(key, uuid.UUID) else None


def watch_request(session: AsyncSession, request: Request, body: bytes) -> None:
    """Append an entry before each commit of ``session`` if ``request`` changes state and the
    caller authenticated (``request.state.caller``, set by the auth dependency)."""
    if request.method not in AUDITED_METHODS:
        return

    created: list[str] = []  # the public id of the first row this transaction created

    def _persisted(_: Session, obj: object) -> None:
        public = None if created else _public_id(obj)  # the first is the one named
        if public is not None:
            created.append(public)

    def _before_commit(sync_session: Session) -> None:
        caller = getattr(request.state, "caller", None)
        if caller is None:
            return
        sync_session.flush()  # rows still pending get their ids
        route = request.scope.get("route")
        params = request.path_params
        # what the request created (a POST), else the resource its path names
        target = next(iter(created), None) or (str(list(params.values())[-1]) if params else None)
        append_entry(
            sync_session,
            organization_id=caller.organization_id,
            actor=f"key:{caller.key_prefix}",
            action=f"{request.method} {getattr(route, 'path', request.url.path)}",
            target=target,
            detail=body_detail(body),
            source=request.client.host if request.client else "unknown",
        )

    def _transaction_over(_: Session) -> None:
        created.clear()

    sync = session.sync_session
    event.listen(sync, "pending_to_persistent", _persisted)
    event.listen(sync, "before_commit", _before_commit)
    event.listen(sync, "after_commit", _transaction_over)
    event.listen(sync, "after_rollback", _transaction_over)


async def record_cli(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append a CLI command's entry (actor ``cli:<user>``, source ``cli``) in the session's
    open transaction: every CLI command that changes data calls this before it commits."""
    await record(
        session,
        organization_id=organization_id,
        actor=cli_actor(),
        action=action,
        target=target,
        detail=detail,
        source=CLI_SOURCE,
    )
