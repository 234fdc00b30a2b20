"""Engine bug found by the drill of serving-latency-regression (tests/e2e/drills/): a risky step
whose plan cannot be made fails without ever running, yet its `on_failure: rollback` queues the
step's OWN rollback, which then runs (or, unless `auto`, asks approvers to undo a change that
never happened). A step that never started has nothing to undo: only the steps that succeeded
before it should be rolled back. Strict xfail until the engine is fixed (then drop the mark).
"""

from __future__ import annotations

from tests.support.engine_catalog import risky, runbook


async def test_a_risky_step_that_cannot_plan_does_not_roll_itself_back(make_rig,
                                                                        tmp_path) -> None:
    out = tmp_path / "undo.txt"
    # The plan of registry.set_alias fails: the model is not in the registry.
    change = risky("change", action="registry.set_alias", on_failure="rollback",
                   **{"with": {"model": "absent", "alias": "champion", "version": "2"},
                      "rollback": {"title": "Undo change", "action": "noop", "auto": True,
                                   "with": {"append_to": str(out)}}})
    async with make_rig([runbook("unplanned", [change])]) as r:
        await r.fire("unplanned")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status in (
            "failed", "awaiting_approval", "succeeded"), timeout=20)
        runs = {(s.kind, s.step_id): s for s in await r.steps(ex.id)}
    assert runs[("step", "change")].status == "failed"
    assert "cannot plan" in runs[("step", "change")].error
    assert ex.status == "failed"
    assert ("rollback", "change") not in runs, "a step that never ran was rolled back"
    assert not out.exists()
