"""Change sign-off and review cadence (issue 16), on SQLite and PostgreSQL: the first catalog
is the baseline; a version whose risky steps changed runs as a drill until a reviewer signs
it off; other changes are signed off automatically; who may sign off; the review cadence
from sign-offs in /metrics, reminding the owner once per period across replicas; and
RUNBOOKD_REQUIRE_REVIEW's hold on an overdue runbook's risky steps."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from typer.testing import CliRunner

from app.catalog.loader import load_catalog
from app.catalog.signoff_models import ReviewNotice, RunbookSignoff
from app.catalog.signoff_reviews import remind_overdue
from app.cli import app as cli
from app.config import get_settings
from app.db import make_engine, make_session_factory, session_scope, utcnow
from app.events import Event
from tests.support.engine_catalog import risky, runbook, step, write_catalog
from tests.support.wait import eventually
from tests.support.web import browser, csrf_of, sign_in

OWNER = "slack:#ml-owners"


def promo(target: str = "v1", **extra: Any) -> dict[str, Any]:
    """A runbook with a safe check and a risky promotion to `target`; bob reviews it."""
    book = runbook("promo", [step("check"), risky("promote", **{"with": {"message": target}})],
                   reviewers=["bob"], **extra)
    return book


async def signoffs(r, who: str = "victor", rid: str = "promo") -> dict[str, Any]:
    got = await r.http.get(f"/api/v1/runbooks/{rid}/signoffs",
                           headers={"Authorization": f"Bearer {r.tokens[who]}"})
    assert got.status_code == 200, got.text
    return got.json()


async def reload(r, tmp_path: Path, books: list[dict[str, Any]], who: str = "root") -> None:
    write_catalog(tmp_path / "catalog", books)
    done = await r.post("/-/reload", who)
    assert done.status_code == 200, done.text


async def kinds(r, kind: str) -> list[Event]:
    return [e for e in await r.rows(Event, order_by=Event.id) if e.kind == kind]


async def test_the_first_catalog_is_the_baseline_and_a_risky_change_drills_until_signed_off(
        make_rig, tmp_path):
    async with make_rig([promo("v1")]) as r:
        first = await signoffs(r)
        assert first["pending"] is None
        [baseline] = first["signoffs"]
        assert (baseline["kind"], baseline["version"]) == ("initial", first["live_version"])
        [event] = await kinds(r, "signoff.baseline")
        assert event.data["versions"] == {"promo": first["live_version"]}
        assert "first catalog seen" in event.reason

        await reload(r, tmp_path, [promo("v2")])
        now = await signoffs(r)
        pending = now["pending"]
        assert pending["version"] == now["live_version"] != first["live_version"]
        assert (pending["loaded_by"], pending["against"]) == ("root", first["live_version"])
        assert pending["changes"] == ["step promote: with changed"]
        [required] = await kinds(r, "signoff.required")
        assert "runs as a drill until a reviewer signs it off" in required.reason

        # Unsigned: the execution runs as a drill, and says why and where to sign.
        await r.fire("promo", model="m1")
        [drill] = await r.wait_for(lambda rows: rows and rows[0].status in (
            "succeeded", "awaiting_approval"))
        assert drill.dry_run
        [why] = await kinds(r, "signoff.drill")
        assert why.execution_id == drill.id
        assert f"version {pending['version'][:12]} of promo is not signed off: ran as a drill" \
            in why.reason
        assert "/runbooks/promo" in why.reason and "runbookd signoff promo" in why.reason

        version = pending["version"]
        loader = await r.post("/api/v1/runbooks/promo/signoffs", "root", {"version": version})
        stranger = await r.post("/api/v1/runbooks/promo/signoffs", "alice", {"version": version})
        unknown = await r.post("/api/v1/runbooks/promo/signoffs", "bob", {"version": "ab" * 32})
        not_hash = await r.post("/api/v1/runbooks/promo/signoffs", "bob", {"version": "v2"})
        assert (loader.status_code, stranger.status_code) == (403, 403)
        assert "loaded version" in loader.json()["error"]["message"]
        assert "is not a reviewer of promo (its reviewers: bob) and not an admin" in \
            stranger.json()["error"]["message"]
        assert (unknown.status_code, not_hash.status_code) == (422, 422)
        assert "GET /api/v1/runbooks/promo/versions lists them" in \
            unknown.json()["error"]["message"]

        signed = await r.post("/api/v1/runbooks/promo/signoffs", "bob",
                              {"version": version[:12], "comment": "v2 is the right model"})
        assert signed.status_code == 201, signed.text
        assert signed.json()["version"] == version and signed.json()["kind"] == "review"
        again = await r.post("/api/v1/runbooks/promo/signoffs", "bob", {"version": version})
        assert again.status_code == 409
        assert "already signed off by bob" in again.json()["error"]["message"]
        assert (await signoffs(r))["pending"] is None
        [recorded] = await kinds(r, "signoff.recorded")
        assert (recorded.actor, recorded.reason) == ("bob", "v2 is the right model")

        # Signed off: the next execution is for real.
        await r.fire("promo", model="m2")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status ==
                                "awaiting_approval")
        assert not rows[1].dry_run
        assert len(await kinds(r, "signoff.drill")) == 1


async def test_a_change_that_touches_no_risky_step_is_signed_off_automatically(make_rig,
                                                                               tmp_path):
    async with make_rig([promo("v1")]) as r:
        first = (await signoffs(r))["live_version"]
        words = promo("v1", summary="Promote the retrained model; new words.")
        words["steps"][0]["with"] = {"message": "a safe step may change"}
        await reload(r, tmp_path, [words])
        now = await signoffs(r)
        assert now["pending"] is None and now["live_version"] != first
        auto = now["signoffs"][0]
        assert (auto["version"], auto["kind"], auto["reviewer"]) == (
            now["live_version"], "auto", "system:signoff")
        [event] = await kinds(r, "signoff.automatic")
        assert "changes no risky step: signed off automatically" in event.reason
        assert event.data["against"] == first

        await r.fire("promo", model="m1")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert not ex.dry_run

        # A runbook added to a signed-off catalog has nothing signed: its risky steps wait.
        other = runbook("other", [risky("change")], reviewers=["bob"])
        await reload(r, tmp_path, [words, other])
        pending = (await signoffs(r, rid="other"))["pending"]
        assert pending["changes"] == ["step change: risky step added"]
        assert pending["against"] is None


async def test_an_admin_signs_off_what_another_loaded_and_the_cli_signs_off(
        make_rig, tmp_path, db_url, monkeypatch):
    async with make_rig([promo("v1")]):
        pass
    # A restart loads v2: the service loaded it, so root (an admin, no reviewer) may sign.
    async with make_rig([promo("v2")]) as r:
        v2 = (await signoffs(r))["pending"]["version"]
        carol = await r.post("/api/v1/runbooks/promo/signoffs", "carol", {"version": v2})
        assert carol.status_code == 403
        admin = await r.post("/api/v1/runbooks/promo/signoffs", "root", {"version": v2})
        assert admin.status_code == 201, admin.text

        # root reloads v3 and may not sign it; bob signs it from the CLI.
        await reload(r, tmp_path, [promo("v3")])
        v3 = (await signoffs(r))["pending"]["version"]
        assert (await r.post("/api/v1/runbooks/promo/signoffs", "root",
                             {"version": v3})).status_code == 403
        monkeypatch.setenv("RUNBOOKD_ENV", "dev")
        monkeypatch.setenv("RUNBOOKD_DATABASE_URL", db_url)
        monkeypatch.setenv("RUNBOOKD_API_TOKENS_FILE", str(tmp_path / "tokens.yaml"))
        get_settings.cache_clear()

        def runbookd(*args: str):
            return CliRunner().invoke(cli, ["signoff", "promo", *args])

        try:
            refused = await asyncio.to_thread(runbookd, "--version", v3[:10],
                                              "--token", r.tokens["carol"])
            done = await asyncio.to_thread(runbookd, "--version", v3[:10], "--comment",
                                           "read the diff", "--token", r.tokens["bob"])
            twice = await asyncio.to_thread(runbookd, "--version", v3, "--token",
                                            r.tokens["bob"])
            no_token = await asyncio.to_thread(runbookd, "--version", v3)
        finally:
            get_settings.cache_clear()
        assert refused.exit_code == 1, refused.output
        assert "error (403)" in refused.output and "not a reviewer" in refused.output
        assert done.exit_code == 0, done.output
        assert f"promo: version {v3[:12]} signed off by bob" in done.output
        assert twice.exit_code == 1 and "error (409)" in twice.output
        assert no_token.exit_code == 2 and "--token" in no_token.output
        assert (await signoffs(r))["pending"] is None
        [cli_event] = [e for e in await kinds(r, "signoff.recorded") if e.actor == "bob"]
        assert cli_event.reason == "read the diff"


def _gauge(text: str, name: str, runbook_id: str) -> float:
    match = re.search(rf'^{name}\{{runbook="{runbook_id}"\}} (\S+)$', text, re.M)
    assert match, f"{name} for {runbook_id} not in /metrics"
    return float(match.group(1))


async def _remind(url: str, catalog, now: dt.datetime) -> list[str]:
    engine = make_engine(url, pool_size=1)
    try:
        async with session_scope(make_session_factory(engine)) as session:
            return await remind_overdue(session, catalog, now)
    finally:
        await engine.dispose()


async def test_an_overdue_review_shows_in_metrics_and_reminds_the_owner_once_per_period(
        make_rig, tmp_path):
    stale = runbook("stale", [step("check")], reviewed_at="2026-01-01", review_every="30d",
                    owner=OWNER, reviewers=["bob"])
    fresh = runbook("fresh", [step("check")], reviewers=["bob"])
    async with make_rig([stale, fresh], review_check_seconds=0) as r:
        text = (await r.http.get("/metrics")).text
        assert _gauge(text, "runbookd_runbook_review_overdue", "stale") == 1
        assert _gauge(text, "runbookd_runbook_review_overdue", "fresh") == 0
        assert _gauge(text, "runbookd_runbook_last_review_timestamp_seconds", "stale") == \
            dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
        review = (await signoffs(r, rid="stale"))["review"]
        assert (review["overdue"], review["source"]) == (True, "yaml")
        async with browser(r.server.url) as web:
            await sign_in(web, r.tokens["victor"])
            listed = (await web.get("/runbooks")).text
            assert listed.count("review overdue") == 1  # stale, not fresh
            page = (await web.get("/runbooks/stale")).text
            assert "Review overdue since 2026-01-31" in page

        # Two replicas look at once: one reminder, to the owner.
        catalog = load_catalog(tmp_path / "catalog" / "alert_mappings.yaml",
                               tmp_path / "catalog" / "remediations", action_names=None)
        now = utcnow()
        first = await asyncio.gather(*[_remind(r.db_url, catalog, now) for _ in range(2)])
        assert sorted(first, key=len) == [[], ["stale"]]
        assert await _remind(r.db_url, catalog, now + dt.timedelta(days=1)) == []
        reminders = [n for n in await r.notifications() if n.kind == "review_overdue"]
        assert [n.channel for n in reminders] == [OWNER]
        assert "overdue since 2026-01-31 (last reviewed 2026-01-01: its YAML reviewed_at; " \
            "due every 30d); owner slack:#ml-owners" in reminders[0].payload["text"]
        assert len(await r.rows(ReviewNotice)) == 1
        # The next period reminds again, once.
        later = now + dt.timedelta(days=30)
        assert await _remind(r.db_url, catalog, later) == ["stale"]
        assert await _remind(r.db_url, catalog, later) == []

        # The live version is the baseline; bob's sign-off is the review.
        live = (await signoffs(r, rid="stale"))["live_version"]
        signed = await r.post("/api/v1/runbooks/stale/signoffs", "bob",
                              {"version": live, "comment": "quarterly review"})
        assert signed.status_code == 201, signed.text
        at = dt.datetime.fromisoformat(signed.json()["signed_at"])
        text = (await r.http.get("/metrics")).text
        assert _gauge(text, "runbookd_runbook_review_overdue", "stale") == 0
        assert _gauge(text, "runbookd_runbook_last_review_timestamp_seconds", "stale") == \
            at.timestamp()
        review = (await signoffs(r, rid="stale"))["review"]
        assert (review["overdue"], review["source"]) == (False, "signoff")
        # Reviewed now: a second sign-off of the same version waits until the next review.
        again = await r.post("/api/v1/runbooks/stale/signoffs", "bob", {"version": live})
        assert again.status_code == 409 and "next review is due" in again.text
        assert len(await r.rows(RunbookSignoff, RunbookSignoff.kind == "review")) == 1


async def test_require_review_holds_an_overdue_runbooks_risky_step_for_an_approval_naming_it(
        make_rig):
    stale = runbook("stale", [step("check"), risky("change")], reviewed_at="2026-01-01",
                    review_every="30d", reviewers=["bob"])
    async with make_rig([stale], require_review=True, review_check_seconds=0) as r:
        ex = await r.awaiting("stale")
        [run] = [s for s in await r.steps(ex.id) if s.step_id == "change"]
        note = ("review overdue since 2026-01-31: approving this also accepts running an "
                "unreviewed runbook")
        assert note in run.plan["summary"]
        [hold] = await kinds(r, "review.hold")
        assert (hold.step_run_id, hold.reason) == (run.id, note)
        [asked] = [n for n in await r.notifications() if n.kind == "approval_request"]
        assert note in asked.payload["plan"]
        # The one approval path: approving it runs the step.
        approved = await r.approve(ex.id, "change", "alice")
        assert approved.status_code == 200, approved.text
        await r.wait_status(ex.id, "succeeded")


async def test_without_require_review_an_overdue_runbook_asks_as_usual(make_rig):
    stale = runbook("stale", [risky("change")], reviewed_at="2026-01-01", review_every="30d")
    async with make_rig([stale], review_check_seconds=0) as r:
        ex = await r.awaiting("stale")
        [run] = await r.steps(ex.id)
        assert "review overdue" not in run.plan["summary"]
        assert await kinds(r, "review.hold") == []


async def test_the_runbook_page_signs_off_with_its_form_as_the_signed_in_identity(make_rig,
                                                                                 tmp_path):
    async with make_rig([promo("v1")]) as r:
        page = await r.http.get("/runbooks/promo")  # not signed in: to the sign-in
        assert page.status_code in (302, 303, 307)
        await reload(r, tmp_path, [promo("v2")])
        version = (await signoffs(r))["pending"]["version"]
        async with browser(r.server.url) as carol, browser(r.server.url) as bob:
            await sign_in(carol, r.tokens["carol"], "/runbooks/promo")
            listed = (await carol.get("/runbooks")).text
            assert 'href="/runbooks/promo#signoff">unsigned change</a>' in listed
            shown = (await carol.get("/runbooks/promo")).text
            assert "unsigned change" in shown and "step promote: with changed" in shown
            assert "You cannot sign this off" in shown and "not a reviewer" in shown
            refused = await carol.post("/runbooks/promo/signoff", data={
                "version": version, "csrf_token": csrf_of(shown)})
            assert refused.status_code == 403 and "not a reviewer" in refused.text

            await sign_in(bob, r.tokens["bob"], "/runbooks/promo")
            # An execution of the unsigned version says on its page why it is a drill.
            await r.fire("promo", model="m1")
            [ex] = await r.wait_for(lambda rows: len(rows) == 1)
            assert ex.dry_run
            timeline = (await bob.get(f"/executions/{ex.id}")).text
            assert "signoff.drill" in timeline and "is not signed off: ran as a drill" in timeline
            shown = (await bob.get("/runbooks/promo")).text
            assert f'name="version" value="{version}"' in shown
            forged = await bob.post("/runbooks/promo/signoff", data={"version": version})
            assert forged.status_code == 403
            signed = await bob.post("/runbooks/promo/signoff", data={
                "version": version, "comment": "ok", "csrf_token": csrf_of(shown)})
            assert signed.status_code == 303
            assert signed.headers["location"] == "/runbooks/promo#signoff"
            after = (await bob.get("/runbooks/promo")).text
            assert "unsigned change" not in after and "Sign off version" not in after
            listed = (await bob.get("/runbooks")).text
            assert "unsigned change" not in listed and "review overdue" not in listed
            assert dt.datetime.now(dt.UTC).date().isoformat() in listed  # reviewed: today
        assert (await signoffs(r))["pending"] is None


async def test_two_replicas_make_one_baseline_and_remind_the_owner_once_per_period(
        make_rig):
    stale = runbook("stale", [risky("change")], reviewed_at="2026-01-01", review_every="30d",
                    owner=OWNER, reviewers=["bob"])
    async with make_rig([stale], review_check_seconds=0.2) as a, \
            make_rig([stale], review_check_seconds=0.2):

        async def reminded() -> list[Any]:
            return [n for n in await a.notifications() if n.kind == "review_overdue"]

        await eventually(reminded, timeout=15, what="the overdue-review reminder")
        await asyncio.sleep(1.0)  # both replicas look again several times meanwhile
        assert [n.channel for n in await reminded()] == [OWNER]
        assert len(await a.rows(ReviewNotice)) == 1
        assert len(await kinds(a, "review.overdue")) == 1
        assert len(await kinds(a, "signoff.baseline")) == 1
        assert len(await a.rows(RunbookSignoff)) == 1


# Replicas share PostgreSQL; SQLite is one process (DESIGN.md, Scale).
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_replicas_starting_at_once_on_a_catalog_stored_before_sign_off_make_one_baseline(
        make_rig, pg_url, db_url):
    book = promo("v1")
    async with make_rig([book]):
        pass
    # As if the versions had been stored by a runbookd from before change sign-off.
    engine = make_engine(db_url, pool_size=1)
    try:
        async with session_scope(make_session_factory(engine)) as session:
            await session.execute(delete(RunbookSignoff))
            await session.execute(delete(Event))
    finally:
        await engine.dispose()
    async with contextlib.AsyncExitStack() as stack:
        replicas = await asyncio.gather(*[stack.enter_async_context(make_rig([book]))
                                          for _ in range(2)])
        assert len(await kinds(replicas[0], "signoff.baseline")) == 1
        [baseline] = await replicas[0].rows(RunbookSignoff)
        assert baseline.kind == "initial"
