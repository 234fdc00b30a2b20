"""Responder feedback (issue 16): once an execution has ended, the people who took part (who
started it, who decided on its steps) say whether the runbook helped, on SQLite and
PostgreSQL; stats and the postmortem draft carry it."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import event
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import get_settings
from app.db import make_engine, make_session_factory, session_scope, utcnow
from app.engine.feedback_models import Feedback
from app.engine.models import Execution
from app.history.feedback import helpfulness_by_runbook
from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import browser, csrf_of, sign_in

BOOK = runbook("feedbook", [step("check"), risky("change")])


async def approved_and_done(r, model: str = "fraud-v3") -> int:
    """An alert's execution that alice approved, run to its end."""
    await r.fire("feedbook", model=model)
    rows = await r.wait_for(lambda rows: any(e.target == f"model:{model}" and
                                             e.status == "awaiting_approval" for e in rows))
    ex = next(e for e in rows if e.target == f"model:{model}")
    answer = await r.approve(ex.id, "change", "alice")
    assert answer.status_code == 200, answer.text
    await r.wait_status(ex.id, "succeeded")
    return ex.id


def feedback(r, ex_id: int, who: str, verdict: str, note: str = ""):
    return r.post(f"/api/v1/executions/{ex_id}/feedback", who,
                  {"verdict": verdict, "note": note})


async def test_participants_give_feedback_once_it_has_ended_and_a_second_one_updates(make_rig):
    async with make_rig([BOOK]) as r:
        await r.fire("feedbook")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        early = await feedback(r, ex.id, "alice", "helped")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")

        first = await feedback(r, ex.id, "alice", "partly", "the rollback was right; slow")
        second = await feedback(r, ex.id, "alice", "helped", "fine after all")
        outsider = await feedback(r, ex.id, "bob", "did_not_help")
        admin = await feedback(r, ex.id, "root", "helped")
        listed = await r.http.get(f"/api/v1/executions/{ex.id}/feedback",
                                  headers={"Authorization": f"Bearer {r.tokens['victor']}"})
        rows = await r.rows(Feedback)
        events = [e for e in await r.events(ex.id) if e.kind == "feedback.given"]

    assert early.status_code == 409, early.text
    assert "has not ended" in early.json()["error"]["message"]
    assert (first.status_code, second.status_code) == (201, 200), (first.text, second.text)
    for refused in (outsider, admin):
        assert refused.status_code == 403, refused.text
        message = refused.json()["error"]["message"]
        assert "only the people who took part" in message and "alice" in message
    # One row per person: the second verdict replaced the first; the events keep both.
    [row] = rows
    assert (row.identity, row.verdict, row.note, row.channel) == (
        "alice", "helped", "fine after all", "api")
    assert row.updated_at >= row.created_at
    assert [(e.actor, e.data["verdict"], e.data.get("replaces"), e.reason) for e in events] == [
        ("alice", "partly", None, "partly: the rollback was right; slow"),
        ("alice", "helped", "partly", "helped: fine after all")]
    assert listed.status_code == 200
    assert [(i["identity"], i["verdict"]) for i in listed.json()["items"]] == [
        ("alice", "helped")]


async def test_whoever_started_it_by_hand_may_give_feedback_and_bad_input_is_a_clear_422(
        make_rig):
    async with make_rig([runbook("byhand", [step("check")])]) as r:
        started = await r.post("/api/v1/executions", "rita",
                               {"runbook": "byhand", "params": {"model": "m1"}})
        assert started.status_code == 201, started.text
        ex_id = started.json()["id"]
        await r.wait_status(ex_id, "succeeded")
        bad = await feedback(r, ex_id, "rita", "great")
        long = await feedback(r, ex_id, "rita", "helped", "x" * 1001)
        ok = await feedback(r, ex_id, "rita", "did_not_help", "x" * 1000)
        missing = await feedback(r, 999999, "rita", "helped")
    assert bad.status_code == 422
    assert all(v in bad.json()["error"]["message"] for v in ("helped", "partly",
                                                               "did_not_help"))
    assert long.status_code == 422 and "note" in long.json()["error"]["message"]
    assert ok.status_code == 201, ok.text
    assert missing.status_code == 404


async def test_stats_show_helpfulness_per_runbook_and_the_postmortem_has_the_notes(make_rig):
    async with make_rig([BOOK, runbook("other", [step("check")])]) as r:
        first = await approved_and_done(r, "m1")
        second = await approved_and_done(r, "m2")
        third = await approved_and_done(r, "m3")
        for ex_id, verdict in ((first, "helped"), (second, "helped"), (third, "did_not_help")):
            answer = await feedback(r, ex_id, "alice", verdict, f"note on {ex_id} <b>*x*</b>")
            assert answer.status_code == 201, answer.text
        assert (await feedback(r, first, "alice", "partly", "on reflection")).status_code == 200
        stats = (await r.http.get("/api/v1/stats", headers={
            "Authorization": f"Bearer {r.tokens['victor']}"})).json()
        postmortem = (await r.http.get(f"/api/v1/executions/{first}/postmortem", headers={
            "Authorization": f"Bearer {r.tokens['victor']}"})).text
    helpfulness = stats["helpfulness"]
    assert helpfulness["feedbook"] == {"helped": 1, "partly": 1, "did_not_help": 1,
                                       "given": 3, "executions": 3, "helped_ratio": 0.5}
    assert "other" not in helpfulness
    assert stats["runbooks"]["feedbook"]["time_to_restore_seconds"]["count"] == 3
    assert "### Responder feedback" in postmortem
    assert "**alice**: partly" in postmortem and "on reflection" in postmortem


async def test_the_cli_gives_feedback_as_the_identity_of_its_token(make_rig, db_url,
                                                                     monkeypatch):
    monkeypatch.setenv("RUNBOOKD_ENV", "dev")
    monkeypatch.setenv("RUNBOOKD_DATABASE_URL", db_url)
    get_settings.cache_clear()

    def runbookd(*args: str):
        return CliRunner().invoke(cli, list(args))

    try:
        async with make_rig([BOOK]) as r:
            monkeypatch.setenv("RUNBOOKD_API_TOKENS_FILE", str(r.server.app.state.settings
                                                               .api_tokens_file))
            get_settings.cache_clear()
            ex_id = await approved_and_done(r)
            given = await asyncio.to_thread(runbookd, "feedback", str(ex_id), "did-not-help",
                                            "--note", "the alias was already right",
                                            "--token", r.tokens["alice"])
            outsider = await asyncio.to_thread(runbookd, "feedback", str(ex_id), "helped",
                                               "--token", r.tokens["bob"])
            wrong = await asyncio.to_thread(runbookd, "feedback", str(ex_id), "great",
                                            "--token", r.tokens["alice"])
            [row] = await r.rows(Feedback)
    finally:
        get_settings.cache_clear()
    assert given.exit_code == 0, given.output
    assert given.output.strip() == (f"execution {ex_id}: alice says did_not_help "
                                    "(recorded)")
    assert (row.identity, row.verdict, row.note, row.channel) == (
        "alice", "did_not_help", "the alias was already right", "cli")
    assert outsider.exit_code == 1 and "only the people who took part" in outsider.output
    assert wrong.exit_code == 2 and "helped" in wrong.output


async def test_the_execution_page_form_needs_csrf_and_the_runbook_page_shows_the_notes(
        make_rig):
    async with make_rig([BOOK]) as r, browser(r.server.url) as alice, \
            browser(r.server.url) as bob:
        ex_id = await approved_and_done(r)
        await sign_in(alice, r.tokens["alice"])
        await sign_in(bob, r.tokens["bob"])
        page = await alice.get(f"/executions/{ex_id}")
        no_csrf = await alice.post(f"/executions/{ex_id}/feedback",
                                   data={"verdict": "helped", "note": "forged"})
        given = await alice.post(f"/executions/{ex_id}/feedback", data={
            "verdict": "partly", "note": "right fix <b>slow</b> approval",
            "csrf_token": csrf_of(page.text)})
        after = await alice.get(f"/executions/{ex_id}")
        outsider_page = await bob.get(f"/executions/{ex_id}")
        outsider = await bob.post(f"/executions/{ex_id}/feedback", data={
            "verdict": "helped", "csrf_token": csrf_of(outsider_page.text)})
        runbook_page = await bob.get("/runbooks/feedbook")
        stats_page = await bob.get("/stats")
        [row] = await r.rows(Feedback)
    assert 'name="verdict" value="did_not_help"' in page.text
    assert no_csrf.status_code == 403
    assert given.status_code == 303 and given.headers["location"].endswith("#feedback")
    assert (row.identity, row.verdict, row.channel) == ("alice", "partly", "web")
    assert "You said “partly”" in after.text
    assert "right fix &lt;b&gt;slow&lt;/b&gt; approval" in after.text
    assert 'name="verdict"' not in outsider_page.text
    assert "only the people who took part" in outsider_page.text
    assert outsider.status_code == 403
    assert "What responders said" in runbook_page.text
    assert "right fix &lt;b&gt;slow&lt;/b&gt; approval" in runbook_page.text
    assert "0 helped, 1 partly, 0 not (50%)" in stats_page.text


async def test_helpfulness_is_one_aggregate_statement_whatever_the_number_of_executions(db_url):
    """The stats' part: one statement with a fixed set of parameters, never one per execution
    (asyncpg refuses more than 32,767), grouped by runbook."""
    engine = make_engine(db_url)
    now = utcnow()
    verdicts = ("helped", "helped", "partly", "did_not_help")
    try:
        async with session_scope(make_session_factory(engine)) as session:
            rows = [Execution(runbook_id=f"rb{n % 3}", runbook_version="v", target=f"model:{n}",
                              status="succeeded", params={}, dry_run=False, trigger="alert",
                              created_at=now, updated_at=now) for n in range(300)]
            session.add_all(rows)
            await session.flush()
            session.add_all(Feedback(execution_id=e.id, runbook_id=e.runbook_id,
                                     execution_created_at=e.created_at, identity=who,
                                     verdict=verdicts[n % 4], note="", channel="api",
                                     created_at=now, updated_at=now)
                            for n, e in enumerate(rows) for who in ("alice", "bob"))
        statements: list[tuple[str, int]] = []

        def seen(conn, cursor, statement, parameters, context, executemany) -> None:
            statements.append((statement, len(parameters or ())))

        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        async with make_session_factory(engine)() as session:
            stats = await helpfulness_by_runbook(session, since=now - dt.timedelta(hours=1),
                                                 until=now + dt.timedelta(hours=1))
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    finally:
        await engine.dispose()
    [(statement, parameters)] = [s for s in statements if "feedback" in s[0]]
    assert parameters < 20, statement  # the verdicts and the window; 300 executions here
    assert sorted(stats) == ["rb0", "rb1", "rb2"]
    assert sum(h.given for h in stats.values()) == 600
    assert sum(h.executions for h in stats.values()) == 300
    assert stats["rb0"].helped + stats["rb0"].partly + stats["rb0"].did_not_help == 200
