"""Guards that hold work before each step: the kill switch, runbook pauses, breakers."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.engine.models import Guard

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


async def current_guard_state(session: AsyncSession) -> GuardState:
    """Read the switches from the database (they are shared by every replica)."""
    rows = (await session.execute(select(Guard).where(Guard.engaged.is_(True)))).scalars()
    kill, kill_reason, paused = False, "", {}
    for guard in rows:
        if guard.key == GLOBAL:
            kill, kill_reason = True, guard.reason
        elif guard.key.startswith("runbook:"):
            paused[guard.key.removeprefix("runbook:")] = guard.reason or guard.kind
    return GuardState(kill_switch=kill, kill_reason=kill_reason, paused=paused)
