"""Issue 14, defect 4: `rate_limited` was final. An alert that kept firing after the window
was never handled. A rate-limited execution now waits for its window, holding the target's
lock (new alerts join it), starts when the window passes, and is cancelled if its alerts
resolve first."""

from __future__ import annotations

from tests.support.engine_catalog import runbook, step

LIMITED = {"limits": {"rate": [{"count": 1, "per": "3s"}]}}


async def test_a_rate_limited_execution_starts_when_its_window_passes(make_rig) -> None:
    book = runbook("limited", [step("a")], **LIMITED)
    async with make_rig([book], poll_seconds=0.1) as r:
        await r.fire("limited", fingerprint="1111111111111111")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        await r.fire("limited", fingerprint="2222222222222222")
        held = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "rate_limited")
        assert "next run allowed at" in held[1].status_reason
        await r.fire("limited", fingerprint="3333333333333333")  # joins the held execution
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "succeeded",
                                timeout=20)
        sent = [n.kind for n in await r.notifications() if n.execution_id == rows[1].id]
    assert len(rows) == 2
    assert sent.count("rate_limited") == 1


async def test_a_held_execution_is_cancelled_when_its_alerts_resolve(make_rig) -> None:
    book = runbook("held", [step("a")], limits={"rate": [{"count": 1, "per": "1h"}]})
    async with make_rig([book]) as r:
        await r.fire("held", fingerprint="1111111111111111")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        await r.fire("held", fingerprint="2222222222222222")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "rate_limited")
        await r.resolve("held", fingerprint="2222222222222222")
        cancelled = await r.wait_status(rows[1].id, "cancelled")
    assert cancelled.status_reason == "every alert of this execution resolved"
