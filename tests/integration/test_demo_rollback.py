"""What `make run` promises: the shipped quick-rollback runbook really rolls the demo model's
champion back, on the demo registry, after one approval."""

from __future__ import annotations

from pathlib import Path

from app.actions.embedded_registry import ModelRegistry, create_demo_registry

ROOT = Path(__file__).resolve().parents[2]


async def test_quick_rollback_moves_the_demo_champion_back(make_rig, tmp_path):
    registry = tmp_path / "registry"
    create_demo_registry(registry)
    async with make_rig(mappings=ROOT / "alert_mappings.yaml",
                        remediations_dir=ROOT / "remediations", registry_dir=registry) as r:
        await r.fire("ModelRollbackRequested", model="demo-model")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert ModelRegistry(registry).get_alias("demo-model", "champion").version == "2"
        waiting = {s.step_id: s for s in await r.steps(ex.id)}
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        done = await r.wait_status(ex.id, "succeeded")
        steps = {s.step_id: s for s in await r.steps(ex.id)}
    # The approver saw the concrete change, not "previous".
    assert waiting["rollback"].plan["summary"].startswith(
        "champion of demo-model: version 2 → version 1")
    assert waiting["rollback"].plan["resolved"]["to"] == "1"
    assert done.target == "model:demo-model:champion"
    assert steps["read-alias"].output["version"] == "2"
    assert ModelRegistry(registry).get_alias("demo-model", "champion").version == "1"


async def test_simulate_with_plan_shows_the_concrete_change_and_changes_nothing(make_rig,
                                                                                tmp_path):
    registry = tmp_path / "registry"
    create_demo_registry(registry)
    labels = {"alertname": "ModelRollbackRequested", "model": "demo-model"}
    async with make_rig(mappings=ROOT / "alert_mappings.yaml",
                        remediations_dir=ROOT / "remediations", registry_dir=registry) as r:
        plain = await r.post("/api/v1/simulate", "victor", {"labels": labels})
        planned = await r.post("/api/v1/simulate?plan=true", "victor", {"labels": labels})
    assert plain.status_code == planned.status_code == 200, planned.text

    def rollback(report):
        [book] = [b for b in report["results"][0]["runbooks"]
                  if b["runbook"] == "registry-quick-rollback"]
        return next(s for s in book["steps"] if s["id"] == "rollback")

    assert rollback(plain.json())["plan"] is None  # no live reads unless asked
    assert rollback(planned.json())["plan"].startswith(
        "champion of demo-model: version 2 → version 1")
    assert ModelRegistry(registry).get_alias("demo-model", "champion").version == "2"
