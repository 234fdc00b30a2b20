"""Issue 14, defect 3: retraining was cancelled by the fix's own success.

In the drift runbooks a rollback that works clears the drift, the alert resolves, and the
runbook's `on_resolve: cancel` dropped the waiting retraining approval. `on_resolve` on a step
decides for the execution while it is at that step."""

from __future__ import annotations

from tests.support.engine_catalog import risky, runbook, step


def drift_book() -> dict:
    return runbook("drift", [
        risky("rollback"),
        risky("retrain", on_resolve="continue"),
        step("after"),
    ], on_resolve="cancel")


async def test_a_step_that_continues_survives_the_resolve(make_rig) -> None:
    async with make_rig([drift_book()]) as r:
        ex = await r.awaiting("drift")
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        await r.wait_for(lambda rows: any(
            s for s in rows if s.status == "awaiting_approval" and s.status_reason
            and "retrain" in s.status_reason))
        await r.resolve("drift")
        events = await r.events(ex.id)
        resolved = [e for e in events if e.kind == "alert.resolved"]
        assert resolved and "step retrain says on_resolve: continue" in resolved[0].reason
        [still] = await r.executions()
        assert still.status == "awaiting_approval"
        assert (await r.approve(ex.id, "retrain", "alice")).status_code == 200
        done = await r.wait_status(ex.id, "succeeded")
    assert done.status == "succeeded"


async def test_the_runbook_decides_at_a_step_that_does_not_say(make_rig) -> None:
    async with make_rig([drift_book()]) as r:
        ex = await r.awaiting("drift")  # waits at `rollback`, which says nothing
        await r.resolve("drift")
        cancelled = await r.wait_status(ex.id, "cancelled")
    assert cancelled.status_reason == "every alert of this execution resolved"
