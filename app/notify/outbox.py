"""The notification outbox: rows written in the transaction of the change that causes them.

A notification therefore exists if and only if its cause committed. The sender delivers them
later, with retries; see `app.notify.sender`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import after_commit, utcnow
from app.notify.models import Notification

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
            status="pending", attempts=0, next_attempt_at=now,
        )
        for channel in dict.fromkeys(channels or DEFAULT_CHANNELS)
    ]
    session.add_all(rows)
    after_commit(session, pending_signal.set)
    return rows
