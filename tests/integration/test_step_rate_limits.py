"""Issue 14, defect 4: rate limits and concurrency hit the wrong thing.

- Limits counted whole executions per runbook and target, so a second drift within 6 h got no
  rollback either: a limit now sits on the step, with a key that runbooks share, and a limited
  step is skipped with its reason while the rest of the runbook goes on.
- `concurrent: 1` counted executions across every model: model A waiting for approval blocked
  model B. Concurrency is per target unless the runbook says `concurrent_scope: runbook`.
- Cancelled executions counted toward limits.
"""

from __future__ import annotations

from tests.support.engine_catalog import risky, runbook, step

SHARED = {"rate": [{"count": 1, "per": "6h"}], "rate_key": "retrain:{{ params.model }}"}


def retraining(rid: str, out: str) -> dict:
    return runbook(rid, [
        step("rollback", **{"with": {"append_to": out, "message": "rolled back"}}),
        step("retrain", **SHARED, **{"with": {"append_to": out, "message": "retrained"}}),
        step("notify"),
    ])


async def test_a_shared_step_budget_skips_the_step_and_the_runbook_goes_on(
        make_rig, tmp_path) -> None:
    out = tmp_path / "effects.txt"
    async with make_rig([retraining("drift", str(out)),
                         retraining("skew", str(out))]) as r:
        await r.fire("drift")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        await r.fire("skew")  # same model, another runbook: the retraining budget is shared
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status in (
            "succeeded", "failed", "rate_limited"))
        second = rows[1]
        steps = {s.step_id: s for s in await r.steps(second.id)}
        await r.fire("skew", model="other-model")  # another model has its own budget
        rows = await r.wait_for(lambda rows: len(rows) == 3 and rows[2].status == "succeeded")
        events = await r.events(second.id)
    assert second.status == "succeeded"
    assert steps["rollback"].status == "succeeded"
    assert steps["retrain"].status == "skipped"
    assert "rate limit of 1 per 6h for retrain:fraud-v3 reached" in steps["retrain"].summary
    assert steps["notify"].status == "succeeded"
    assert any(e.kind == "step.rate_limited" for e in events)
    # first: rollback + retrain; second: rollback only; third: rollback + retrain
    assert out.read_text().count("\n") == 5


async def test_cancelled_executions_do_not_count(make_rig) -> None:
    book = runbook("limited", [risky("change")], limits={"rate": [{"count": 1, "per": "1h"}]})
    async with make_rig([book]) as r:
        ex = await r.awaiting("limited")
        answer = await r.post(f"/api/v1/executions/{ex.id}/cancel", "rita",
                              {"comment": "wrong model"})
        assert answer.status_code == 200, answer.text
        await r.fire("limited", fingerprint="0000000000000002")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status in (
            "awaiting_approval", "rate_limited"))
    assert rows[1].status == "awaiting_approval"


async def test_concurrency_is_per_target_unless_the_runbook_says_so(make_rig) -> None:
    per_target = runbook("per-target", [risky("change")], limits={"concurrent": 1})
    per_runbook = runbook("per-runbook", [risky("change")],
                          limits={"concurrent": 1, "concurrent_scope": "runbook"})
    async with make_rig([per_target, per_runbook]) as r:
        await r.fire("per-target", model="model-a")
        await r.fire("per-target", model="model-b")
        await r.wait_for(lambda rows: len(rows) == 2 and all(
            e.status == "awaiting_approval" for e in rows))
        await r.fire("per-runbook", model="model-a")
        await r.fire("per-runbook", model="model-b")
        rows = await r.wait_for(lambda rows: len(rows) == 4 and any(
            e.runbook_id == "per-runbook" and e.status == "awaiting_approval" for e in rows))
    held = sorted(e.status for e in rows if e.runbook_id == "per-runbook")
    assert held == ["awaiting_approval", "pending"]
