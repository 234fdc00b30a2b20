"""Issue 14, defect 4: `simulate` ignored limits. Through the API (and the CLI), on a real
database after real executions, it shows how much of each budget is spent and what that
means for this alert: rate limited, a step skipped, joining a running execution, or waiting
for a concurrency slot. Simulating spends nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from app.engine.models import Execution
from tests.support.engine_catalog import risky, runbook, step

SHARED = {"rate": [{"count": 1, "per": "6h"}], "rate_key": "retrain:{{ params.model }}"}


def retraining(rid: str, **extra: Any) -> dict[str, Any]:
    return runbook(rid, [step("rollback"), step("retrain", **SHARED), step("notify")], **extra)


async def simulated(r: Any, alertname: str, model: str = "fraud-v3") -> dict[str, Any]:
    answer = await r.post("/api/v1/simulate", "victor",
                          {"labels": {"alertname": alertname, "model": model}})
    assert answer.status_code == 200, answer.text
    [book] = answer.json()["results"][0]["runbooks"]
    return book


def steps_of(book: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in book["steps"]}


async def test_simulate_shows_spent_budgets_after_a_real_execution(make_rig) -> None:
    drift = retraining("drift", limits={"rate": [{"count": 1, "per": "6h"}],
                                        "breaker": {"failures": 2, "within": "1h"}})
    async with make_rig([drift, retraining("skew")]) as r:
        before = await simulated(r, "drift")
        await r.fire("drift")
        [done] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        after = await simulated(r, "drift")
        shared = await simulated(r, "skew")
        other = await simulated(r, "skew", model="other-model")
        # Simulating spent nothing: still one execution.
        assert len(await r.rows(Execution)) == 1
        # And the engine agrees with the simulation: skew's retraining is skipped.
        await r.fire("skew")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "succeeded")
        real = {s.step_id: s for s in await r.steps(rows[1].id)}

    limits = before["limits"]
    assert limits["verdict"] == "allowed"
    assert limits["rate"] == [{"count": 1, "per": "6h", "spent": 0, "next_allowed_at": None}]
    assert limits["breaker"] == {"failures": 2, "within": "1h", "default": False, "failed": 0}
    assert limits["active"] == 0
    assert steps_of(before)["retrain"]["rate"]["budgets"][0]["spent"] == 0
    assert steps_of(before)["retrain"]["decision"] == "run"

    # The runbook's own budget for fraud-v3 is spent: a new execution would stop at once.
    limits = after["limits"]
    assert limits["rate"][0]["spent"] == 1
    assert limits["rate"][0]["next_allowed_at"] is not None
    assert limits["verdict"].startswith(
        "rate limited: rate limit of 1 per 6h reached; next run allowed at ")
    assert after["reason"].startswith("an execution would wait for its window, rate limited")
    assert {s["decision"] for s in after["steps"]} == {"held"}
    retrain = steps_of(after)["retrain"]["rate"]
    assert (retrain["key"], retrain["shared"]) == ("retrain:fraud-v3", True)
    assert retrain["budgets"][0]["spent"] == 1

    # Another runbook shares the retraining budget: it runs, but its retrain step is skipped.
    assert shared["limits"]["verdict"] == "allowed"
    assert shared["limits"]["breaker"]["default"] is True  # the engine's settings
    skipped = steps_of(shared)["retrain"]
    assert skipped["decision"] == "skipped"
    assert skipped["reason"].startswith(
        "skipped: rate limit of 1 per 6h for retrain:fraud-v3 reached; next run allowed at ")
    assert steps_of(shared)["rollback"]["decision"] == "run"
    assert real["retrain"].status == "skipped"
    assert real["retrain"].summary == skipped["reason"]
    # Another model has a budget of its own.
    assert steps_of(other)["retrain"]["decision"] == "run"
    assert steps_of(other)["retrain"]["rate"]["budgets"][0]["spent"] == 0
    assert done.status == "succeeded"


async def test_simulate_shows_joining_and_waiting_for_a_slot(make_rig) -> None:
    gated = runbook("gated", [risky("change")],
                    limits={"concurrent": 1, "concurrent_scope": "runbook"})
    async with make_rig([gated]) as r:
        waiting = await r.awaiting("gated")
        same = await simulated(r, "gated")
        another = await simulated(r, "gated", model="model-b")

    assert same["would_execute"] is False
    assert same["reason"] == (f"no new execution: the alert would join execution {waiting.id} "
                              "(awaiting_approval) for model:fraud-v3")
    assert same["limits"]["verdict"] == f"joins execution {waiting.id}: no budget is spent"
    assert another["would_execute"] is True
    assert another["limits"]["active"] == 1
    assert another["limits"]["verdict"] == (
        "waits for a slot: 1 of 1 concurrent execution(s) of this runbook running; it starts "
        "when one ends")
    assert another["reason"] == ("an execution would start; it would wait for a slot (1 of 1 "
                                 "concurrent execution(s) of this runbook running)")


async def test_the_cli_reads_the_same_budgets(make_rig, tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from app.cli.catalog import app
    from app.config import get_settings

    async with make_rig([retraining("drift")]) as r:
        await r.fire("drift")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        monkeypatch.setenv("RUNBOOKD_MAPPINGS", str(tmp_path / "catalog/alert_mappings.yaml"))
        monkeypatch.setenv("RUNBOOKD_REMEDIATIONS_DIR", str(tmp_path / "catalog/remediations"))
        monkeypatch.setenv("RUNBOOKD_DATABASE_URL", r.db_url)
        get_settings.cache_clear()
        try:
            args = ["simulate", "--label", "alertname=drift", "--label", "model=fraud-v3"]
            # The command runs its own event loop, so it runs in a thread of its own.
            text = await asyncio.to_thread(CliRunner().invoke, app, args)
            as_json = await asyncio.to_thread(CliRunner().invoke, app, [*args, "--json"])
        finally:
            get_settings.cache_clear()
    assert text.exit_code == 0, text.output
    assert "note:" not in text.stdout
    assert "         [SKIPPED] skipped: rate limit of 1 per 6h for retrain:fraud-v3" in text.stdout
    assert ("         rate: 1 per 6h: 1 spent, next allowed at " in text.stdout)
    assert "for shared budget retrain:fraud-v3" in text.stdout
    [book] = json.loads(as_json.stdout)["results"][0]["runbooks"]
    assert steps_of(book)["retrain"]["decision"] == "skipped"
