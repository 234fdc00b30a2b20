"""Drills (issue 16): a drill by hand through the API and the CLI, the scheduler (one drill
per due time across two schedulers on one database), the engine's guard, the owner's
notification and the /metrics gauges; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.actions.embedded_registry import ModelRegistry, create_demo_registry
from app.actions.registry import default_registry
from app.actions.testing import Noop
from app.catalog.loader import load_catalog
from app.cli import app as cli
from app.config import get_settings
from app.db import make_engine, make_session_factory
from app.engine.drills_models import DrillRun
from app.engine.drills_scheduler import DrillScheduler, spread
from app.engine.models import Execution, StepRun
from app.engine.runbooks import RunbookVersions
from tests.support.auth import auth
from tests.support.engine_catalog import risky, runbook, step, write_catalog
from tests.support.wait import eventually
from tests.support.web import browser, sign_in

WEEK = dt.timedelta(days=7)


def drilled(tmp_path: Path, rid: str = "drilled", **drill: object) -> dict:
    """A runbook whose drill finds two problems: a model that is gone, a host that is not
    allowed; its noop and its risky alias move are only planned."""
    model = {"model": "{{ params.model }}", "alias": "champion"}
    return runbook(rid, [
        step("read", "registry.get_alias", **{"with": model}),
        step("gone", "registry.get_alias", **{"with": {"model": "retired-model",
                                                       "alias": "champion"}}),
        step("probe", "http.request", **{"with": {"method": "GET",
                                                  "url": "http://elsewhere.invalid/health"}}),
        step("act", **{"with": {"append_to": str(tmp_path / "acted.txt")}}),
        risky("change", action="registry.set_alias",
              **{"with": {**model, "version": "previous", "reason": "drill"}}),
    ], drill={"every": "7d", "params": {"model": "demo-model"}, **drill})


async def finished(r, runbook_id: str, drill_id: int, who: str = "victor") -> dict:
    async def probe():
        answer = await r.http.get(f"/api/v1/runbooks/{runbook_id}/drills/{drill_id}",
                                  headers=auth(r.tokens[who]))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body if body["phase"] != "running" else None

    return await eventually(probe, timeout=20, what=f"drill {drill_id} to finish")


async def test_a_drill_reads_for_real_plans_the_rest_and_reports_rot(make_rig, tmp_path):
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path)]) as r:
        started = await r.post("/api/v1/runbooks/drilled/drills", "rita", {})
        assert started.status_code == 201, started.text
        drill = await finished(r, "drilled", started.json()["id"])
        listed = (await r.http.get("/api/v1/runbooks/drilled/drills",
                                   headers=auth(r.tokens["victor"]))).json()
        [execution] = await r.executions()
        runs = await r.steps(execution.id)
        notes = [n for n in await r.notifications() if n.kind == "drill_problems"]
        gauges = (await r.http.get("/metrics")).text  # set when the drill settled
    verdicts = {v["step"]: v for v in drill["verdicts"]}
    assert [(s, verdicts[s]["kind"], verdicts[s]["ok"]) for s in verdicts] == [
        ("read", "ran", True), ("gone", "ran", False), ("probe", "ran", False),
        ("act", "planned", True), ("change", "planned", True)]
    assert drill["problems"] == 2 and drill["phase"] == "finished"
    assert "retired-model" in verdicts["gone"]["reason"]
    assert "elsewhere.invalid" in verdicts["probe"]["reason"]
    assert "version 1" in verdicts["change"]["reason"]  # the plan: champion 2 -> 1
    # Nothing changed: the alias, the file the noop would write; nobody was asked.
    assert ModelRegistry(tmp_path / "registry").get_alias("demo-model", "champion").version == "2"
    assert not (tmp_path / "acted.txt").exists()
    assert execution.dry_run and execution.status == "succeeded"
    assert execution.target == "drill:model:demo-model"
    assert all(run.status != "awaiting_approval" for run in runs)
    # The owner hears of the problems, once per channel.
    assert notes and "2 problems" in notes[0].payload["text"]
    assert notes[0].payload["owner"] == "ml-platform"
    assert listed["schedule"] == "every 7d" and listed["items"][0]["id"] == drill["id"]
    assert 'runbookd_runbook_drill_problems{runbook="drilled"} 2.0' in gauges


async def test_the_guard_never_runs_an_action_that_does_not_read_only(make_rig, tmp_path,
                                                                      monkeypatch):
    """An action whose own dry-run handling is wrong still changes nothing in a drill: the
    engine plans it and never calls its run()."""
    touched = tmp_path / "touched.txt"

    async def careless(self, ctx, params):  # ignores ctx.dry_run
        touched.write_text(f"ran with dry_run={ctx.dry_run}")
        raise AssertionError("run() was called in a drill")

    monkeypatch.setattr(Noop, "run", careless)
    book = runbook("guarded", [step("act"), risky("risky-act")],
                   drill={"every": "1d", "params": {"model": "m1"}})
    async with make_rig([book]) as r:
        started = await r.post("/api/v1/runbooks/guarded/drills", "rita")
        drill = await finished(r, "guarded", started.json()["id"])
    assert not touched.exists()
    assert [(v["step"], v["kind"], v["ok"]) for v in drill["verdicts"]] == [
        ("act", "planned", True), ("risky-act", "planned", True)]


async def test_bad_input_is_refused_with_what_to_fix(make_rig, tmp_path):
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path)]) as r:
        unknown = await r.post("/api/v1/runbooks/nope/drills", "rita", {})
        unknown_list = await r.http.get("/api/v1/runbooks/nope/drills",
                                        headers=auth(r.tokens["victor"]))
        bad = await r.post("/api/v1/runbooks/drilled/drills", "rita",
                           {"params": {"model": "Not A Model!"}})
        extra = await r.post("/api/v1/runbooks/drilled/drills", "rita", {"what": 1})
        viewer = await r.post("/api/v1/runbooks/drilled/drills", "victor", {})
        none_of = await r.http.get("/api/v1/runbooks/drilled/drills/99999",
                                   headers=auth(r.tokens["victor"]))
        not_a_slug = await r.post("/api/v1/runbooks/Not..A.Slug/drills", "rita", {})
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    assert unknown_list.status_code == 404
    assert bad.status_code == 422 and "model" in bad.json()["error"]["message"]
    assert extra.status_code == 422
    assert viewer.status_code == 403
    assert none_of.status_code == 404
    assert not_a_slug.status_code == 422 and "runbook_id" in not_a_slug.json()["error"]["message"]


async def test_two_schedulers_on_one_database_run_one_drill_per_due_time(make_rig, tmp_path,
                                                                         db_url):
    create_demo_registry(tmp_path / "registry")
    book = drilled(tmp_path, "scheduled")
    async with make_rig([book]) as r:
        mappings, remediations = write_catalog(tmp_path / "scheduler-catalog", [book])
        catalog = load_catalog(mappings, remediations, action_names=default_registry().specs())
        engines = [make_engine(db_url, pool_size=2) for _ in range(2)]
        try:
            schedulers = [DrillScheduler(
                session_factory=make_session_factory(engine), catalog=lambda: catalog,
                runbooks=RunbookVersions(lambda: catalog),
                worker_id=f"replica-{i}", wake=lambda: None) for i, engine in enumerate(engines)]
            now = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.UTC)
            first = await asyncio.gather(*(s.tick(now) for s in schedulers))
            again = await asyncio.gather(*(s.tick(now + dt.timedelta(hours=1))
                                           for s in schedulers))
            later = await asyncio.gather(*(s.tick(now + WEEK) for s in schedulers))
        finally:
            for engine in engines:
                await engine.dispose()
        rows = await r.rows(DrillRun)
    assert sorted(len(ids) for ids in first) == [0, 1]
    assert again == [[], []]
    assert sorted(len(ids) for ids in later) == [0, 1]
    assert len(rows) == 2 and len({row.due_at for row in rows}) == 2
    offset = spread("scheduled", WEEK).total_seconds()  # the runbook's own time in the week
    assert all((row.due_at.timestamp() - offset) % WEEK.total_seconds() == 0 for row in rows)
    assert {row.started_by for row in rows} <= {"scheduler:replica-0", "scheduler:replica-1"}


async def test_the_service_drills_on_schedule_and_publishes_gauges(make_rig, tmp_path):
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path, "weekly")], drill_check_seconds=0.3) as r:
        async def settled():
            rows = await r.rows(DrillRun)
            return rows if rows and rows[0].phase == "finished" else None

        [row] = await eventually(settled, timeout=20, what="the scheduled drill to finish")

        async def gauges():
            text = (await r.http.get("/metrics")).text
            return text if 'runbookd_runbook_drill_problems{runbook="weekly"} 2.0' in text \
                else None

        text = await eventually(gauges, timeout=10, what="the drill gauges")
    assert row.trigger == "schedule" and row.problems == 2
    [stamp] = [line.split()[-1] for line in text.splitlines() if line.startswith(
        'runbookd_runbook_last_drill_timestamp_seconds{runbook="weekly"}')]
    assert float(stamp) == pytest.approx(row.finished_at.timestamp())


async def test_the_cli_drills_and_prints_the_verdicts(make_rig, tmp_path, db_url, monkeypatch):
    create_demo_registry(tmp_path / "registry")
    monkeypatch.setenv("RUNBOOKD_ENV", "dev")
    monkeypatch.setenv("RUNBOOKD_DATABASE_URL", db_url)
    get_settings.cache_clear()

    def runbookd(*args: str):
        return CliRunner().invoke(cli, list(args))

    try:
        async with make_rig([drilled(tmp_path, "clidrill")]) as r:
            found = await asyncio.to_thread(runbookd, "drill", "clidrill", "--timeout", "20")
            clean = await asyncio.to_thread(runbookd, "drill", "clidrill", "-p",
                                            "model=demo-model", "--timeout", "20")
            bad = await asyncio.to_thread(runbookd, "drill", "clidrill", "-p", "model=Bad!")
            unknown = await asyncio.to_thread(runbookd, "drill", "nope")
            malformed = await asyncio.to_thread(runbookd, "drill", "clidrill", "-p", "model")
            runs = await r.rows(StepRun)
            executions = await r.rows(Execution)
    finally:
        get_settings.cache_clear()
    assert found.exit_code == 1, found.output  # it found problems
    assert "2 problems" in found.output
    assert "PROBLEM gone [ran] registry.get_alias" in found.output
    assert "ok      change [planned] registry.set_alias" in found.output
    assert clean.exit_code == 1 and "drill " in clean.output  # the same two problems
    assert bad.exit_code == 1 and "model" in bad.output
    assert unknown.exit_code == 1 and "nope" in unknown.output
    assert malformed.exit_code == 2 and "--param takes key=value" in malformed.output
    assert len(executions) == 2 and all(e.dry_run for e in executions)
    assert all(run.status != "awaiting_approval" for run in runs)



async def test_a_held_drill_skips_the_next_and_a_cancelled_one_is_settled(make_rig, tmp_path):
    """A paused runbook holds its drill; another drill for the same target (the scheduler's
    and one by hand, whichever comes second) is skipped: a drill of it is still going.
    Cancelled by hand, the held drill is settled by the scheduler's sweep, every step not
    reached."""
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path, "held")], drill_check_seconds=0.3) as r:
        paused = await r.post("/api/v1/guards/runbooks/held/pause", "rita",
                              {"reason": "maintenance"})
        assert paused.status_code == 200, paused.text
        started = await r.post("/api/v1/runbooks/held/drills", "rita", {})
        assert started.status_code == 201, started.text

        async def both():
            rows = await r.rows(DrillRun)
            return rows if sorted(row.phase for row in rows) == ["running", "skipped"] \
                else None

        rows = await eventually(both, timeout=10, what="a held drill and a skipped one")
        [held] = [row for row in rows if row.phase == "running"]
        [skipped] = [row for row in rows if row.phase == "skipped"]
        await r.wait_status(held.execution_id, "paused")
        cancelled = await r.post(f"/api/v1/executions/{held.execution_id}/cancel", "rita",
                                 {"comment": "not now"})
        assert cancelled.status_code == 200, cancelled.text
        drill = await finished(r, "held", held.id)
    assert {held.trigger, skipped.trigger} == {"manual", "schedule"}
    assert skipped.execution_id == held.execution_id and "still going" in skipped.reason
    assert drill["problems"] == 5
    assert {(v["kind"], v["ok"]) for v in drill["verdicts"]} == {("unreached", False)}
    assert drill["verdicts"][0]["reason"] == "not reached: the drill ended cancelled"


async def test_stats_give_each_runbook_s_last_drill(make_rig, tmp_path):
    """GET /api/v1/stats has the drills the stats page's panel shows: when each runbook was
    last drilled, what it found, and which version of it was drilled."""
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path)]) as r:
        def stats(query: str = ""):
            return r.http.get(f"/api/v1/stats{query}", headers=auth(r.tokens["victor"]))

        before = (await stats()).json()
        ids = []
        for _ in range(2):
            started = await r.post("/api/v1/runbooks/drilled/drills", "rita", {})
            assert started.status_code == 201, started.text
            ids.append((await finished(r, "drilled", started.json()["id"]))["id"])
        after = (await stats()).json()
        # A window that ended long before: the last drill is still the last drill.
        old = (await stats("?since=2020-01-01T00:00:00Z&until=2020-01-02T00:00:00Z")).json()
        other = (await stats("?runbook=another")).json()
        [row] = [row for row in await r.rows(DrillRun) if row.id == ids[-1]]
        executions = {e.id: e for e in await r.executions()}
    assert before["drills"] == {}
    last = after["drills"]["drilled"]
    assert last == {"drill_id": ids[-1], "problems": 2, "execution_id": row.execution_id,
                    "runbook_version": executions[row.execution_id].runbook_version,
                    "finished_at": last["finished_at"]}
    assert dt.datetime.fromisoformat(last["finished_at"]) == row.finished_at
    assert old["drills"] == after["drills"]
    assert other["drills"] == {}


async def test_a_drill_is_not_a_last_result_in_the_triage_tree(make_rig, tmp_path):
    """What a check said in a drill is not what happened in production: the runbook page's
    triage tree leaves drills out of "last result"."""
    create_demo_registry(tmp_path / "registry")
    book = {**drilled(tmp_path, "triaged"), "triage": [
        {"question": "Does the model still have its champion?", "check": "read",
         "points_to": "model"}]}
    async with make_rig([book]) as r, browser(r.server.url) as web:
        started = await r.post("/api/v1/runbooks/triaged/drills", "rita", {})
        assert started.status_code == 201, started.text
        await finished(r, "triaged", started.json()["id"])
        await sign_in(web, r.tokens["victor"])
        page = (await web.get("/runbooks/triaged")).text
        [execution] = await r.executions()
        runs = await r.steps(execution.id)
    # The drill did run the check, for real.
    assert any(run.step_id == "read" and run.status == "succeeded" for run in runs)
    tree = page[page.index('class="triage-tree"'):page.index("</ol>",
                                                             page.index('class="triage-tree"'))]
    assert "no finished run yet" in tree
    assert f'href="/executions/{execution.id}"' not in tree
