"""The storm brake: when more distinct targets than a limit start executions within a window,
new executions are held until a human releases them (or aborts them).

Many targets failing at once rarely means many broken models: it is a shared dependency
(the feature store, the cluster, a bad deploy), and automation that rolls back 40 models
makes the incident bigger. The brake is global (the mappings file's `brake:`, over every
runbook) and per runbook (`limits.brake`, over that runbook's executions).

Its state is in the database (`storm_brakes`), so every replica sees it; the count is a query
over the brake's verdicts on the executions it admitted, taken under an advisory lock per
scope, so that two replicas cannot both admit the last target. A release or abort starts the
count afresh: the executions a human let through do not engage the brake again.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import Runbook, StormBrake
from app.db import utcnow
from app.durations import format_duration
from app.engine import states
from app.engine.brake_models import (
    ABORTED,
    ADMITTED,
    HELD,
    RELEASED,
    BrakeVerdict,
    StormBrakeRow,
)
from app.engine.executions import cancel_execution
from app.engine.guards import current_guard_state
from app.engine.models import Execution
from app.engine.ratelimit import lock_budget
from app.engine.transitions import transition_execution
from app.errors import Conflict, Invalid, NotFound
from app.events import record_event

GLOBAL_SCOPE = "global"
SYSTEM_ACTOR = "system:brake"


def runbook_scope(runbook_id: str) -> str:
    return f"runbook:{runbook_id}"


def describe_scope(scope: str) -> str:
    """How people read a scope: "the global brake", "the brake of runbook X"."""
    if scope == GLOBAL_SCOPE:
        return "the global brake"
    return f"the brake of runbook {scope.removeprefix('runbook:')}"


@dataclass(frozen=True)
class BrakeHold:
    """Why the brake holds an execution; `engaged_now`: this execution engaged it (page)."""

    scope: str
    config: StormBrake
    targets: tuple[str, ...]
    engaged_now: bool

    @property
    def reason(self) -> str:
        return (f"storm brake: {describe_scope(self.scope)} is engaged ({len(self.targets)} "
                f"distinct targets within {format_duration(self.config.within)}, more than "
                f"{self.config.targets}); a human releases or aborts the held executions")

    @property
    def page_text(self) -> str:
        """The page sent once when it engages: the targets say what they share."""
        return f"{self.reason}. Targets: {', '.join(self.targets)}"


def brakes_for(runbook: Runbook, global_brake: StormBrake | None) -> list[tuple[str, StormBrake]]:
    """The brakes that count an execution of `runbook`, the global one first (the order
    their locks are taken in, so that two workers never wait on each other)."""
    found = [(GLOBAL_SCOPE, global_brake)] if global_brake else []
    if runbook.limits.brake is not None:
        found.append((runbook_scope(runbook.id), runbook.limits.brake))
    return found


def page_channels(runbook: Runbook, config: StormBrake) -> list[str]:
    """Who is paged when a brake engages: its own `notify`, else every escalation tier of
    the runbook whose execution engaged it and its `on_failure_notify`."""
    if config.notify:
        return list(config.notify)
    tiers = [channel for tier in runbook.escalation for channel in tier.notify]
    return list(dict.fromkeys([*tiers, *runbook.on_failure_notify]))


async def check_brakes(
    session: AsyncSession, execution: Execution, brakes: list[tuple[str, StormBrake]], *,
    now: dt.datetime | None = None,
) -> BrakeHold | None:
    """Admit a real execution that is about to start, or hold it (engaging a brake when its
    target is one too many). None: it may start, and its target now counts."""
    if not brakes:
        return None
    now = now or utcnow()
    for scope, _ in brakes:
        await lock_budget(session, f"brake:{scope}")
    admit: list[str] = []
    for scope, config in brakes:
        verdict = await _verdict(session, scope, execution.id)
        if verdict is not None and verdict.verdict in (ADMITTED, RELEASED):
            continue
        hold = await _hold(session, scope, config, execution, now)
        if hold is not None:
            await _record(session, scope, execution, HELD, now, existing=verdict)
            if hold.engaged_now:
                await _engage(session, hold, execution, now)
            return hold
        admit.append(scope)
    for scope in admit:
        await _record(session, scope, execution, ADMITTED, now)
    return None


async def _hold(session: AsyncSession, scope: str, config: StormBrake, execution: Execution,
                now: dt.datetime) -> BrakeHold | None:
    row = await session.get(StormBrakeRow, scope)
    if row is not None and row.engaged:
        return BrakeHold(scope, config, tuple(row.targets), engaged_now=False)
    since = now - config.within
    if row is not None and row.released_at is not None and row.released_at > since:
        since = row.released_at
    counted = set((await session.execute(
        select(BrakeVerdict.target).distinct().where(
            BrakeVerdict.scope == scope, BrakeVerdict.verdict == ADMITTED,
            BrakeVerdict.decided_at >= since)
    )).scalars())
    if execution.target in counted or len(counted) < config.targets:
        return None
    return BrakeHold(scope, config, (*sorted(counted), execution.target), engaged_now=True)


async def _engage(session: AsyncSession, hold: BrakeHold, execution: Execution,
                  now: dt.datetime) -> None:
    row = await session.get(StormBrakeRow, hold.scope)
    if row is None:
        row = StormBrakeRow(scope=hold.scope, released_at=None)
        session.add(row)
    row.engaged, row.engaged_at, row.targets = True, now, list(hold.targets)
    row.limit_targets = hold.config.targets
    row.within_seconds = int(hold.config.within.total_seconds())
    row.reason = hold.reason
    row.updated_at, row.updated_by = now, SYSTEM_ACTOR
    record_event(session, kind="brake.engaged", entity="guard", actor=SYSTEM_ACTOR,
                 execution_id=execution.id, reason=hold.reason,
                 data={"scope": hold.scope, "targets": list(hold.targets),
                       "limit": hold.config.targets,
                       "within": format_duration(hold.config.within)})


async def _verdict(session: AsyncSession, scope: str, execution_id: int) -> BrakeVerdict | None:
    return (await session.execute(select(BrakeVerdict).where(
        BrakeVerdict.scope == scope, BrakeVerdict.execution_id == execution_id)
    )).scalar_one_or_none()


async def _record(session: AsyncSession, scope: str, execution: Execution, verdict: str,
                  now: dt.datetime, existing: BrakeVerdict | None = None) -> None:
    if existing is None:
        session.add(BrakeVerdict(scope=scope, execution_id=execution.id,
                                 target=execution.target, verdict=verdict, decided_at=now))
    elif existing.verdict != verdict:
        existing.verdict, existing.decided_at = verdict, now


# -- what a human does --------------------------------------------------------------------

@dataclass(frozen=True)
class BrakeOutcome:
    scope: str
    verb: str  # release | abort
    execution_ids: tuple[int, ...]


async def release_brake(
    session: AsyncSession, scope: str, *, abort: bool, actor: str, reason: str,
    source_addr: str | None = None,
) -> BrakeOutcome:
    """Release an engaged brake: its held executions start (`abort`: they are cancelled).
    Either way the count of distinct targets starts afresh now."""
    if not reason.strip():
        raise Invalid("say why the brake is released or aborted (`reason`): it is recorded")
    await lock_budget(session, f"brake:{scope}")
    row = await session.get(StormBrakeRow, scope, with_for_update=True)
    if row is None:
        raise NotFound(f"{describe_scope(scope)} has never engaged")
    if not row.engaged:
        raise Conflict(f"{describe_scope(scope)} is not engaged (released by {row.updated_by} "
                       f"at {row.updated_at.isoformat(timespec='seconds')})")
    now = utcnow()
    held = (await session.execute(select(BrakeVerdict).where(
        BrakeVerdict.scope == scope, BrakeVerdict.verdict == HELD).order_by(BrakeVerdict.id)
    )).scalars().all()
    verb = "abort" if abort else "release"
    done = "aborted" if abort else "released"
    why = f"storm brake {done} by {actor}: {reason}"
    moved: list[int] = []
    guards = await current_guard_state(session)
    for verdict in held:
        verdict.verdict, verdict.decided_at = (ABORTED if abort else RELEASED), now
        execution = await session.get(Execution, verdict.execution_id)
        if execution is None or execution.status != states.PAUSED:
            continue  # resolved or cancelled meanwhile: nothing to let through
        if abort:
            await cancel_execution(session, execution.id, actor=actor, reason=why,
                                   source_addr=source_addr)
        elif guards.holds(execution.runbook_id) is None:
            # Another guard (the kill switch, a pause) keeps it waiting: its release lets it
            # start, and the brake's verdict already lets it through.
            await transition_execution(session, execution.id, states.PENDING, actor=actor,
                                       reason=why, wake_at=None, source_addr=source_addr)
        moved.append(execution.id)
    row.engaged, row.released_at = False, now
    row.reason, row.updated_at, row.updated_by = reason, now, actor
    record_event(session, kind=f"brake.{done}", entity="guard", actor=actor,
                 source_addr=source_addr, reason=reason,
                 data={"scope": scope, "executions": moved, "targets": row.targets})
    return BrakeOutcome(scope, verb, tuple(moved))


@dataclass(frozen=True)
class HeldExecution:
    execution_id: int
    runbook_id: str
    target: str
    status: str


@dataclass(frozen=True)
class BrakeView:
    """A brake as the guards page and GET /api/v1/guards show it."""

    scope: str
    engaged: bool
    limit_targets: int
    within_seconds: int
    targets: list[str]
    engaged_at: dt.datetime | None
    released_at: dt.datetime | None
    reason: str
    updated_at: dt.datetime
    updated_by: str
    held: list[HeldExecution]

    @property
    def within(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.within_seconds)


async def list_brakes(session: AsyncSession) -> list[BrakeView]:
    """Every brake that ever engaged, engaged ones first, with the executions it holds."""
    rows = (await session.execute(select(StormBrakeRow).order_by(
        StormBrakeRow.engaged.desc(), StormBrakeRow.scope))).scalars().all()
    held = (await session.execute(
        select(BrakeVerdict.scope, Execution.id, Execution.runbook_id, Execution.target,
               Execution.status)
        .join(Execution, Execution.id == BrakeVerdict.execution_id)
        .where(BrakeVerdict.verdict == HELD).order_by(BrakeVerdict.id))).all()
    by_scope: dict[str, list[HeldExecution]] = {}
    for scope, *rest in held:
        by_scope.setdefault(scope, []).append(HeldExecution(*rest))
    return [BrakeView(r.scope, r.engaged, r.limit_targets, r.within_seconds, list(r.targets),
                      r.engaged_at, r.released_at, r.reason, r.updated_at, r.updated_by,
                      by_scope.get(r.scope, []))
            for r in rows]
