"""One timeline line per event, the same on the execution page and in the postmortem:
`2026-12-01 15:21:33 step rollback: pending → running (worker vm:8640)`.

A step is named as people and URLs name it (`change`, or `change.rollback` for its
rollback), found through the event's step run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.history.schemas import EventOut, StepOut


@dataclass(frozen=True)
class TimelineLine:
    at: str         # 2026-12-01 15:21:33 (UTC)
    subject: str    # "step rollback", "execution", "alert"
    what: str       # "pending → running", or the event's kind
    actor: str      # "worker vm:8640", "alice"
    reason: str
    is_move: bool

    def text(self) -> str:
        who = f"({self.actor})" if self.is_move else f"by {self.actor}"
        line = f"{self.at} {self.subject}: {self.what} {who}"
        return f"{line} — {self.reason}" if self.reason else line


def full_time(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def readable_actor(actor: str) -> str:
    """`worker:vm:8640` reads as `worker vm:8640`; a person's name stays as it is."""
    kind, sep, rest = actor.partition(":")
    return f"{kind} {rest}" if sep and kind in ("worker", "system") else actor


def step_refs(steps: list[StepOut]) -> dict[int, str]:
    """Step run row id to the name the page shows (`change`, `change.rollback`)."""
    return {s.id: s.ref for s in steps}


def describe(event: EventOut, refs: dict[int, str]) -> TimelineLine:
    ref = refs.get(event.step_run_id) if event.step_run_id is not None else None
    step = ref or event.step_id
    subject = f"step {step}" if step else event.entity
    is_move = bool(event.from_state or event.to_state)
    what = (f"{_state(event.from_state)} → {_state(event.to_state)}" if is_move
            else event.kind)
    return TimelineLine(full_time(event.created_at), subject, what,
                        readable_actor(event.actor), event.reason, is_move)


def _state(value: str | None) -> str:
    return (value or "—").replace("_", " ")
