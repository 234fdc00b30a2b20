"""The audit log: the event table, read-only, filtered, paged by id, exportable as JSON lines.

Every state change, approval, guard change, catalog reload and manual action is an event row
written in the transaction of the change itself, with its actor and source address.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.events import Event
from app.history.schemas import EventOut


@dataclass(frozen=True)
class AuditFilter:
    kind: str | None = None
    actor: str | None = None
    execution_id: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


class AuditPage(BaseModel):
    items: list[EventOut]
    next_cursor: int | None


def _query(flt: AuditFilter):  # type: ignore[no-untyped-def]
    query = select(Event)
    if flt.kind:
        # A prefix selects a family: `approval` matches approval.approve and approval.reject.
        query = query.where((Event.kind == flt.kind) | Event.kind.startswith(f"{flt.kind}."))
    if flt.actor:
        query = query.where(Event.actor == flt.actor)
    if flt.execution_id is not None:
        query = query.where(Event.execution_id == flt.execution_id)
    if flt.since:
        query = query.where(Event.created_at >= _utc(flt.since))
    if flt.until:
        query = query.where(Event.created_at < _utc(flt.until))
    return query


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def audit_page(session: AsyncSession, flt: AuditFilter, *, after: int | None = None,
                     limit: int = 100) -> AuditPage:
    """Events oldest first (the order they happened), after the id `after`."""
    query = _query(flt)
    if after is not None:
        query = query.where(Event.id > after)
    rows = list((await session.execute(query.order_by(Event.id).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(items=[EventOut.of(e) for e in rows],
                     next_cursor=rows[-1].id if more and rows else None)


async def export_jsonl(factory: async_sessionmaker[AsyncSession], flt: AuditFilter, *,
                       chunk: int = 1000) -> AsyncIterator[bytes]:
    """Every matching event as one JSON object per line, streamed in chunks."""
    after: int | None = None
    while True:
        async with factory() as session:
            page = await audit_page(session, flt, after=after, limit=chunk)
        for event in page.items:
            yield (json.dumps(event.model_dump(mode="json"), separators=(",", ":")) + "\n").encode()
        if page.next_cursor is None:
            return
        after = page.next_cursor
