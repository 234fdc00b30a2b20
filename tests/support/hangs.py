"""A test that hangs says where, and ends, instead of holding the run until CI's deadline.

Under pytest-xdist one hung test stops every worker: an `alone` test waits for the room with
the turnstile held (tests/support/workers.py), and the others queue behind it. pytest-timeout
(`timeout` in pyproject.toml) ends the hung worker's process, xdist reports the test as
crashed and the run goes on. Its report shows each thread's stack, where an asyncio test only
shows the event loop waiting; so a little before that, this prints every unfinished asyncio
task's stack, which says what the test and its tasks were waiting for.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import Iterator

import pytest

REPORT_AT = 0.7  # of the test's timeout


@pytest.fixture(autouse=True)
def report_a_hang(request: pytest.FixtureRequest) -> Iterator[None]:
    config = request.config
    timeout = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    if timeout <= 0:
        yield
        return
    timer = threading.Timer(timeout * REPORT_AT, _report,
                            args=(request.node.nodeid, timeout * REPORT_AT, config))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _report(nodeid: str, after: float, config: pytest.Config) -> None:
    # Output is captured while a test runs: release it, as pytest-timeout does, or the
    # report would go down with the process it ends.
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=True)
    tasks = [task for task in gc.get_objects()
             if isinstance(task, asyncio.Task) and not task.done()]
    out = sys.stderr
    out.write(f"\n{nodeid} is still running after {after:.0f} s; "
              f"its {len(tasks)} unfinished asyncio tasks:\n")
    for task in tasks:
        task.print_stack(file=out)
    out.flush()
