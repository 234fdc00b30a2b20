"""Invariant 3, approved as planned: an approved `registry.set_alias version: previous` whose
plan resolves differently by the time it may run does not run; it asks again with the new
plan. On SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from app.actions.embedded_registry import ModelRegistry
from tests.support.engine_catalog import risky, runbook

MODEL = "fraud-v3"


def registry_with_history(root: Path) -> ModelRegistry:
    """fraud-v3 versions 1 to 4; champion went 1, 2, 3, so `previous` is 2."""
    registry = ModelRegistry(root)
    for version in ("1", "2", "3", "4"):
        registry.add_version(MODEL, version, {"weights.bin": f"weights {version}".encode()})
    for version in ("1", "2", "3"):
        registry.set_alias(MODEL, "champion", version, reason=f"release {version}")
    return registry


def rollback_book() -> dict:
    return runbook("recheck", [risky("rollback", action="registry.set_alias", idempotent=True,
                                     **{"with": {"model": "{{ params.model }}",
                                                 "alias": "champion",
                                                 "version": "previous"}})])


async def test_an_approved_rollback_whose_plan_changed_asks_again(make_rig, tmp_path):
    registry = registry_with_history(tmp_path / "registry")
    async with make_rig([rollback_book()], registry_dir=tmp_path / "registry") as r:
        ex = await r.awaiting("recheck")
        [step] = await r.steps(ex.id)
        approved_plan = step.plan
        assert approved_plan["summary"].startswith(
            f"champion of {MODEL}: version 3 → version 2")
        assert approved_plan["resolved"] == {"model": MODEL, "alias": "champion",
                                             "from": "3", "to": "2"}

        # Approved while the kill switch holds all work: the step cannot start yet.
        engaged = await r.post("/api/v1/guards/kill-switch", "rita",
                               {"engaged": True, "reason": "plan re-check test"})
        assert engaged.status_code == 200, engaged.text
        approved = await r.approve(ex.id, "rollback", "alice", comment="3 to 2, fine")
        assert approved.json()["step_status"] == "approved", approved.text
        await r.wait_status(ex.id, "paused")

        # Meanwhile someone promotes version 4 by hand: `previous` now means version 3.
        registry.set_alias(MODEL, "champion", "4", reason="hotfix promoted by hand")
        await r.post("/api/v1/guards/kill-switch", "rita", {"engaged": False})
        await r.wait_status(ex.id, "awaiting_approval")

        [step] = await r.steps(ex.id)
        [approval] = await r.approvals()
        [changed] = [e for e in await r.events(ex.id) if e.kind == "step.plan_changed"]
        # The step did not run: the alias is where the hand put it, and the registry's
        # history has no entry of this execution.
        assert registry.get_alias(MODEL, "champion").version == "4"
        assert all(entry.execution_id is None for entry in registry.history(MODEL, "champion"))
        assert step.status == "awaiting_approval"
        assert step.started_at is None
        assert step.plan["resolved"] == {"model": MODEL, "alias": "champion", "from": "4",
                                         "to": "3"}
        assert step.plan["summary"].startswith(f"champion of {MODEL}: version 4 → version 3")
        assert (approval.identity, approval.comment) == ("alice", "3 to 2, fine")
        assert approval.voided_at is not None
        assert approved_plan["summary"] in changed.reason
        assert step.plan["summary"] in changed.reason
        assert changed.data["approved"] == approved_plan
        assert changed.data["now"] == step.plan

        # Approving the new plan runs it: the alias ends where the new plan said.
        again = await r.approve(ex.id, "rollback", "alice", comment="4 to 3 then")
        assert again.json()["approvals"] == 1, again.text
        await r.wait_status(ex.id, "succeeded")
        [step] = await r.steps(ex.id)
    assert registry.get_alias(MODEL, "champion").version == step.plan["resolved"]["to"] == "3"
    assert step.status == "succeeded"
    assert registry.history(MODEL, "champion")[-1].execution_id == ex.id
