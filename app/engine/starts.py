"""Start executions, or attach alerts to the active ones, a batch at a time.

A storm arrives as webhooks of tens of new alerts, each starting an execution for its own
target. Starting them one by one cost about six round trips each (read the active execution,
a savepoint, the insert, its release, the link, the event), and the webhook's 2xx waits for
all of them. Here a batch costs a few statements whatever its size: one read of the active
executions of the batch's (runbook, target) pairs, one multi-row INSERT ... ON CONFLICT DO
NOTHING, one insert of the links and one of the events.

The per-target lock is still the partial unique index over active executions: when another
replica created an execution for a pair between our read and our insert, ON CONFLICT skips
the row and the pair attaches to the winner's execution instead, as the single start did.
The caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import Runbook
from app.catalog.signoffs import unsigned_note
from app.db import dialect_insert, utcnow
from app.engine import states
from app.engine.models import Execution, ExecutionAlert
from app.events import Event, event_row

Key = tuple[str, str]  # (runbook id, target): what the per-target lock is over
# Bind parameters per statement stay far below asyncpg's 32,767 whatever the batch's size.
_PAIRS_PER_READ = 500
_ROWS_PER_INSERT = 200
# A pair whose racing winner ended before we could read it is inserted again; a pair that
# keeps losing means something other than a race.
_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True)
class Start:
    """One request: start an execution of `runbook` on `target`, or attach the alert to the
    execution already active there."""

    runbook: Runbook
    version: str
    target: str
    params: dict[str, Any]
    alert_id: int | None = None
    alert_fired_at: dt.datetime | None = None
    trigger: str = "alert"
    started_by: str | None = None
    dry_run: bool = False
    parent_id: int | None = None
    reason: str = ""

    @property
    def key(self) -> Key:
        return (self.runbook.id, self.target)


@dataclass(frozen=True)
class Started:
    """What became of one Start: the execution it started or joined."""

    execution_id: int
    created: bool


@dataclass
class _Batch:
    """The rows one batch adds besides the executions themselves."""

    now: dt.datetime
    actor: str
    links: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    linked: set[tuple[int, int]] = field(default_factory=set)


async def start_or_attach_all(session: AsyncSession, starts: Sequence[Start], *,
                              actor: str) -> list[Started]:
    """Start or attach each request, in order: the first request for a pair with no active
    execution starts one, and the others for that pair (in this batch or later) join it."""
    batch = _Batch(now=utcnow(), actor=actor)
    active = await _active_ids(session, {start.key for start in starts})
    creators: dict[Key, Start] = {}
    for start in starts:
        if start.key not in active:
            creators.setdefault(start.key, start)
    created: dict[Key, int] = {}
    for _ in range(_ATTEMPTS):
        waiting = [start for key, start in creators.items()
                   if key not in created and key not in active]
        if not waiting:
            break
        created.update(await _insert(session, waiting, batch))
        lost = {start.key for start in waiting} - created.keys()
        active.update(await _active_ids(session, lost))
    else:
        unplaced = sorted(key for key in creators if key not in created and key not in active)
        if unplaced:
            raise RuntimeError(f"no execution could be started or joined for {unplaced}")
    execution_of = {**active, **created}  # disjoint: a pair inserted here was not active
    made_by = {key: creators[key] for key in created}
    await _link_joiners(session, starts, made_by, execution_of, batch)
    if batch.links:
        await session.execute(insert(ExecutionAlert.__table__), batch.links)
    if batch.events:
        await session.execute(insert(Event.__table__), batch.events)
    return [Started(execution_of[start.key], made_by.get(start.key) is start)
            for start in starts]


async def _pairs_in(session: AsyncSession, pair: tuple[Any, Any], columns: tuple[Any, ...],
                    pairs: Iterable[tuple[Any, Any]], *where: Any) -> list[Any]:
    """The rows of `columns` whose `pair` of columns is one of `pairs` (a row-value IN, in
    statements of _PAIRS_PER_READ pairs)."""
    pairs = sorted(set(pairs))
    rows: list[Any] = []
    for first in range(0, len(pairs), _PAIRS_PER_READ):
        rows.extend(await session.execute(select(*columns).where(
            tuple_(*pair).in_(pairs[first:first + _PAIRS_PER_READ]), *where)))
    return rows


async def _active_ids(session: AsyncSession, keys: Iterable[Key]) -> dict[Key, int]:
    """The active execution of each pair that has one."""
    pair = (Execution.runbook_id, Execution.target)
    rows = await _pairs_in(session, pair, (*pair, Execution.id), keys,
                           Execution.status.in_(states.ACTIVE_EXECUTION))
    return {(runbook_id, target): id_ for runbook_id, target, id_ in rows}


async def _insert(session: AsyncSession, starts: list[Start], batch: _Batch) -> dict[Key, int]:
    """Insert an execution per request; a pair another writer holds is skipped (ON CONFLICT
    on the active-target index) and left out of the answer."""
    rows = []
    notes: dict[Key, str | None] = {}
    unsigned: dict[tuple[str, str], str | None] = {}  # asked once per version in a batch
    for start in starts:
        # A version whose risky steps changed runs as a drill until a reviewer signs it off.
        version = (start.runbook.id, start.version)
        if not start.dry_run and version not in unsigned:
            unsigned[version] = await unsigned_note(session, *version)
        note = None if start.dry_run else unsigned[version]
        notes[start.key] = note
        rows.append({
            "runbook_id": start.runbook.id, "runbook_version": start.version,
            "target": start.target, "status": states.PENDING, "params": start.params,
            "dry_run": start.dry_run or note is not None, "trigger": start.trigger,
            "started_by": start.started_by, "created_at": batch.now, "updated_at": batch.now,
            "alert_fired_at": start.alert_fired_at, "parent_id": start.parent_id,
            "status_reason": note,
        })
    ids: dict[Key, int] = {}
    # The table, not the entity: the ORM's per-key work on a multi-row VALUES was a fifth
    # of a storm's intake.
    table = Execution.__table__
    statement = (dialect_insert(session)(table).on_conflict_do_nothing()
                 .returning(table.c.runbook_id, table.c.target, table.c.id))
    for first in range(0, len(rows), _ROWS_PER_INSERT):
        result = await session.execute(statement.values(rows[first:first + _ROWS_PER_INSERT]))
        ids.update({(runbook_id, target): id_ for runbook_id, target, id_ in result})
    for start in starts:
        if start.key in ids:
            _created(start, ids[start.key], notes[start.key], batch)
    return ids


def _created(start: Start, execution_id: int, unsigned: str | None, batch: _Batch) -> None:
    """The trigger link and the events of a new execution."""
    if start.alert_id is not None:
        batch.links.append({"execution_id": execution_id, "alert_id": start.alert_id,
                            "attached_at": batch.now, "role": "trigger"})
        batch.linked.add((execution_id, start.alert_id))
    drill = start.dry_run or unsigned is not None
    batch.events.append(event_row(
        kind="execution.created", entity="execution", actor=batch.actor,
        execution_id=execution_id, to_state=states.PENDING, at=batch.now,
        reason=f"{start.trigger}: {start.runbook.id} on {start.target}"
        + (" (drill)" if drill else "")
        + (f" from execution {start.parent_id}" if start.parent_id else "")
        + (f": {start.reason}" if start.reason else ""),
        data={"params": start.params, "alert_id": start.alert_id, "version": start.version,
              **({"parent_id": start.parent_id} if start.parent_id else {})},
    ))
    if unsigned is not None:
        batch.events.append(event_row(
            kind="signoff.drill", entity="execution", actor=batch.actor,
            execution_id=execution_id, reason=unsigned, at=batch.now,
            data={"runbook_id": start.runbook.id, "version": start.version}))


async def _link_joiners(session: AsyncSession, starts: Sequence[Start],
                        made_by: dict[Key, Start], execution_of: dict[Key, int],
                        batch: _Batch) -> None:
    """Attach each joining request's alert to its execution, once."""
    joiners = [(start, start.alert_id, execution_of[start.key]) for start in starts
               if start.alert_id is not None and made_by.get(start.key) is not start]
    if not joiners:
        return
    pair = (ExecutionAlert.execution_id, ExecutionAlert.alert_id)
    batch.linked |= {tuple(row) for row in await _pairs_in(
        session, pair, pair, [(id_, alert_id) for _, alert_id, id_ in joiners])}
    for start, alert_id, execution_id in joiners:
        if (execution_id, alert_id) in batch.linked:
            continue
        batch.linked.add((execution_id, alert_id))
        batch.links.append({"execution_id": execution_id, "alert_id": alert_id,
                            "attached_at": batch.now, "role": "joined"})
        batch.events.append(event_row(
            kind="alert.attached", entity="execution", actor=batch.actor,
            execution_id=execution_id, at=batch.now,
            reason=f"alert {alert_id} joined the active execution for {start.target}",
            data={"alert_id": alert_id}))


async def start_or_attach(
    session: AsyncSession, *, runbook: Runbook, version: str, target: str,
    params: dict[str, Any], alert_id: int | None, alert_fired_at: dt.datetime | None,
    actor: str, trigger: str = "alert", started_by: str | None = None, dry_run: bool = False,
    parent_id: int | None = None, reason: str = "",
) -> tuple[Execution, bool]:
    """One start (by hand, a drill, a runbook step): the execution and whether it is new."""
    started, = await start_or_attach_all(session, [Start(
        runbook=runbook, version=version, target=target, params=params, alert_id=alert_id,
        alert_fired_at=alert_fired_at, trigger=trigger, started_by=started_by,
        dry_run=dry_run, parent_id=parent_id, reason=reason)], actor=actor)
    execution = await session.get(Execution, started.execution_id)
    assert execution is not None  # inserted or read as active in this transaction
    return execution, started.created
