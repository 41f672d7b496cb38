"""Every analytics query: the raw aggregation (the rollup job's and the queries' tail), the
rollup tables, the watermark and the scope look-ups.

A raw aggregation counts each delivery once per figure, at the hour of its first event of
that kind (first by id: ids are UUIDv7, ordered by time), so the rollup job's windows add up
to exactly what one aggregation over the whole history would say.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    FromClause,
    Table,
    Uuid,
    and_,
    any_,
    bindparam,
    case,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from guestcomms.analytics.figures import COUNTER_NAMES, Counters
from guestcomms.analytics.models import (
    AnalyticsChannelRollup,
    AnalyticsLinkRollup,
    AnalyticsRollup,
    AnalyticsScopeRollup,
    AnalyticsWatermark,
)
from guestcomms.campaigns.models import Campaign
from guestcomms.db.queue import hour_bucket, parse_hour
from guestcomms.domain.clock import utc_now
from guestcomms.domain.ids import id_floor, id_time, new_id
from guestcomms.events.models import Event
from guestcomms.messages.models import Delivery, DeliveryEvent, Message
from guestcomms.templates.models import Template, TemplateVersion
from guestcomms.tracking.models import TrackingEvent

WATERMARK_SOURCE = "events"  # one position for delivery_events and tracking_events
ZERO_ID = uuid.UUID(int=0)
ID_SLACK = timedelta(seconds=1)
# a query lists its tail's deliveries (see ``tail_window``) when the tail spans at most this
# long and holds at most this many of them; past that a semi-join on the id range is cheaper
MAX_LISTED_SPAN = timedelta(hours=6)
MAX_LISTED_DELIVERIES = 10_000

# The figure each delivery event type counts towards (types not listed count nowhere). Types
# are the worker's (EventType) and the providers' normalised ones (ProviderEventType).
DELIVERY_FIGURES: dict[str, str] = {
    "sent": "sent",  # our hand-off, and a provider's "accepted": one delivery counts once
    "delivered": "delivered",
    "bounced": "bounced_hard",  # providers' hard bounces
    "soft_bounced": "bounced_soft",
    "complained": "complained",
    "unsubscribed": "unsubscribed",  # a provider's, or our own unsubscribe link's
    "blocked": "blocked",  # the compliance gate
    "failed": "failed",
    "rejected": "failed",  # the provider refused to send it
    "dead": "failed",  # retries exhausted
}

_d = cast(Table, Delivery.__table__)
_m = cast(Table, Message.__table__)
_r = cast(Table, AnalyticsRollup.__table__)
_l = cast(Table, AnalyticsLinkRollup.__table__)
_c = cast(Table, AnalyticsChannelRollup.__table__)
_s = cast(Table, AnalyticsScopeRollup.__table__)

# The dimensions of a rollup row, in key order, and where a raw row finds each.
DIMENSIONS = (
    "organization_id",
    "message_id",
    "campaign_id",
    "event_id",
    "template_version_id",
    "channel",
    "provider",
)
_RAW_DIMENSIONS: dict[str, ColumnElement[Any]] = {
    "organization_id": _d.c.organization_id,
    "message_id": _d.c.message_id,
    "campaign_id": _m.c.campaign_id,
    "event_id": _m.c.event_id,
    "template_version_id": _d.c.template_version_id,
    "channel": _d.c.channel,
    "provider": _d.c.provider,
}

_LINK_DIMENSIONS = ("organization_id", "message_id", "campaign_id", "link_index")
_CHANNEL_DIMENSIONS = ("organization_id", "channel", "provider")
_COARSE_SCOPES = (None, "channel", "provider")  # the scopes the channel rollups answer
_SCOPE_DIMENSIONS = ("organization_id", "scope", "scope_id")
# the scopes the scope rollups answer (a message's own rows are few: it reads its own)
SCOPED = ("campaign_id", "event_id", "template_version_id")
Key = tuple[Any, ...]  # (bucket, *DIMENSIONS)
LinkKey = tuple[Any, ...]  # (bucket, organization_id, message_id, campaign_id, link_index)


@dataclass(frozen=True, slots=True)
class Scope:
    """What to count: ``kind`` is a dimension name (``message_id``...) or None for the whole
    organization; ``value`` the id or name it must equal."""

    kind: str | None
    value: uuid.UUID | str | None = None

    def where(self, columns: Mapping[str, ColumnElement[Any]]) -> list[ColumnElement[bool]]:
        """The filter on ``columns`` (a dimension name -> column mapping)."""
        return [] if self.kind is None else [columns[self.kind] == self.value]


@dataclass(frozen=True, slots=True)
class LinkClicks:
    """Clicks on one link: deliveries that clicked it, and every human click."""

    message_id: uuid.UUID
    link_index: int | None
    url: str | None
    clicked: int
    clicked_total: int


@dataclass(slots=True)
class _Link:
    url: str | None
    clicked: int
    clicked_total: int


@dataclass(frozen=True, slots=True)
class Window:
    """Raw rows to read: ids in ``[lo, hi)`` (``hi`` None: no end), and for queries the
    organization, a scope and a time range on the events' ``created_at``."""

    lo: uuid.UUID
    hi: uuid.UUID | None = None
    organization_id: uuid.UUID | None = None
    scope: Scope = Scope(None)
    since: datetime | None = None
    until: datetime | None = None
    # the deliveries with an event in the window, when listed (a query's short tail): the
    # raw reads then look them up by index rather than joining the window's id range
    deliveries: tuple[uuid.UUID, ...] | None = None


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _raw_filters(window: Window, events: FromClause) -> list[Any]:
    """The window's filters on the counted events (ranked rows of an event table)."""
    ids, created = events.c.id, events.c.created_at
    out: list[Any] = [ids >= window.lo, *window.scope.where(_RAW_DIMENSIONS)]
    if window.hi is not None:
        out.append(ids < window.hi)
    if window.organization_id is not None:
        out.append(events.c.organization_id == window.organization_id)
    if window.since is not None:
        out.append(created >= window.since)
    if window.until is not None:
        out.append(created < window.until)
    return out


async def raw_counters(
    session: AsyncSession, window: Window, *, by: Sequence[str] = DIMENSIONS
) -> dict[Key, Counters]:
    """Counters of the delivery and tracking events in ``window``, by hour and the dimensions
    ``by`` (all of them for the rollups; none for a query's tail, which wants hours only)."""
    out: dict[Key, Counters] = {}
    if window.deliveries == ():
        return out
    dims = [_RAW_DIMENSIONS[name] for name in by]
    for key, figure, count in await _delivery_rows(session, window, dims):
        out.setdefault(key, Counters()).add({figure: count})
    for key, values in await _tracking_rows(session, window, dims):
        out.setdefault(key, Counters()).add(values)
    return out


def _id_bounds(window: Window) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The ids of the events in ``window``: a query's time range bounds them too (an event's
    id and created_at are made together; a second's slack either side), so a tail never
    reads past the range's end."""
    lo, hi = window.lo, window.hi
    if window.since is not None:
        lo = max(lo, id_floor(window.since - ID_SLACK))
    if window.until is not None:
        end = id_floor(window.until + ID_SLACK)
        hi = end if hi is None else min(hi, end)
    return lo, hi


def _touched(events: Table, window: Window, *, postgres: bool) -> list[ColumnElement[bool]]:
    """Restricts a ranking to the deliveries with an event in ``window``: their earlier
    events are read too (a first event may lie before ``lo``), no other delivery's."""
    out: list[ColumnElement[bool]] = []
    if window.organization_id is not None:
        out.append(events.c.organization_id == window.organization_id)
    if window.deliveries is not None:
        if postgres:  # one array parameter, one statement to prepare whatever the count
            listed = bindparam("listed", list(window.deliveries), type_=ARRAY(Uuid()))
            out.append(events.c.delivery_id == any_(listed))
        else:  # one expanding parameter: the ids are not each made a literal when built
            listed = bindparam("listed", list(window.deliveries), expanding=True)
            out.append(events.c.delivery_id.in_(listed))
        return out
    lo, hi = _id_bounds(window)
    if lo == ZERO_ID and hi is None:
        return out  # the whole history: every delivery is touched
    inner = events.alias("w")
    bounds = [inner.c.id >= lo]
    if hi is not None:
        bounds.append(inner.c.id < hi)
    # the id range alone: it is what is selective (the organization may hold every row)
    out.append(events.c.delivery_id.in_(select(inner.c.delivery_id).where(*bounds)))
    return out


def _rank(partition: Sequence[ColumnElement[Any]], events: Table) -> ColumnElement[int]:
    """1 for a delivery's first event (by id) of the partition's kind, 2, 3... after it."""
    return func.row_number().over(partition_by=partition, order_by=events.c.id)


async def _delivery_rows(
    session: AsyncSession, window: Window, dims: Sequence[ColumnElement[Any]]
) -> list[tuple[Key, str, int]]:
    # each delivery's events ranked per figure, then only the first of each counted: one
    # sort of the touched deliveries' events rather than a look-back per event
    e = cast(Table, DeliveryEvent.__table__)
    postgres = _is_postgres(session)
    figure = case(DELIVERY_FIGURES, value=e.c.type)
    ranked = (
        select(
            e.c.id,
            e.c.organization_id,
            e.c.delivery_id,
            e.c.created_at,
            figure.label("figure"),
            _rank([e.c.delivery_id, figure], e).label("rank"),
        )
        .where(e.c.type.in_(list(DELIVERY_FIGURES)), *_touched(e, window, postgres=postgres))
        .subquery("f")
    )
    bucket = hour_bucket(ranked.c.created_at, postgres=postgres)
    stmt = (
        select(bucket, *dims, ranked.c.figure, func.count())
        .select_from(
            ranked.join(_d, _d.c.id == ranked.c.delivery_id).join(_m, _m.c.id == _d.c.message_id)
        )
        .where(ranked.c.rank == 1, *_raw_filters(window, ranked))
        .group_by(bucket, *dims, ranked.c.figure)
    )
    rows = (await session.execute(stmt)).all()
    return [((parse_hour(r[0]), *r[1:-2]), r[-2], r[-1]) for r in rows]


def _ranked_tracking(window: Window, *, clicks_by_link: bool, postgres: bool) -> FromClause:
    """The touched deliveries' opens and clicks, each ranked among the delivery's events of
    its kind and verdict (or, ``clicks_by_link``, its human clicks on the same link)."""
    t = cast(Table, TrackingEvent.__table__)
    if clicks_by_link:
        where = [t.c.kind == "click", t.c.machine == false()]
        partition = [t.c.delivery_id, t.c.link_index]
    else:
        where = [t.c.kind.in_(("open", "click"))]
        partition = [t.c.delivery_id, t.c.kind, t.c.machine]
    return (
        select(
            t.c.id,
            t.c.organization_id,
            t.c.delivery_id,
            t.c.created_at,
            t.c.kind,
            t.c.machine,
            t.c.link_index,
            t.c.url,
            _rank(partition, t).label("rank"),
        )
        .where(*where, *_touched(t, window, postgres=postgres))
        .subquery("r")
    )


def _tracking_join(ranked: FromClause) -> FromClause:
    return ranked.join(
        _d,
        and_(_d.c.id == ranked.c.delivery_id, _d.c.organization_id == ranked.c.organization_id),
    ).join(_m, _m.c.id == _d.c.message_id)


async def _tracking_rows(
    session: AsyncSession, window: Window, dims: Sequence[ColumnElement[Any]]
) -> list[tuple[Key, dict[str, int]]]:
    r = _ranked_tracking(window, clicks_by_link=False, postgres=_is_postgres(session))
    first_human = case((and_(r.c.machine == false(), r.c.rank == 1), 1), else_=0)
    bucket = hour_bucket(r.c.created_at, postgres=_is_postgres(session))
    stmt = (
        select(bucket, *dims, r.c.kind, r.c.machine, func.count(), func.sum(first_human))
        .select_from(_tracking_join(r))
        .where(*_raw_filters(window, r))
        .group_by(bucket, *dims, r.c.kind, r.c.machine)
    )
    out: list[tuple[Key, dict[str, int]]] = []
    for row in (await session.execute(stmt)).all():
        name = "opened" if row[-4] == "open" else "clicked"
        values = (
            {f"{name}_machine": row[-2]}
            if row[-3]
            else {f"{name}_total": row[-2], name: int(row[-1] or 0)}
        )
        out.append(((parse_hour(row[0]), *row[1:-4]), values))
    return out


async def raw_links(session: AsyncSession, window: Window) -> dict[LinkKey, _Link]:
    """Human clicks per link in ``window``, by hour and message."""
    if window.deliveries == ():
        return {}
    r = _ranked_tracking(window, clicks_by_link=True, postgres=_is_postgres(session))
    bucket = hour_bucket(r.c.created_at, postgres=_is_postgres(session))
    dims = (_d.c.organization_id, _d.c.message_id, _m.c.campaign_id, r.c.link_index)
    stmt = (
        select(
            bucket,
            *dims,
            func.max(r.c.url),
            func.count(),
            func.sum(case((r.c.rank == 1, 1), else_=0)),
        )
        .select_from(_tracking_join(r))
        .where(*_raw_filters(window, r))
        .group_by(bucket, *dims)
    )
    return {
        (parse_hour(row[0]), *row[1:5]): _Link(
            url=row[5], clicked=int(row[7] or 0), clicked_total=row[6]
        )
        for row in (await session.execute(stmt)).all()
    }


def _in_range(
    column: ColumnElement[datetime], since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """``since <= column < until``, either bound optional."""
    out: list[ColumnElement[bool]] = []
    if since is not None:
        out.append(column >= since)
    if until is not None:
        out.append(column < until)
    return out


def _summed(sums: Sequence[Any]) -> Counters:
    """Counters from ``sum()`` of each of COUNTER_NAMES, in order (NULL: no rows)."""
    return Counters(**{n: int(v or 0) for n, v in zip(COUNTER_NAMES, sums, strict=True)})


async def plan_each_query(session: AsyncSession) -> None:
    """On PostgreSQL, plan the transaction's statements for their own parameters.

    The driver prepares each statement, and after five runs PostgreSQL may switch to a
    generic plan that ignores the parameters: for "the events past the watermark" it guesses
    a third of the table and scans all of it (30x slower, measured at 1,000,000 events)."""
    if _is_postgres(session):
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


class RollupRepository:
    """The rollup job's writes: the watermark and the appended counters."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def position(self) -> uuid.UUID:
        """The watermark (locked until commit on PostgreSQL, so two jobs never overlap);
        created at zero the first time."""
        stmt = select(AnalyticsWatermark).where(AnalyticsWatermark.source == WATERMARK_SOURCE)
        if _is_postgres(self._session):
            stmt = stmt.with_for_update()
        mark = await self._session.scalar(stmt)
        if mark is None:
            self._session.add(AnalyticsWatermark(source=WATERMARK_SOURCE, position=ZERO_ID))
            await self._session.flush()
            return await self.position()
        return mark.position

    async def first_id_from(self, lo: uuid.UUID) -> uuid.UUID | None:
        """The smallest event id (of either table) at or past ``lo``, or None."""
        found = [
            # ORDER BY ... LIMIT 1 rather than min(): PostgreSQL has no min(uuid), and the
            # primary key's index answers it either way
            await self._session.scalar(
                select(table.id).where(table.id >= lo).order_by(table.id).limit(1)
            )
            for table in (DeliveryEvent, TrackingEvent)
        ]
        present = [f for f in found if f is not None]
        return min(present) if present else None

    async def advance(self, position: uuid.UUID) -> None:
        """Move the watermark to ``position``."""
        await self._session.execute(
            update(AnalyticsWatermark)
            .where(AnalyticsWatermark.source == WATERMARK_SOURCE)
            .values(position=position)
        )

    async def merge(self, counters: Mapping[Key, Counters], links: Mapping[LinkKey, _Link]) -> None:
        """Add the counters to their key's row of their hour, or make that row: the job
        runs every minute, and an hour's key keeps one row all the same (rows written
        by earlier versions, several per key, are summed by the queries as before)."""
        buckets = sorted({key[0] for key in counters} | {key[0] for key in links})
        if not buckets:
            return
        await self._merge(
            _r,
            DIMENSIONS,
            {key: c.as_dict() for key, c in counters.items()},
            buckets,
        )
        coarse: dict[Key, Counters] = {}
        scoped: dict[Key, Counters] = {}
        for key, c in counters.items():
            bucket, organization, _message, campaign, event, version, channel, provider = key
            coarse.setdefault((bucket, organization, channel, provider), Counters()).add(c)
            for scope, value in zip(SCOPED, (campaign, event, version), strict=True):
                if value is not None:
                    scoped.setdefault((bucket, organization, scope, value), Counters()).add(c)
        for table, dimensions, summed in (
            (_c, _CHANNEL_DIMENSIONS, coarse),
            (_s, _SCOPE_DIMENSIONS, scoped),
        ):
            await self._merge(
                table, dimensions, {key: c.as_dict() for key, c in summed.items()}, buckets
            )
        await self._merge(
            _l,
            _LINK_DIMENSIONS,
            {
                key: {"clicked": link.clicked, "clicked_total": link.clicked_total}
                for key, link in links.items()
            },
            buckets,
            extra={key: {"url": link.url} for key, link in links.items()},
        )

    async def _merge(
        self,
        table: Table,
        dimensions: Sequence[str],
        values: Mapping[Key, Mapping[str, int]],
        buckets: Sequence[datetime],
        *,
        extra: Mapping[Key, Mapping[str, Any]] | None = None,
    ) -> None:
        key_columns = [table.c.bucket, *(table.c[d] for d in dimensions)]
        existing: dict[Key, uuid.UUID] = {}
        organizations = sorted({key[1] for key in values})  # dimensions[0]: the index's lead
        found = await self._session.execute(
            select(table.c.id, *key_columns).where(
                table.c.organization_id.in_(organizations), table.c.bucket.in_(buckets)
            )
        )
        for row in found.all():
            existing.setdefault((parse_hour(row[1]), *row[2:]), row[0])
        updates: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        now = utc_now()
        for key, counts in values.items():
            row_id = existing.get((parse_hour(key[0]), *key[1:]))
            if row_id is not None:
                updates.append({"row_id": row_id, **{f"add_{n}": v for n, v in counts.items()}})
                continue
            inserts.append(
                {
                    "id": new_id(),
                    "created_at": now,
                    "bucket": key[0],
                    **dict(zip(dimensions, key[1:], strict=True)),
                    **counts,
                    **(extra or {}).get(key, {}),
                }
            )
        conn = await self._session.connection()
        if updates:
            names = [n for n in updates[0] if n != "row_id"]
            stmt = (
                update(table)
                .where(table.c.id == bindparam("row_id"))
                .values({n[4:]: table.c[n[4:]] + bindparam(n) for n in names})
            )
            await conn.execute(stmt, updates)
        for start in range(0, len(inserts), 1000):
            await conn.execute(insert(table), inserts[start : start + 1000])


class AnalyticsRepository:
    """One organization's analytics reads."""

    def __init__(self, session: AsyncSession, organization_id: uuid.UUID) -> None:
        self._session = session
        self._org = organization_id

    async def plan_each_query(self) -> None:
        """See the module's ``plan_each_query``."""
        await plan_each_query(self._session)

    async def position(self) -> uuid.UUID:
        """The watermark: rollups hold every event before it."""
        found = await self._session.scalar(
            select(AnalyticsWatermark.position).where(AnalyticsWatermark.source == WATERMARK_SOURCE)
        )
        return found or ZERO_ID

    async def rolled_up(
        self, scope: Scope, *, since: datetime, until: datetime
    ) -> dict[datetime, Counters]:
        """The rollups' counters by UTC hour in ``[since, until)``, from the smallest table
        that holds the scope."""
        if scope.kind in _COARSE_SCOPES:
            table, where = _c, scope.where({n: _c.c[n] for n in ("channel", "provider")})
        elif scope.kind in SCOPED:
            table, where = _s, [_s.c.scope == scope.kind, _s.c.scope_id == scope.value]
        else:
            table, where = _r, scope.where({column.name: column for column in _r.c})
        stmt = (
            select(table.c.bucket, *(func.sum(table.c[n]) for n in COUNTER_NAMES))
            .where(
                table.c.organization_id == self._org,
                table.c.bucket >= since,
                table.c.bucket < until,
                *where,
            )
            .group_by(table.c.bucket)
        )
        out: dict[datetime, Counters] = {}
        for bucket, *sums in (await self._session.execute(stmt)).all():
            out[bucket] = Counters(*sums)  # sums over at least one row: never NULL
        return out

    async def rolled_up_total(self, *, since: datetime, until: datetime) -> Counters:
        """The whole organization's rolled-up counters in ``[since, until)``, in one sum."""
        stmt = select(*(func.sum(_c.c[n]) for n in COUNTER_NAMES)).where(
            _c.c.organization_id == self._org, _c.c.bucket >= since, _c.c.bucket < until
        )
        return _summed((await self._session.execute(stmt)).one())

    async def tail_window(
        self, scope: Scope, *, since: datetime, until: datetime, position: uuid.UUID
    ) -> Window:
        """The raw events a query adds to the rollups: those past the watermark in its range,
        with their deliveries listed when they are few (the usual tail of the last hour)."""
        window = Window(
            lo=position, organization_id=self._org, scope=scope, since=since, until=until
        )
        lo, hi = _id_bounds(window)
        if id_time(hi or id_floor(utc_now())) - id_time(lo) > MAX_LISTED_SPAN:
            return window  # the job is far behind: a semi-join reads the range
        found: set[uuid.UUID] = set()
        for table in (cast(Table, DeliveryEvent.__table__), cast(Table, TrackingEvent.__table__)):
            stmt = (
                select(table.c.delivery_id)
                .distinct()
                .where(table.c.id >= lo, table.c.organization_id == self._org)
                .limit(MAX_LISTED_DELIVERIES + 1)
            )
            if hi is not None:
                stmt = stmt.where(table.c.id < hi)
            found.update(await self._session.scalars(stmt))
            if len(found) > MAX_LISTED_DELIVERIES:
                return window
        return replace(window, deliveries=tuple(found))

    async def tail(self, window: Window) -> dict[datetime, Counters]:
        """Counters by UTC hour of the raw events of ``window`` (``tail_window``)."""
        out: dict[datetime, Counters] = {}
        for key, c in (await raw_counters(self._session, window, by=())).items():
            out.setdefault(key[0], Counters()).add(c)
        return out

    async def links(self, window: Window) -> list[LinkClicks]:
        """Human clicks per link of the scope's messages, rollups and tail together."""
        merged: dict[tuple[uuid.UUID, int | None], _Link] = {}
        columns = {"message_id": _l.c.message_id, "campaign_id": _l.c.campaign_id}
        stmt = (
            select(
                _l.c.message_id,
                _l.c.link_index,
                func.max(_l.c.url),
                func.sum(_l.c.clicked),
                func.sum(_l.c.clicked_total),
            )
            .where(
                _l.c.organization_id == self._org,
                *_in_range(_l.c.bucket, window.since, window.until),
                *window.scope.where(columns),
            )
            .group_by(_l.c.message_id, _l.c.link_index)
        )
        for row in (await self._session.execute(stmt)).all():
            merged[(row[0], row[1])] = _Link(
                url=row[2], clicked=int(row[3]), clicked_total=int(row[4])
            )
        for key, link in (await raw_links(self._session, window)).items():
            found = merged.setdefault((key[2], key[4]), _Link(url=None, clicked=0, clicked_total=0))
            found.url = found.url or link.url
            found.clicked += link.clicked
            found.clicked_total += link.clicked_total
        return sorted(
            (
                LinkClicks(
                    message_id=m,
                    link_index=i,
                    url=v.url,
                    clicked=v.clicked,
                    clicked_total=v.clicked_total,
                )
                for (m, i), v in merged.items()
            ),
            key=lambda x: (x.message_id, -1 if x.link_index is None else x.link_index),
        )

    async def scope_label(self, kind: str, key: uuid.UUID) -> str | None:
        """The scope in words (``campaign "Save the date"``), or None when the organization
        has no such row."""
        if kind == "message_id":
            found = await self._session.scalar(
                select(Message.id).where(Message.organization_id == self._org, Message.id == key)
            )
            return None if found is None else "this message"
        if kind == "campaign_id":
            name = await self._session.scalar(
                select(Campaign.name).where(
                    Campaign.organization_id == self._org, Campaign.id == key
                )
            )
            return None if name is None else f'campaign "{name}"'
        if kind == "event_id":
            name = await self._session.scalar(
                select(Event.name).where(Event.organization_id == self._org, Event.id == key)
            )
            return None if name is None else f'event "{name}"'
        row = (
            await self._session.execute(
                select(Template.name, TemplateVersion.version)
                .join(Template, Template.id == TemplateVersion.template_id)
                .where(TemplateVersion.organization_id == self._org, TemplateVersion.id == key)
            )
        ).first()
        return None if row is None else f'template "{row[0]}" version {row[1]}'
