"""`runbookd worker`: the executor and notification sender without the HTTP service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from app.config import Settings
from app.lifecycle import running

log = logging.getLogger("runbookd")


async def run_worker(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (running steps get their grace)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with running(settings):
        log.info("runbookd worker running")
        await stop.wait()
