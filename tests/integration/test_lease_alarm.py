"""A finished execution is not a lost lease: with one replica and no kills, the worker must
not cry "lease lost" for executions that simply ended while its heartbeat ran."""

from __future__ import annotations

import logging

from tests.support.engine_catalog import runbook, step


async def test_finished_executions_raise_no_lease_lost_alarm(make_rig, caplog):
    book = runbook("quick", [step("a"), step("b"), step("c")], limits={"concurrent": 64})
    # A short lease makes the heartbeat run every 0.1 s, racing every final transition.
    async with make_rig([book], lease_seconds=0.3, worker_concurrency=8) as r:
        with caplog.at_level(logging.WARNING, logger="app.engine.worker"):
            for n in range(40):
                await r.fire("quick", model=f"m{n}")
            await r.wait_for(lambda rows: len(rows) == 40
                             and all(e.status == "succeeded" for e in rows), timeout=60)
    alarms = [rec.getMessage() for rec in caplog.records if "lease lost" in rec.getMessage()]
    assert alarms == []
