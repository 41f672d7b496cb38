"""The queue's SQL: claim due deliveries under a lease, record outcomes fenced by the lease,
reap expired leases, release unfinished work. All dialect-specific SQL lives here.

On PostgreSQL the claim picks rows with ``FOR UPDATE SKIP LOCKED`` so concurrent workers never
take the same row; on SQLite every write transaction is ``BEGIN IMMEDIATE`` (see ``engine``),
which serialises claimers. Outcomes are written only for rows still holding the caller's lease
token: a worker whose lease expired and was taken over writes nothing (fencing).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Row,
    Select,
    Table,
    Update,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.domain.enums import CLAIMABLE, DeliveryStatus, EventType
from guestcomms.domain.ids import new_id
from guestcomms.inbox.models import InboxItem
from guestcomms.messages.models import Delivery, DeliveryEvent

_t = cast(Table, Delivery.__table__)
_events = cast(Table, DeliveryEvent.__table__)
_CLAIMABLE = [s.value for s in CLAIMABLE]


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a worker holds under ``lease_token`` until it records an outcome."""

    id: uuid.UUID
    organization_id: uuid.UUID
    message_id: uuid.UUID
    contact_id: uuid.UUID
    channel: str
    priority: int
    attempts: int
    idempotency_key: str
    template_version_id: uuid.UUID
    variables: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed delivery, to be written under its lease."""

    delivery_id: uuid.UUID
    organization_id: uuid.UUID
    status: DeliveryStatus
    event: EventType
    send_at: datetime | None = None  # the next attempt's time, for a retry
    provider: str | None = None
    provider_message_id: str | None = None
    error: str | None = None
    detail: dict[str, Any] | None = None
    channel: str | None = None  # the channel it went out on, when not the delivery's first
    skipped: tuple[dict[str, str], ...] = ()  # channels passed over, each with the reason
    # deferred before any attempt (quiet hours, a frequency cap): give back the attempt the
    # claim counted, as release() does
    uncount_attempt: bool = False


INAPP_PROVIDER = "inapp"  # channels.inapp.InAppProvider.name

_RETURNING = (
    _t.c.id,
    _t.c.organization_id,
    _t.c.message_id,
    _t.c.contact_id,
    _t.c.channel,
    _t.c.priority,
    _t.c.attempts,
    _t.c.idempotency_key,
    _t.c.template_version_id,
    _t.c.variables,
)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _to_claimed(row: Row[Any]) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=row.id,
        organization_id=row.organization_id,
        message_id=row.message_id,
        contact_id=row.contact_id,
        channel=row.channel,
        priority=row.priority,
        attempts=row.attempts,
        idempotency_key=row.idempotency_key,
        template_version_id=row.template_version_id,
        variables=row.variables,
    )


async def claim_batch(
    session: AsyncSession,
    *,
    limit: int,
    lease_seconds: float,
    now: datetime,
    max_priority: int | None = None,
    fair: bool = True,
) -> tuple[uuid.UUID, list[ClaimedDelivery]]:
    """Claim up to ``limit`` due deliveries in one statement: by priority, then shared
    between organizations, then oldest ``send_at`` first.

    The rule: a more urgent delivery of any organization goes before a less urgent one of
    every organization. Within one priority, organizations take turns (each one's oldest
    due row, then each one's second, ...), so while k organizations have due work each gets
    about ``limit / k`` of a batch, and what one cannot use goes to the others: one
    organization alone gets full batches. ``fair=False`` orders a priority by ``send_at``
    alone (oldest first, whoever it belongs to). ``max_priority`` (e.g. 0) claims only work
    that urgent: the emergency lane. Sets the rows ``sending`` with a fresh lease token
    (returned) and counts the attempt. The caller commits.
    """
    token = new_id()
    stmt = _claim_statement(postgres=_is_postgres(session), max_priority=max_priority, fair=fair)
    params = {
        "claim_now": now,
        "claim_limit": limit,
        "claim_token": token,
        "claim_lease_until": now + timedelta(seconds=lease_seconds),
    }
    rows = (await session.execute(stmt, params)).all()
    claimed = sorted((_to_claimed(r) for r in rows), key=lambda c: (c.priority, c.id))
    return token, claimed


def _claimable(table: FromClause) -> ColumnElement[bool]:
    """The claim index's own predicate, as literals: the planners (PostgreSQL's and
    SQLite's) use a partial index only when they can prove the query implies its WHERE,
    which they cannot do from bound parameters."""
    return table.c.status.in_([literal_column(f"'{s}'") for s in _CLAIMABLE])


def _claim_index_order(table: FromClause) -> tuple[ColumnElement[Any], ...]:
    """Order by the claim index's whole key. Ordering by organization_id alone, SQLite's
    planner picks ix_deliveries_org_status for the skip scan (it also covers the column)
    and walks every sent row of an organization; only the claim index gives this order."""
    return (table.c.organization_id, table.c.priority, table.c.send_at)


@functools.cache
def _claim_statement(*, postgres: bool, max_priority: int | None, fair: bool) -> Update:
    """The claim's ``UPDATE ... RETURNING``, built once per shape (it is a large tree, and
    building it and its cache key per claim cost more than running it)."""
    picked = _pick(postgres=postgres, max_priority=max_priority, fair=fair)
    if postgres:
        chosen = picked.cte("picked")
        target = _t.c.id == chosen.c.id
    else:
        target = _t.c.id.in_(picked.scalar_subquery())
    return (
        update(_t)
        .where(target)
        .values(
            status=DeliveryStatus.SENDING.value,
            lease_token=bindparam("claim_token", type_=_t.c.lease_token.type),
            lease_until=bindparam("claim_lease_until", type_=_t.c.lease_until.type),
            attempts=_t.c.attempts + 1,
            updated_at=bindparam("claim_now", type_=_t.c.updated_at.type),
        )
        .returning(*_RETURNING)
    )


def _pick(*, postgres: bool, max_priority: int | None, fair: bool) -> Select[tuple[uuid.UUID]]:
    """``SELECT id`` of the rows to claim (see :func:`claim_batch` for the rule).

    Three steps, each served by ``ix_deliveries_claim`` (organization_id, priority, send_at):
    the organizations with claimable rows, found by a skip scan (one index seek each,
    however many rows each has); each one's oldest due rows by priority, at most the limit
    (a LATERAL subquery locking with SKIP LOCKED on PostgreSQL, a correlated ``IN`` on
    SQLite); and the turns over those few rows. The cost grows with the number of
    organizations with due work, not with the backlog.
    """
    now = bindparam("claim_now", type_=_t.c.send_at.type)
    limit = bindparam("claim_limit", type_=Integer())
    seek = _t.alias("seek")
    first = (
        select(seek.c.organization_id)
        .where(_claimable(seek))
        .order_by(*_claim_index_order(seek))
        .limit(1)
        .scalar_subquery()
    )
    orgs = select(first.label("org")).cte("orgs", recursive=True)
    step = _t.alias("step")
    following = (
        select(step.c.organization_id)
        .where(_claimable(step), step.c.organization_id > orgs.c.org)
        .order_by(*_claim_index_order(step))
        .limit(1)
        .scalar_subquery()
    )
    orgs = orgs.union_all(select(following.label("org")).where(orgs.c.org.is_not(None)))

    d = _t.alias("d")
    due = [d.c.organization_id == orgs.c.org, _claimable(d), d.c.send_at <= now]
    if max_priority is not None:
        due.append(d.c.priority <= max_priority)
    oldest_first = select(d.c.id).where(*due).order_by(d.c.priority, d.c.send_at).limit(limit)
    if postgres:
        oldest = (
            oldest_first.add_columns(d.c.organization_id, d.c.priority, d.c.send_at)
            .with_for_update(skip_locked=True, key_share=True)
            .lateral("oldest")
        )
        candidates = select(oldest).select_from(orgs).join(oldest, true()).subquery("candidates")
    else:
        row = _t.alias("row")
        candidates = (
            select(row.c.id, row.c.organization_id, row.c.priority, row.c.send_at)
            .select_from(orgs)
            .join(row, row.c.id.in_(oldest_first.scalar_subquery()))
            .subquery("candidates")
        )
    turn = func.row_number().over(
        partition_by=candidates.c.organization_id,
        order_by=(candidates.c.priority, candidates.c.send_at),
    )
    ranked = select(
        candidates.c.id, candidates.c.priority, candidates.c.send_at, turn.label("turn")
    ).subquery("ranked")
    turns = [ranked.c.turn] if fair else []  # the turns, or oldest first within a priority
    return select(ranked.c.id).order_by(ranked.c.priority, *turns, ranked.c.send_at).limit(limit)


async def _fenced_ids(
    session: AsyncSession, *, ids: Sequence[uuid.UUID], token: uuid.UUID
) -> set[uuid.UUID]:
    """The ids among ``ids`` that still hold ``token``, locked until commit on PostgreSQL."""
    stmt = select(_t.c.id).where(
        _t.c.id.in_(ids),
        _t.c.lease_token == token,
        _t.c.status == DeliveryStatus.SENDING.value,
    )
    if _is_postgres(session):
        stmt = stmt.with_for_update()
    return set((await session.execute(stmt)).scalars())


async def record_outcomes(
    session: AsyncSession, *, token: uuid.UUID, outcomes: Sequence[Outcome], now: datetime
) -> set[uuid.UUID]:
    """Write ``outcomes`` and their events for rows still leased by ``token``.

    Returns the ids written; an outcome whose lease was lost is dropped (the row belongs to
    whoever holds it now). The caller commits.
    """
    if not outcomes:
        return set()
    kept = await _fenced_ids(session, ids=[o.delivery_id for o in outcomes], token=token)
    written = [o for o in outcomes if o.delivery_id in kept]
    if not written:
        return kept
    stmt = (
        update(_t)
        .where(_t.c.id == bindparam("b_id"))
        .values(
            status=bindparam("b_status"),
            send_at=func.coalesce(bindparam("b_send_at", type_=_t.c.send_at.type), _t.c.send_at),
            channel=func.coalesce(bindparam("b_channel", type_=_t.c.channel.type), _t.c.channel),
            provider=bindparam("b_provider"),
            provider_message_id=bindparam("b_provider_message_id"),
            last_error=bindparam("b_error"),
            attempts=_t.c.attempts - bindparam("b_uncount", type_=Integer()),
            lease_token=None,
            lease_until=None,
            updated_at=now,
        )
    )
    conn = await session.connection()
    await conn.execute(
        stmt.execution_options(synchronize_session=False),
        [
            {
                "b_id": o.delivery_id,
                "b_status": o.status.value,
                "b_send_at": o.send_at,
                "b_channel": o.channel,
                "b_provider": o.provider,
                "b_provider_message_id": o.provider_message_id,
                "b_error": o.error,
                "b_uncount": int(o.uncount_attempt),
            }
            for o in written
        ],
    )
    await insert_events(
        session,
        [(o.organization_id, o.delivery_id, o.event, _detail(o)) for o in written],
        now=now,
    )
    await _deliver_read_in_app_items(session, written, now=now)
    return kept


async def _deliver_read_in_app_items(
    session: AsyncSession, written: Sequence[Outcome], *, now: datetime
) -> None:
    # a guest may read or acknowledge an in-app item in the instant between the provider
    # publishing it and this record: the read found the delivery still `sending` and could
    # not mark it delivered, so it is done here
    sent = [
        o.delivery_id
        for o in written
        if o.provider == INAPP_PROVIDER and o.status is DeliveryStatus.SENT
    ]
    if not sent:
        return
    read = select(InboxItem.delivery_id).where(
        InboxItem.delivery_id.in_(sent), InboxItem.read_at.is_not(None)
    )
    await session.execute(
        update(_t)
        .where(_t.c.id.in_(read), _t.c.status == DeliveryStatus.SENT.value)
        .values(status=DeliveryStatus.DELIVERED.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def _detail(outcome: Outcome) -> dict[str, Any] | None:
    detail: dict[str, Any] = dict(outcome.detail or {})
    if outcome.provider:
        detail["provider"] = outcome.provider
    if outcome.provider_message_id:
        detail["provider_message_id"] = outcome.provider_message_id
    if outcome.error:
        detail["error"] = outcome.error
    if outcome.status is DeliveryStatus.RETRYING and outcome.send_at:
        detail["retry_at"] = outcome.send_at.isoformat()
    if outcome.event is EventType.DEFERRED and outcome.send_at:
        detail["deferred_until"] = outcome.send_at.isoformat()
    if outcome.channel:
        detail["channel"] = outcome.channel
    if outcome.skipped:
        detail["skipped_channels"] = list(outcome.skipped)
    return detail or None


async def insert_events(
    session: AsyncSession,
    events: Iterable[tuple[uuid.UUID, uuid.UUID, EventType | str, dict[str, Any] | None]],
    *,
    now: datetime,
) -> None:
    """Append events ``(organization_id, delivery_id, type, detail)`` in one statement."""
    rows = [
        {
            "id": new_id(),
            "organization_id": org_id,
            "delivery_id": delivery_id,
            "type": str(event),
            "detail": detail,
            "created_at": now,
        }
        for org_id, delivery_id, event, detail in events
    ]
    if rows:
        conn = await session.connection()
        await conn.execute(insert(_events), rows)


async def reap_expired(
    session: AsyncSession, *, now: datetime, max_attempts: int, limit: int = 1000
) -> int:
    """Return rows whose lease has passed to the queue (or to ``dead`` when out of attempts).

    A crashed worker's deliveries come back this way; the attempt it made was counted at
    claim. Returns how many rows were reaped. The caller commits.
    """
    expired = (
        select(_t.c.id)
        .where(_t.c.status == DeliveryStatus.SENDING.value, _t.c.lease_until < now)
        .limit(limit)
    )
    if _is_postgres(session):
        expired = expired.with_for_update(skip_locked=True)
    ids = list((await session.execute(expired)).scalars())
    if not ids:
        return 0
    requeued = update(_t).where(_t.c.id.in_(ids), _t.c.attempts < max_attempts)
    rows_back = (
        await session.execute(
            requeued.values(
                status=DeliveryStatus.QUEUED.value,
                lease_token=None,
                lease_until=None,
                updated_at=now,
            ).returning(_t.c.id, _t.c.organization_id)
        )
    ).all()
    rows_dead = (
        await session.execute(
            update(_t)
            .where(_t.c.id.in_(ids), _t.c.attempts >= max_attempts)
            .values(
                status=DeliveryStatus.DEAD.value,
                lease_token=None,
                lease_until=None,
                last_error="lease expired on the last attempt",
                updated_at=now,
            )
            .returning(_t.c.id, _t.c.organization_id)
        )
    ).all()
    await insert_events(
        session,
        [(r.organization_id, r.id, EventType.LEASE_EXPIRED, None) for r in rows_back]
        + [
            (r.organization_id, r.id, EventType.DEAD, {"error": "lease expired"}) for r in rows_dead
        ],
        now=now,
    )
    return len(ids)


async def release(
    session: AsyncSession, *, token: uuid.UUID, ids: Sequence[uuid.UUID], now: datetime
) -> int:
    """Give back claimed rows that were never attempted (a worker stopping), uncounting them."""
    if not ids:
        return 0
    result = await session.execute(
        update(_t)
        .where(
            _t.c.id.in_(ids),
            _t.c.lease_token == token,
            _t.c.status == DeliveryStatus.SENDING.value,
        )
        .values(
            status=DeliveryStatus.QUEUED.value,
            lease_token=None,
            lease_until=None,
            attempts=_t.c.attempts - 1,
            updated_at=now,
        )
        .returning(_t.c.id, _t.c.organization_id)
    )
    rows = result.all()
    await insert_events(
        session, [(r.organization_id, r.id, EventType.RELEASED, None) for r in rows], now=now
    )
    return len(rows)


def hour_bucket(column: ColumnElement[Any], *, postgres: bool) -> ColumnElement[Any]:
    """The UTC hour of a timestamp column, for analytics' GROUP BY (``parse_hour`` reads it):
    a UTC timestamp on PostgreSQL, the text ``YYYY-MM-DD HH`` of the stored UTC value on
    SQLite (which keeps timestamps as ISO text)."""
    if postgres:
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.substr(column, 1, 13)


def parse_hour(value: datetime | str) -> datetime:
    """An ``hour_bucket`` value as an aware UTC datetime."""
    if isinstance(value, str):
        return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
