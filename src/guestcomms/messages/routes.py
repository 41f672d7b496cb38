"""Message endpoints: send, read with deliveries and history, list, cancel."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from guestcomms.api.deps import CallerDep, RuntimeDep, SessionDep
from guestcomms.api.params import Limit, body_id, page_size, path_id, split_page
from guestcomms.contacts.repository import ContactRepository
from guestcomms.db.notify import notify_workers
from guestcomms.domain.ids import IdKind, to_public
from guestcomms.errors import IdempotencyMismatchError, ValidationFailedError
from guestcomms.events.repository import EventRepository
from guestcomms.messages.models import IdempotencyRecord
from guestcomms.messages.repository import MessageRepository
from guestcomms.messages.schemas import (
    CancelResult,
    MessageCreate,
    MessageOut,
    MessagePage,
    MessageSummary,
)
from guestcomms.messages.service import MessageService
from guestcomms.messages.views import accepted_view, delivery_view
from guestcomms.templates.repository import TemplateRepository

router = APIRouter(prefix="/v1/messages", tags=["messages"])

MAX_IDEMPOTENCY_KEY_CHARS = 255


def _service(session: SessionDep, caller: CallerDep, runtime: RuntimeDep) -> MessageService:
    org = caller.organization_id
    return MessageService(
        messages=MessageRepository(session, org),
        contacts=ContactRepository(session, org),
        templates=TemplateRepository(session, org),
        max_recipients=runtime.settings.max_recipients_per_message,
        events=EventRepository(session, org),
    )


def _holding_for_emergencies(
    endpoint: Callable[..., Awaitable[JSONResponse]],
) -> Callable[..., Awaitable[JSONResponse]]:
    """In ``serve``, accepting an emergency pauses the embedded worker's bulk lanes (see
    channels/urgency.py): they would otherwise keep the event loop and SQLite's one writer
    busy while the request waits for both."""

    @functools.wraps(endpoint)
    async def endpoint_holding(*args: Any, **kwargs: Any) -> JSONResponse:
        hold = kwargs["runtime"].worker_hold
        if hold is None or kwargs["body"].priority != "emergency":
            return await endpoint(*args, **kwargs)
        with hold.holding():
            return await endpoint(*args, **kwargs)

    return endpoint_holding


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a message",
    responses={422: {"description": "invalid request; `field` names the culprit"}},
)
@_holding_for_emergencies
async def send_message(
    body: MessageCreate,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="repeat a request safely: the same key and body return the first result",
        ),
    ] = None,
) -> JSONResponse:
    """Write the message and one delivery per recipient in one transaction, then wake the
    workers. Returns 202: sending happens in the background; follow it at
    `GET /v1/messages/{id}`."""
    caller.require("messages:send")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS:
        raise ValidationFailedError("must be 1 to 255 characters", field="Idempotency-Key")
    request_hash = hashlib.sha256(
        json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
    ).hexdigest()
    repo = MessageRepository(session, caller.organization_id)
    try:
        async with session.begin():
            if idempotency_key is not None:
                replay = await _replay(repo, idempotency_key, request_hash)
                if replay is not None:
                    return replay
            created = await _service(session, caller, runtime).create(body)
            priority = created.message.priority
            await notify_workers(session, priority=priority)
            view = accepted_view(created.message, template_version=created.version.version)
            payload = view.model_dump(mode="json")
            if idempotency_key is not None:
                await repo.add_idempotency_record(
                    IdempotencyRecord(
                        key=idempotency_key,
                        request_hash=request_hash,
                        status_code=202,
                        response=payload,
                    )
                )
    except IntegrityError:
        # a concurrent request with the same key committed first: answer as it did
        if idempotency_key is None:
            raise
        async with session.begin():
            replay = await _replay(repo, idempotency_key, request_hash)
        if replay is None:
            raise
        return replay
    runtime.wake_workers(priority)
    return JSONResponse(payload, status_code=202)


async def _replay(repo: MessageRepository, key: str, request_hash: str) -> JSONResponse | None:
    record = await repo.idempotency_record(key)
    if record is None:
        return None
    if record.request_hash != request_hash:
        raise IdempotencyMismatchError(field="Idempotency-Key")
    return JSONResponse(
        record.response, status_code=record.status_code, headers={"Idempotent-Replayed": "true"}
    )


@router.get("", summary="List messages")
async def list_messages(
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    limit: Limit = None,
    before: Annotated[str | None, Query(description="cursor from the previous page")] = None,
) -> MessagePage:
    """Messages, newest first."""
    caller.require("messages:read")
    size = page_size(limit, settings=runtime.settings)
    repo = MessageRepository(session, caller.organization_id)
    cursor = body_id(IdKind.MESSAGE, before, field="before") if before else None
    rows, next_cursor = split_page(
        await repo.page(before=cursor, limit=size + 1), size=size, kind=IdKind.MESSAGE
    )
    templates = TemplateRepository(session, caller.organization_id)
    items = []
    for message in rows:
        version = await templates.version_by_id(message.template_version_id)
        number = version.version if version else 0
        items.append(MessageSummary(**accepted_view(message, template_version=number).model_dump()))
    return MessagePage(items=items, next_cursor=next_cursor)


@router.get("/{message_id}", summary="Get a message with its deliveries")
async def get_message(
    message_id: str,
    session: SessionDep,
    caller: CallerDep,
    runtime: RuntimeDep,
    deliveries_limit: Limit = None,
    deliveries_after: Annotated[str | None, Query(description="delivery cursor")] = None,
) -> MessageOut:
    """The message, its delivery counts by status, and a page of deliveries with events."""
    caller.require("messages:read")
    key = path_id(IdKind.MESSAGE, message_id, what="message")
    size = page_size(deliveries_limit, settings=runtime.settings, field="deliveries_limit")
    after = (
        body_id(IdKind.DELIVERY, deliveries_after, field="deliveries_after")
        if deliveries_after
        else None
    )
    repo = MessageRepository(session, caller.organization_id)
    message = await _service(session, caller, runtime).get(key)
    version = await TemplateRepository(session, caller.organization_id).version_by_id(
        message.template_version_id
    )
    deliveries, next_deliveries = split_page(
        await repo.deliveries(message.id, after=after, limit=size + 1),
        size=size,
        kind=IdKind.DELIVERY,
    )
    events = await repo.events_for([d.id for d in deliveries])
    summary = accepted_view(message, template_version=version.version if version else 0)
    return MessageOut(
        **summary.model_dump(),
        counts=await repo.status_counts(message.id),
        deliveries=[delivery_view(d, events.get(d.id, [])) for d in deliveries],
        next_deliveries_cursor=next_deliveries,
    )


@router.post("/{message_id}/cancel", summary="Cancel a message")
async def cancel_message(
    message_id: str, session: SessionDep, caller: CallerDep, runtime: RuntimeDep
) -> CancelResult:
    """Cancel every delivery not yet handed to a worker. 409 if all were already sent."""
    caller.require("messages:send")
    key = path_id(IdKind.MESSAGE, message_id, what="message")
    async with session.begin():
        message, cancelled, remaining = await _service(session, caller, runtime).cancel(key)
    return CancelResult(
        id=to_public(IdKind.MESSAGE, message.id),
        status=message.status,
        cancelled=cancelled,
        not_cancelled=remaining,
    )
