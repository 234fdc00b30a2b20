"""A task that does one thing every N seconds for the life of the process.

Retention, the drill scheduler and the overdue-review reminders each had their own copy of
this loop. A failed round is logged and tried again at the next one: the database being
away for a minute is no reason to stop pruning, drilling or reminding for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def repeat(tick: Callable[[], Awaitable[object]], *, every: float, what: str,
                 wait_first: bool = True) -> None:
    """Await `tick()` every `every` seconds until cancelled. With `wait_first`, the first
    round is one interval after start (a process restarted in a loop, or a short-lived one,
    does nothing twice and nothing early)."""
    delay = every if wait_first else 0.0
    while True:
        await asyncio.sleep(delay)
        delay = every
        try:
            await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed; trying again in %gs", what, every)
