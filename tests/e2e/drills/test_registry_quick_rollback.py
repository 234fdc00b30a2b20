"""Drill of registry-quick-rollback: the embedded file registry, no other peer.

champion moved 2 → 1 (someone rolled back by hand) → 3: `previous` is the last version that
held the alias, 1, not the newest older one. The drill approves the plan that says so, and
checks the alias file, its history line and the verification.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.harness import step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "registry-quick-rollback"
MODEL = "quick-embedded"


def make_registry(root: Path) -> ModelRegistry:
    registry = ModelRegistry(root)
    for version in ("1", "2", "3"):
        registry.add_version(MODEL, version, {
            "model.bin": f"weights of version {version}".encode() * 50,
            "conf/config.json": json.dumps({"version": int(version)}).encode()})
    for version, reason in (("2", "release"), ("1", "hand rollback"), ("3", "release")):
        registry.set_alias(MODEL, "champion", version, reason=reason)
    return registry


async def test_quick_rollback_moves_champion_to_the_version_that_held_it_before(
        shipped, registry_dir: Path) -> None:
    registry = make_registry(registry_dir)
    async with shipped() as runbookd:
        await runbookd.fire({"alertname": "ModelRollbackRequested", "model": MODEL,
                             "alias": "champion"})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"model:{MODEL}:champion"

        rollback = await runbookd.awaiting(execution["id"], "rollback")
        # The approver sees the concrete move, with `previous` resolved from the history.
        assert rollback["plan"]["summary"] == (
            f"champion of {MODEL}: version 3 → version 1 (the last version that held it; "
            "its manifest verifies)")
        assert registry.get_alias(MODEL, "champion").version == "3", "moved before approval"
        await runbookd.approve(execution["id"], "rollback")
        detail = await runbookd.finished(execution["id"])

    assert detail["status"] == "succeeded", detail["status_reason"]
    assert step_of(detail, "read-alias")["output"]["version"] == "3"
    assert step_of(detail, "verify-current")["status"] == "succeeded"
    assert step_of(detail, "verify-previous")["output"]["aliases"] == {"champion": "3"}
    done = step_of(detail, "rollback")
    assert done["status"] == "succeeded"
    assert (done["output"]["from"], done["output"]["to"]) == ("3", "1")
    assert done["output"]["verify"]["ok"] is True
    assert done["output"]["verify"]["version"] == "1"
    assert [s["ref"] for s in detail["steps"]] == ["read-alias", "verify-current",
                                                   "verify-previous", "rollback"]
    # The effect on the registry: the alias file and the last history line.
    alias_file = json.loads((registry_dir / "models" / MODEL / "aliases" /
                             "champion.json").read_text())
    assert alias_file["version"] == "1"
    assert alias_file["execution_id"] == execution["id"]
    last = registry.history(MODEL, "champion")[-1]
    # (the history names the step run, which a retry of the same step finds again)
    assert (last.from_version, last.to_version, last.kind, last.step_id) == (
        "3", "1", "rollback", str(done["id"]))
    assert last.reason == f"runbookd execution {execution['id']}: quick rollback of {MODEL}"
