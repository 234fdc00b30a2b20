"""Guards that hold work before each step: the kill switch, runbook pauses, breakers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app import metrics
from app.db import after_commit, utcnow
from app.engine import states
from app.engine.models import Execution, Guard
from app.engine.transitions import transition_execution
from app.events import record_event

GLOBAL = "global"


def runbook_key(runbook_id: str) -> str:
    return f"runbook:{runbook_id}"


@dataclass(frozen=True)
class GuardState:
    """A snapshot of the switches: is everything stopped, and which runbooks are paused."""

    kill_switch: bool = False
    kill_reason: str = ""
    paused: dict[str, str] = field(default_factory=dict)  # runbook id -> reason

    def holds(self, runbook_id: str) -> str | None:
        """Why `runbook_id` may not run now, or None."""
        if self.kill_switch:
            return f"kill switch engaged: {self.kill_reason}".rstrip(": ")
        if runbook_id in self.paused:
            return f"runbook paused: {self.paused[runbook_id]}".rstrip(": ")
        return None


# The snapshot read in the session's current transaction: a round of decisions reads the
# switches once. `set_guard` forgets it, and so does the transaction's end.
_READ = "runbookd.guard_state"


@event.listens_for(Session, "after_transaction_end")
def _forget_state(session: Session, transaction: object) -> None:
    if getattr(transaction, "parent", None) is None:
        session.info.pop(_READ, None)


async def current_guard_state(session: AsyncSession) -> GuardState:
    """Read the switches from the database (they are shared by every replica)."""
    known = session.info.get(_READ)
    if isinstance(known, GuardState):
        return known
    rows = (await session.execute(select(Guard).where(Guard.engaged.is_(True)))).scalars()
    kill, kill_reason, paused = False, "", {}
    for guard in rows:
        if guard.key == GLOBAL:
            kill, kill_reason = True, guard.reason
        elif guard.key.startswith("runbook:"):
            paused[guard.key.removeprefix("runbook:")] = guard.reason or guard.kind
    state = GuardState(kill_switch=kill, kill_reason=kill_reason, paused=paused)
    session.info[_READ] = state
    return state


async def set_guard(
    session: AsyncSession, key: str, *, engaged: bool, actor: str, reason: str = "",
    kind: str = "manual", source_addr: str | None = None,
) -> Guard:
    """Engage or release a switch, recording who did it and why."""
    session.info.pop(_READ, None)
    guard = await session.get(Guard, key, with_for_update=True)
    now = utcnow()
    if guard is None:
        guard = Guard(key=key, engaged=engaged, kind=kind, reason=reason, updated_at=now,
                      updated_by=actor)
        session.add(guard)
    else:
        guard.engaged, guard.kind, guard.reason = engaged, kind, reason
        guard.updated_at, guard.updated_by = now, actor
    record_event(
        session, kind="guard.changed", entity="guard", actor=actor, source_addr=source_addr,
        reason=reason, data={"key": key, "engaged": engaged, "kind": kind},
    )
    if key.startswith("runbook:"):
        runbook = key.removeprefix("runbook:")
        value = 1 if engaged else 0
        after_commit(session, lambda: metrics.runbook_paused.labels(runbook).set(value))
    if not engaged:
        await _release_paused(session, key, actor=actor)
    return guard


async def _release_paused(session: AsyncSession, key: str, *, actor: str) -> None:
    """Paused work waits, it is never dropped: a released guard makes it runnable again."""
    state = await current_guard_state(session)
    query = select(Execution.id).where(Execution.status == states.PAUSED)
    if key.startswith("runbook:"):
        query = query.where(Execution.runbook_id == key.removeprefix("runbook:"))
    for execution_id in (await session.execute(query)).scalars().all():
        execution = await session.get(Execution, execution_id)
        if execution is not None and state.holds(execution.runbook_id) is None:
            await transition_execution(session, execution_id, states.PENDING, actor=actor,
                                       reason=f"guard {key} released", wake_at=None)


async def trip_breaker_if_needed(
    session: AsyncSession, runbook_id: str, *, failures: int, within: dt.timedelta,
) -> bool:
    """Pause a runbook whose executions failed `failures` times within `within`."""
    since = utcnow() - within
    count = (await session.execute(
        select(func.count()).select_from(Execution).where(
            Execution.runbook_id == runbook_id, Execution.status == states.FAILED,
            Execution.finished_at >= since, Execution.dry_run.is_(False),
        )
    )).scalar_one()
    if count < failures:
        return False
    guard = await session.get(Guard, runbook_key(runbook_id))
    if guard is not None and guard.engaged:
        return False
    reason = (f"circuit breaker: {count} failed executions within "
              f"{int(within.total_seconds())}s")
    await set_guard(session, runbook_key(runbook_id), engaged=True, actor="system:breaker",
                    reason=reason, kind="breaker")
    return True
