"""The notification outbox: rows written in the transaction of the change that causes them.

A notification therefore exists if and only if its cause committed. The sender delivers them
later, with retries; see `app.notify.sender`. `move` is the one writer of a notification's
delivery state, checked against `OUTBOX_TRANSITIONS`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit, utcnow
from app.notify.models import OUTBOX_TRANSITIONS, PENDING, Notification

# Set when a notification commits, so a sender in this process delivers it at once.
pending_signal = asyncio.Event()

DEFAULT_CHANNELS = ("slack:default",)


def enqueue(
    session: AsyncSession, *, kind: str, channels: list[str] | tuple[str, ...],
    payload: dict[str, Any], dedup_key: str, execution_id: int | None = None,
    step_run_id: int | None = None,
) -> list[Notification]:
    """Add one notification per channel to the caller's transaction."""
    now = utcnow()
    rows = [
        Notification(
            created_at=now, execution_id=execution_id, step_run_id=step_run_id, kind=kind,
            channel=channel, payload=payload, dedup_key=f"{dedup_key}:{channel}"[:128],
            status=PENDING, attempts=0, next_attempt_at=now,
        )
        for channel in dict.fromkeys(channels or DEFAULT_CHANNELS)
    ]
    session.add_all(rows)
    after_commit(session, pending_signal.set)
    return rows


class OutboxStateError(RuntimeError):
    """A move the outbox's transition table does not allow: a bug, never an input error."""


def move(row: Notification, to_state: str, **fields: Any) -> None:
    """Move a notification (locked by the caller) to `to_state`, setting `fields` with it."""
    if to_state not in OUTBOX_TRANSITIONS.get(row.status, frozenset()):
        raise OutboxStateError(f"notification {row.id} is {row.status}; "
                               f"it cannot become {to_state}")
    row.status = to_state
    for name, value in fields.items():
        setattr(row, name, value)
