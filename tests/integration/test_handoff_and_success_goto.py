"""Issue 14: `on_success: {goto: ...}` (staged promotion: promote on success, or roll back)
and `runbook.start` (a hand-off: "follow stale-feature-store instead" becomes a step)."""

from __future__ import annotations

from tests.support.engine_catalog import runbook, step


async def test_on_success_goto_skips_to_a_later_step_or_ends(make_rig) -> None:
    book = runbook("staged", [
        step("watch", on_success={"goto": "promote"}, on_failure={"goto": "retire"}),
        step("never"),
        step("promote", on_success="end"),
        step("retire"),
    ])
    async with make_rig([book]) as r:
        await r.fire("staged")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        runs = [(s.step_id, s.status) for s in await r.steps(ex.id)]
    assert runs == [("watch", "succeeded"), ("promote", "succeeded")]


async def test_on_failure_goto_then_the_runbook_goes_on(make_rig) -> None:
    book = runbook("staged", [
        step("watch", "fail", on_success={"goto": "promote"}, on_failure={"goto": "retire"}),
        step("promote", on_success="end"),
        step("retire"),
    ])
    async with make_rig([book]) as r:
        await r.fire("staged")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        runs = [(s.step_id, s.status) for s in await r.steps(ex.id)]
    assert runs == [("watch", "failed"), ("retire", "succeeded")]
    assert ex.status_reason == "finished: step watch failed and the runbook went on"


async def test_runbook_start_hands_off_with_params_and_links_the_two(make_rig) -> None:
    features = runbook("features", [step("refresh")])
    drift = runbook("drift", [
        step("hand-off", "runbook.start",
             **{"with": {"runbook": "features", "params": {"model": "{{ params.model }}"},
                         "reason": "the features are stale"}}),
        step("after"),
    ])
    async with make_rig([features, drift]) as r:
        await r.fire("drift")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and all(
            e.status == "succeeded" for e in rows))
        parent = next(e for e in rows if e.runbook_id == "drift")
        child = next(e for e in rows if e.runbook_id == "features")
        [handoff, _] = await r.steps(parent.id)
        events = await r.events(child.id)
    assert (child.parent_id, child.trigger, child.target) == (parent.id, "runbook",
                                                              "model:fraud-v3")
    assert child.params == {"model": "fraud-v3"}
    assert handoff.output["execution_id"] == child.id
    assert f"started runbook features as execution {child.id}" in handoff.summary
    assert any("the features are stale" in (e.reason or "") for e in events
               if e.kind == "execution.created")


async def test_runbook_start_refuses_unknown_runbooks_and_bad_params(make_rig) -> None:
    features = runbook("features", [step("refresh")])
    drift = runbook("drift", [
        step("hand-off", "runbook.start",
             **{"with": {"runbook": "features", "params": {"model": "NOT VALID!"}}}),
    ])
    async with make_rig([features, drift]) as r:
        await r.fire("drift")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        [handoff] = await r.steps(ex.id)
    assert "params for runbook features" in handoff.error, handoff.error
