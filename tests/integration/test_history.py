"""History, audit, stats, postmortems, metrics and retention, over real HTTP."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os

import pytest
from sqlalchemy import update

from app.db import make_engine
from app.engine.models import Execution
from tests.support.auth import auth
from tests.support.binaries import need_binary
from tests.support.db import all_rows
from tests.support.engine_catalog import risky, runbook, step
from tests.support.procs import RUNBOOKD

POSTMORTEM = """# Postmortem: {{ params.model }} ({{ runbook.title }})
Outcome: {{ execution.status }}. Restore took {{ durations.time_to_restore or "-" }}.
Objective {{ objectives.time_to_restore }} met: {{ objectives.restore_met }}.
{% for s in steps %}- {{ s.id }}: {{ s.status }}
{% endfor %}"""


@pytest.fixture
def books():
    return [
        runbook("drift", [step("check", **{"with": {"output": {"psi": 0.31}}}),
                          risky("rollback")],
                postmortem=POSTMORTEM,
                objectives={"time_to_diagnose": "15m", "time_to_restore": "2h"}),
        runbook("broken", [step("boom", "fail")]),
        runbook("plain", [step("only")]),
    ]


async def _scenario(r):
    """One approved drift rollback, one failure, one drill."""
    await r.fire("drift", model="fraud-v3")
    [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
    await r.approve(ex.id, "rollback", "alice", comment="psi too high")
    await r.wait_status(ex.id, "succeeded")
    await r.fire("broken", model="m2")
    await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "failed")
    drill = await r.post("/api/v1/executions", "rita",
                         {"runbook": "plain", "params": {"model": "m3"}, "dry_run": True})
    await r.wait_status(drill.json()["id"], "succeeded")
    return ex.id


async def test_list_filters_detail_and_postmortem(make_rig, tokens, books):
    async with make_rig(books) as r:
        drift_id = await _scenario(r)
        viewer = auth(tokens["victor"])

        async def ids(**params):
            response = await r.http.get("/api/v1/executions", params=params, headers=viewer)
            assert response.status_code == 200, response.text
            return [e["id"] for e in response.json()["items"]]

        assert len(await ids()) == 3
        assert await ids(runbook="drift") == [drift_id]
        assert await ids(status="failed") == [drift_id + 1]
        assert await ids(alertname="drift") == [drift_id]
        assert await ids(label="model=fraud-v3") == [drift_id]
        assert await ids(source="alertmanager", status="succeeded") == [drift_id]
        assert await ids(actor="alice") == [drift_id]
        assert await ids(actor="rita") == [drift_id + 2]
        assert await ids(drill="true") == [drift_id + 2]
        assert await ids(target="model:m2") == [drift_id + 1]
        assert await ids(since="2999-01-01T00:00:00Z") == []
        bad = await r.http.get("/api/v1/executions", params={"status": "nope"}, headers=viewer)
        assert bad.status_code == 422

        detail = (await r.http.get(f"/api/v1/executions/{drift_id}", headers=viewer)).json()
        assert detail["alerts"][0]["labels"]["model"] == "fraud-v3"
        assert detail["runbook_content"]["id"] == "drift"
        check, rollback = detail["steps"]
        assert check["output"] == {"psi": 0.31} and check["duration_ms"] is not None
        assert rollback["approvals"][0]["identity"] == "alice"
        approval = detail["approvals"][0]
        assert (approval["comment"], len(approval["step_hash"])) == ("psi too high", 64)
        kinds = [e["kind"] for e in detail["timeline"]]
        assert kinds[0] == "execution.created" and "approval.approve" in kinds
        assert detail["timeline"][-1]["to_state"] == "succeeded"

        text = (await r.http.get(f"/api/v1/executions/{drift_id}/postmortem",
                                 headers=viewer)).text
        assert text.startswith("# Postmortem: fraud-v3 (Test runbook drift)")
        assert "- rollback: succeeded" in text
        assert "| time_to_restore | 2h |" in text
        assert "alice** approved via api" in text
        missing = await r.http.get("/api/v1/executions/99999", headers=viewer)
        assert missing.status_code == 404


async def test_cursor_pages_stay_stable_while_rows_arrive(make_rig, tokens, books):
    async with make_rig(books) as r:
        for i in range(7):
            await r.post("/api/v1/executions", "rita",
                         {"runbook": "plain", "params": {"model": f"m{i}"}})
        headers = auth(tokens["victor"])
        first = (await r.http.get("/api/v1/executions", params={"limit": 3},
                                  headers=headers)).json()
        for i in range(7, 10):  # newer rows arrive between pages
            await r.post("/api/v1/executions", "rita",
                         {"runbook": "plain", "params": {"model": f"m{i}"}})
        seen = [e["id"] for e in first["items"]]
        cursor = first["next_cursor"]
        while cursor:
            page = (await r.http.get("/api/v1/executions", params={"limit": 3, "cursor": cursor},
                                     headers=headers)).json()
            seen += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
        damaged = await r.http.get("/api/v1/executions", params={"cursor": "%%%"},
                                   headers=headers)
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    assert damaged.status_code == 422


async def test_audit_log_covers_every_kind_and_exports_jsonl(make_rig, tokens, books):
    async with make_rig(books) as r:
        await _scenario(r)
        await r.post("/api/v1/guards/runbooks/plain/pause", "rita", {"comment": "maintenance"})
        headers = auth(tokens["victor"])
        page = (await r.http.get("/api/v1/audit", params={"limit": 500},
                                 headers=headers)).json()
        export = await r.http.get("/api/v1/audit", params={"format": "jsonl"}, headers=headers)
        approvals = (await r.http.get("/api/v1/audit", params={"kind": "approval"},
                                      headers=headers)).json()
        spec = (await r.http.get("/openapi.json")).json()
    kinds = {e["kind"] for e in page["items"]}
    assert {"execution.state", "step.state", "approval.approve", "guard.changed",
            "config.reload", "execution.created"} <= kinds
    guard = next(e for e in page["items"] if e["kind"] == "guard.changed")
    assert (guard["actor"], guard["source_addr"]) == ("rita", "127.0.0.1")
    lines = export.text.splitlines()
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert len(lines) == len(page["items"]) and json.loads(lines[0])["id"] == 1
    assert [e["kind"] for e in approvals["items"]] == ["approval.approve"]
    # Append-only: the API has no way to change or remove an audit row.
    assert set(spec["paths"]["/api/v1/audit"]) == {"get"}
    for path, methods in spec["paths"].items():
        if "audit" in path or "events" in path:
            assert not {"put", "patch", "delete"} & set(methods), path


async def test_stats(make_rig, tokens, books):
    async with make_rig(books) as r:
        await _scenario(r)
        stats = (await r.http.get("/api/v1/stats", headers=auth(tokens["victor"]))).json()
        bad = await r.http.get("/api/v1/stats", params={
            "since": "2026-12-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
            headers=auth(tokens["victor"]))
    overall = stats["overall"]
    assert overall["outcomes"] == {"succeeded": 2, "failed": 1}
    assert (overall["automatic"], overall["needed_approval"]) == (2, 1)
    drift = stats["runbooks"]["drift"]
    assert drift["time_to_approve_seconds"]["count"] == 1
    assert drift["time_to_acknowledge_seconds"]["p50"] is not None
    assert drift["restore_objective"]["objective_seconds"] == 7200
    assert drift["diagnose_objective"]["objective_seconds"] == 900
    assert bad.status_code == 422


async def test_metrics_pass_promtool_and_carry_no_alert_values(make_rig, books):
    promtool = need_binary("promtool")
    async with make_rig(books) as r:
        await _scenario(r)
        text = (await r.http.get("/metrics")).text
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), timeout=30)
    assert proc.returncode == 0, out.decode()
    for name in ("runbookd_executions_total", "runbookd_step_duration_seconds_bucket",
                 "runbookd_approval_wait_seconds_bucket", "runbookd_executions_active",
                 "runbookd_notifications_pending", "runbookd_notifications_failed_total",
                 "runbookd_time_to_restore_seconds_bucket", "runbookd_runbook_paused"):
        assert name in text, name
    assert 'runbookd_executions_total{outcome="succeeded",runbook="drift"}' in text
    # Bounded labels: values from alerts (models, fingerprints) never become label values.
    assert "fraud-v3" not in text and "m2" not in text.replace("m2_", "")


async def test_retention_keeps_active_and_whole_chains(make_rig, db_url, books):
    from app.db import make_session_factory
    from app.history.retention import prune_all

    async with make_rig(books) as r:
        await r.fire("broken", model="old")
        await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        await r.fire("drift", model="active-old")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "awaiting_approval")
        await r.fire("plain", model="recent")
        await r.wait_for(lambda rows: len(rows) == 3 and rows[2].status == "succeeded")
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(update(Execution).where(Execution.id.in_([1, 2]))
                           .values(created_at=long_ago, finished_at=None))
        await conn.execute(update(Execution).where(Execution.id == 1)
                           .values(finished_at=long_ago))
    removed = await prune_all(make_session_factory(engine), days=30)
    await engine.dispose()
    rows = await all_rows(db_url, Execution)
    events = await r.events()
    assert removed > 0
    assert [e.id for e in rows] == [2, 3]  # the active one stays, however old
    assert {e.execution_id for e in events if e.execution_id} == {2, 3}
    assert any(e.kind == "execution.created" and e.execution_id == 2 for e in events)


async def test_cli_history_show_and_postmortem(make_rig, db_url, books):
    async with make_rig(books) as r:
        drift_id = await _scenario(r)

    async def cli(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            str(RUNBOOKD), *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url})
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    listing = json.loads(await cli("history", "--json", "--runbook", "drift"))
    table = await cli("history", "--status", "failed")
    shown = await cli("show", str(drift_id))
    draft = await cli("postmortem", str(drift_id))
    assert [e["id"] for e in listing["items"]] == [drift_id]
    assert "broken" in table and "drift" not in table
    assert "approve by alice via api" in shown
    assert draft.startswith("# Postmortem: fraud-v3")
