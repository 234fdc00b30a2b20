"""Waiting for something a test cannot be told about: poll until it holds."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout: float, what: str,
                     interval: float = 0.1,
                     ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Poll `probe` until it returns something true, and return that; fail after `timeout`
    seconds, naming `what`. An exception of a type in `ignore` counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(*ignore):
            result = await probe()
            if result:
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
