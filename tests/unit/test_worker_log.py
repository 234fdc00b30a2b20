"""A lost lease is an expected event between replicas: one log line, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from app.engine.worker import Worker
from app.errors import LeaseLost


class _LosesItsLease:
    me = "worker-a"

    async def drive(self, execution_id: int) -> None:
        raise LeaseLost(f"execution {execution_id} is leased by worker-b")


class _NoDatabase:
    def __call__(self) -> Any:
        raise ConnectionError("no database in this test")


async def test_a_lost_lease_is_one_line_without_a_traceback(caplog):
    worker = Worker(_LosesItsLease(), session_factory=_NoDatabase(),  # type: ignore[arg-type]
                    concurrency=1, lease_seconds=30, poll_seconds=1, single_process=False)
    with caplog.at_level(logging.INFO, logger="app.engine.worker"):
        await worker._drive(7)
    lines = [r for r in caplog.records if "execution 7" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert "lease lost" in lines[0].getMessage()
    assert "worker-b" in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert lines[0].levelno == logging.WARNING
