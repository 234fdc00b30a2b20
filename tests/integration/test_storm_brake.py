"""The storm brake (issue 16): more distinct targets than its limit within its window hold new
executions (not dropped); one page lists the targets; a human releases or aborts them, and
both are recorded. Per runbook and global, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import yaml
from typer.testing import CliRunner

from app.catalog.schema import StormBrake
from app.cli import app as cli
from app.config import get_settings
from app.db import make_engine, make_session_factory, session_scope, utcnow
from app.engine.brake_models import BrakeVerdict, StormBrakeRow
from app.engine.brakes import check_brakes
from app.engine.models import Execution
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog

PAGE = "slack:#ml-oncall"


def storm_book(rid: str, **limits: object) -> dict:
    return runbook(rid, [step("fix")], limits=limits,
                   escalation=[{"after": "5m", "notify": [PAGE]}])


def done(rows, ids=None) -> bool:
    return all(e.status in ("succeeded", "paused") for e in rows if ids is None or e.id in ids)


async def test_a_runbook_brake_holds_the_storm_pages_once_and_a_release_lets_it_run(make_rig):
    book = storm_book("storm", brake={"targets": 3, "within": "10m"})
    async with make_rig([book]) as r:
        for n in range(6):
            await r.fire("storm", model=f"m{n}")
        rows = await r.wait_for(lambda rows: len(rows) == 6 and done(rows))
        ran = sorted(e.target for e in rows if e.status == "succeeded")
        held = sorted(e.target for e in rows if e.status == "paused")
        assert len(ran) == 3 and len(held) == 3, [(e.target, e.status) for e in rows]
        assert all("storm brake" in e.status_reason for e in rows if e.status == "paused")

        # One more target while it is engaged: held too, and nobody is paged again.
        await r.fire("storm", model="m6")
        rows = await r.wait_for(lambda rows: len(rows) == 7 and done(rows))
        assert sum(e.status == "paused" for e in rows) == 4
        pages = [n for n in await r.notifications() if n.kind == "brake_engaged"]
        assert [p.channel for p in pages] == [PAGE]
        assert sorted(pages[0].payload["targets"]) == sorted(
            [*ran, pages[0].payload["target"]])
        assert all(t in pages[0].payload["text"] for t in ran)

        guards = (await r.http.get("/api/v1/guards",
                                   headers={"Authorization": f"Bearer {r.tokens['victor']}"}))
        [brake] = guards.json()["brakes"]
        assert (brake["scope"], brake["engaged"], brake["limit_targets"]) == (
            "runbook:storm", True, 3)
        assert sorted(h["target"] for h in brake["held"]) == sorted(
            e.target for e in rows if e.status == "paused")

        refused = await r.post("/api/v1/guards/brakes/release", "victor",
                               {"scope": "runbook:storm", "reason": "x"})
        no_reason = await r.post("/api/v1/guards/brakes/release", "rita",
                                 {"scope": "runbook:storm", "reason": ""})
        released = await r.post("/api/v1/guards/brakes/release", "rita",
                                {"scope": "runbook:storm", "reason": "feature store is back"})
        assert (refused.status_code, no_reason.status_code) == (403, 422)
        assert released.status_code == 200, released.text
        assert len(released.json()["execution_ids"]) == 4
        rows = await r.wait_for(lambda rows: all(e.status == "succeeded" for e in rows))

        again = await r.post("/api/v1/guards/brakes/release", "rita",
                             {"scope": "runbook:storm", "reason": "twice"})
        assert again.status_code == 409
        assert "not engaged" in again.json()["error"]["message"]

        # The count starts afresh at the release: the 7 let through do not engage it again.
        for n in (7, 8):
            await r.fire("storm", model=f"m{n}")
        rows = await r.wait_for(lambda rows: len(rows) == 9 and
                                all(e.status == "succeeded" for e in rows))
        [event] = [e for e in await r.events() if e.kind == "brake.released"]
        [engaged] = [e for e in await r.events() if e.kind == "brake.engaged"]
        [row] = await r.rows(StormBrakeRow)
    assert (event.actor, event.reason) == ("rita", "feature store is back")
    assert sorted(event.data["executions"]) == sorted(released.json()["execution_ids"])
    assert engaged.actor == "system:brake" and len(engaged.data["targets"]) == 4
    assert row.engaged is False and row.released_at is not None


async def test_the_global_brake_counts_every_runbook_and_an_abort_cancels(
        make_rig, tmp_path: Path):
    mappings, remediations = write_catalog(tmp_path / "global", [
        storm_book("first"), storm_book("second")])
    doc = yaml.safe_load(mappings.read_text())
    doc["brake"] = {"targets": 2, "within": "10m", "notify": ["webhook:storm-room"]}
    mappings.write_text(yaml.safe_dump(doc))
    async with make_rig(mappings=mappings, remediations_dir=remediations) as r:
        await r.fire("first", model="a")
        await r.wait_for(lambda rows: len(rows) == 1 and rows[0].status == "succeeded")
        await r.fire("second", model="b")
        await r.wait_for(lambda rows: len(rows) == 2 and done(rows))
        # Another alert for a target already counted is no storm.
        await r.fire("first", model="a", fingerprint="a-second-alert")
        await r.wait_for(lambda rows: len(rows) == 3 and done(rows))
        await r.fire("second", model="c")
        rows = await r.wait_for(lambda rows: len(rows) == 4 and done(rows))
        [held] = [e for e in rows if e.status == "paused"]
        assert (held.runbook_id, held.target) == ("second", "model:c")
        [page] = [n for n in await r.notifications() if n.kind == "brake_engaged"]
        assert page.channel == "webhook:storm-room"
        assert page.payload["brake"] == "global"

        aborted = await r.post("/api/v1/guards/brakes/abort", "rita",
                               {"reason": "the cluster is down; we roll back by hand"})
        assert aborted.status_code == 200, aborted.text
        assert aborted.json()["execution_ids"] == [held.id]
        cancelled = await r.wait_status(held.id, "cancelled")
        [event] = [e for e in await r.events() if e.kind == "brake.aborted"]
        verdicts = {v.execution_id: v.verdict for v in await r.rows(BrakeVerdict)}
        unknown = await r.post("/api/v1/guards/brakes/release", "rita",
                               {"scope": "runbook:first", "reason": "x"})
        bad_scope = await r.post("/api/v1/guards/brakes/release", "rita",
                                 {"scope": "runbook:../x", "reason": "x"})
    assert "abort" in cancelled.status_reason and "rita" in cancelled.status_reason
    assert (event.actor, event.data["scope"]) == ("rita", "global")
    assert verdicts[held.id] == "aborted"
    assert sorted(verdicts.values()) == ["aborted", "admitted", "admitted", "admitted"]
    assert unknown.status_code == 404
    assert bad_scope.status_code == 422


async def test_drills_and_hand_started_rollbacks_pass_an_engaged_brake(make_rig):
    book = storm_book("drilled", brake={"targets": 1, "within": "10m"})
    async with make_rig([book]) as r:
        await r.fire("drilled", model="a")
        await r.fire("drilled", model="b")
        await r.wait_for(lambda rows: len(rows) == 2 and done(rows))
        drill = await r.post("/api/v1/executions", "rita",
                             {"runbook": "drilled", "params": {"model": "c"}, "dry_run": True})
        assert drill.status_code == 201, drill.text
        finished = await r.wait_status(drill.json()["id"], "succeeded")
    assert finished.dry_run is True


async def test_the_cli_shows_and_releases_a_brake(make_rig, db_url, monkeypatch):
    monkeypatch.setenv("RUNBOOKD_ENV", "dev")
    monkeypatch.setenv("RUNBOOKD_DATABASE_URL", db_url)
    get_settings.cache_clear()

    def runbookd(*args: str):
        return CliRunner().invoke(cli, list(args))

    book = storm_book("clibrake", brake={"targets": 1, "within": "10m"})
    try:
        async with make_rig([book]) as r:
            await r.fire("clibrake", model="a")
            await r.fire("clibrake", model="b")
            rows = await r.wait_for(lambda rows: len(rows) == 2 and done(rows))
            [held] = [e for e in rows if e.status == "paused"]
            shown = await asyncio.to_thread(runbookd, "brake", "status")
            missing = await asyncio.to_thread(runbookd, "brake", "release", "--runbook",
                                              "clibrake")
            wrong = await asyncio.to_thread(runbookd, "brake", "release", "--reason", "x")
            released = await asyncio.to_thread(runbookd, "brake", "release", "--runbook",
                                               "clibrake", "--reason", "registry fixed")
            await r.wait_status(held.id, "succeeded")
            [event] = [e for e in await r.events() if e.kind == "brake.released"]
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.output
    assert "runbook:clibrake: ENGAGED" in shown.output
    assert f"held: execution {held.id} clibrake model:{held.target.split(':')[1]}" in \
        shown.output
    assert missing.exit_code == 2 and "--reason" in missing.output
    assert wrong.exit_code == 1 and "the global brake has never engaged" in wrong.output
    assert released.exit_code == 0, released.output
    assert released.output.strip() == f"runbook:clibrake: released; executions: {held.id}"
    assert event.actor.startswith("cli:") and event.reason == "registry fixed"


async def test_two_replicas_deciding_at_once_admit_one_target_past_the_limit(db_url):
    """Each replica counts, then admits, in its own transaction: the advisory lock makes the
    second wait for the first's commit and count its target (SQLite has one writer)."""
    engine = make_engine(db_url, pool_size=4)
    factory = make_session_factory(engine)
    config = StormBrake(targets=1, within=dt.timedelta(minutes=10))
    now = utcnow()
    try:
        async with session_scope(factory) as session:
            rows = [Execution(runbook_id="race", runbook_version="v", target=f"model:{t}",
                              status="pending", params={}, dry_run=False, trigger="alert",
                              created_at=now, updated_at=now) for t in ("a", "b", "c", "d")]
            session.add_all(rows)
        ids = [e.id for e in rows]

        async def decide(execution_id: int):
            async with session_scope(factory) as session:
                execution = await session.get(Execution, execution_id)
                hold = await check_brakes(session, execution, [("runbook:race", config)])
                await asyncio.sleep(0.2)  # a slow replica: still holding its transaction
                return hold

        holds = await asyncio.gather(*(decide(i) for i in ids))
        verdicts = await all_rows(db_url, BrakeVerdict)
    finally:
        await engine.dispose()
    assert sum(h is None for h in holds) == 1, holds
    assert sum(h is not None and h.engaged_now for h in holds) == 1
    assert sorted(v.verdict for v in verdicts) == ["admitted", "held", "held", "held"]
