"""Issue 15's pages over real HTTP: the approval card comes first, a banner after a decision,
"Needs you" on the list with a reason column, the stats page's charts, the triage tree and
version diffs on the runbook page, timelines that name the step with full dates (the page
and the postmortem), and a favicon. The same pages in Chromium: tests/e2e/test_browser_pages.py."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import yaml

from app.web.charts import TimingRow, readable, timing_bars
from app.web.views import version_diffs
from tests.support.auth import auth
from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import browser, csrf_of, sign_in

FULL_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def book(rid: str = "web", **extra) -> dict:
    return runbook(rid, [
        step("check", **{"with": {"output": {"drift": 0.4}}}),
        risky("rollback", title="Roll the alias back", description="Moves champion to the "
              "previous version: live traffic is served by another model at once.",
              approval_timeout="1h", rollback={"title": "Undo", "action": "noop"}),
    ], triage=[
        {"question": "Is the model drifting?", "check": "check", "points_to": "model",
         "then": "roll the alias back"},
        {"question": "Is the feature store stale?", "check": "https://grafana.example/d/fs",
         "points_to": "data"},
    ], escalation=[{"after": "10m", "notify": ["slack:#ml-oncall"]}],
        limits={"concurrent": 5}, **extra)


def step_hash_of(html: str) -> str:
    return re.search(r'name="step_hash" value="([0-9a-f]{64})"', html).group(1)


def section(page: str, start: str, end: str) -> str:
    return page[page.index(start):page.index(end, page.index(start))]


async def test_the_approval_card_comes_first_with_everything_needed_to_decide(make_rig, tokens):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("web")
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["alice"])
            page = (await web.get(f"/executions/{ex.id}")).text
        async with browser(r.server.url) as viewer:
            await sign_in(viewer, tokens["victor"])
            seen = (await viewer.get(f"/executions/{ex.id}")).text
    card = section(page, 'class="card approval-card"', "</section>")
    # Above the alerts, the facts and the finished steps.
    assert page.index("approval-card") < page.index('id="h-alerts"')
    assert page.index("approval-card") < page.index('class="facts"')
    assert "Roll the alias back" in card and "Moves champion to the previous version" in card
    assert "Nobody has approved yet; 1 more needed (1 in all)" in card
    assert "any approver" in card
    assert re.search(r"(9m \d+s|10m) — escalates to slack:#ml-oncall at " + FULL_TIME, card)
    assert re.search(r"(59m \d+s|1h) — expires, and the execution ends", card)
    assert 'name="decision" value="approve"' in card and 'name="decision" value="reject"' in card
    assert 'name="step_hash" value="' in card
    # The step's own card keeps the same form, beside the parameters it covers.
    step_card = section(page, 'id="step-rollback"', "</article>")
    assert 'name="decision" value="approve"' in step_card and step_hash_of(card) == \
        step_hash_of(step_card)
    viewer_card = section(seen, 'class="card approval-card"', "</section>")
    assert "You cannot decide on this step: needs one of: approver" in viewer_card
    assert seen.count("You cannot decide on this step") == 1
    assert 'href="#decide-rollback"' in section(seen, 'id="step-rollback"', "</article>")
    assert 'value="approve"' not in seen


async def test_a_rollback_awaiting_approval_is_named_step_dot_rollback(make_rig, tokens):
    change = risky("change", description="Rewrites the serving config.",
                   rollback={"title": "Undo change", "action": "noop"})
    broken = runbook("change", [change, step("check", "fail", on_failure="rollback")])
    async with make_rig([broken]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("change")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_for(lambda rows: rows[0].status == "awaiting_approval"
                         and "change.rollback" in (rows[0].status_reason or ""))
        await sign_in(web, tokens["bob"])
        page = (await web.get(f"/executions/{ex.id}")).text
    card = section(page, 'class="card approval-card"', "</section>")
    assert "Rollback awaiting your decision" in card
    assert "<code>change.rollback</code>" in card
    assert "It undoes “Step change”" in card and "Rewrites the serving config." in card
    assert "/steps/change.rollback/decide" in card
    # The timeline tells the rollback's moves from the step's.
    assert re.search(FULL_TIME + r"</time>\s*<span class=\"subject\">step change.rollback:</span>"
                     r"\s*<span class=\"move\">pending → awaiting approval</span>", page)


async def test_a_banner_confirms_the_decision_read_back_from_the_record(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        await sign_in(web, tokens["alice"])
        page = (await web.get(f"/executions/{ex.id}")).text
        forged = (await web.get(f"/executions/{ex.id}?decided=rollback")).text
        step_hash = re.search(r'name="step_hash" value="([0-9a-f]{64})"', page).group(1)
        done = await web.post(f"/executions/{ex.id}/steps/rollback/decide", data={
            "decision": "approve", "step_hash": step_hash, "csrf_token": csrf_of(page)})
        assert done.status_code == 303
        assert done.headers["location"] == f"/executions/{ex.id}?decided=rollback#step-rollback"
        after = (await web.get(done.headers["location"].split("#")[0])).text
        await r.wait_status(ex.id, "succeeded")
    # A URL alone shows no banner: it is read from the approvals.
    assert "decision-banner" not in forged
    banner = section(after, 'id="decision-banner"', "</div>")
    assert "You approved “Roll the alias back”" in banner
    assert re.search(FULL_TIME + " UTC", banner)
    assert "approval-card" not in after


async def test_needs_you_lists_what_this_identity_may_decide(make_rig, tokens):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("web")
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "web", "params": {"model": "m2"}})
        manual = started.json()["id"]
        await r.wait_status(manual, "awaiting_approval")
        pages = {}
        for who in ("alice", "root", "victor"):
            async with browser(r.server.url) as web:
                await sign_in(web, tokens[who])
                pages[who] = (await web.get("/")).text
    alice = section(pages["alice"], 'id="needs-you"', "</section>")
    assert f'href="/executions/{ex.id}#decide-rollback"' in alice
    assert f'href="/executions/{manual}#decide-rollback"' in alice
    assert "awaits your approval" in alice and "Roll the alias back" in alice
    # Root started the manual one, so only the alert's execution waits on root.
    root = section(pages["root"], 'id="needs-you"', "</section>")
    assert f"/executions/{ex.id}#" in root and f"/executions/{manual}#" not in root
    victor = section(pages["victor"], 'id="needs-you"', "</section>")
    assert "Nothing waits on you (approvals need the approver role)" in victor
    # Needs you comes before the list of every execution.
    assert pages["alice"].index('id="needs-you"') < pages["alice"].index("data-live-list")


async def test_needs_you_lists_needs_attention_for_responders(make_rig, tokens, tmp_path):
    marks = tmp_path / "marks.txt"
    cut = runbook("att", [step("long", "sleep", idempotent=False,
                               **{"with": {"seconds": 30, "append_to": str(marks)}})])
    async with make_rig([cut], shutdown_grace_seconds=0) as r:
        await r.fire("att")
        await r.wait_for(lambda rows: rows and rows[0].status == "running")
        await r.wait_for(lambda rows: marks.exists())
    async with make_rig([cut], shutdown_grace_seconds=0) as r:
        [ex] = await r.wait_for(lambda rows: rows[0].status == "needs_attention")
        pages = {}
        for who in ("rita", "victor"):
            async with browser(r.server.url) as web:
                await sign_in(web, tokens[who])
                pages[who] = (await web.get("/")).text
    rita = section(pages["rita"], 'id="needs-you"', "</section>")
    assert f'href="/executions/{ex.id}"' in rita and "needs attention" in rita
    assert f"/executions/{ex.id}" not in section(pages["victor"], 'id="needs-you"', "</section>")


async def test_the_list_says_why_with_a_rate_limit_until_a_time(make_rig, tokens):
    held = runbook("held", [step("a")], limits={"rate": [{"count": 1, "per": "1h"}]})
    async with make_rig([held]) as r, browser(r.server.url) as web:
        await r.fire("held", fingerprint="1111111111111111")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        await r.fire("held", fingerprint="2222222222222222")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "rate_limited")
        await sign_in(web, tokens["victor"])
        page = (await web.get("/")).text
    until = (rows[0].started_at + dt.timedelta(hours=1)).astimezone(dt.UTC)
    # Within an hour of midnight the window ends tomorrow, and the list names the day.
    day = "" if until.date() == dt.datetime.now(dt.UTC).date() else f"{until:%Y-%m-%d} "
    assert '<th scope="col">Reason</th>' in page
    assert f"rate limited until {day}{until:%H:%M} UTC" in page
    # The panel's fields and buttons sit in one aligned grid.
    assert 'class="filter-panel"' in page and page.count('class="field') == 7


async def test_timeline_and_postmortem_name_the_step_with_full_dates(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        assert (await r.approve(ex.id, "rollback", "alice", "drift confirmed")).status_code == 200
        await r.wait_status(ex.id, "succeeded")
        await sign_in(web, tokens["victor"])
        page = (await web.get(f"/executions/{ex.id}")).text
        draft = (await r.http.get(f"/api/v1/executions/{ex.id}/postmortem",
                                  headers=auth(tokens["victor"]))).text
    line = re.compile(FULL_TIME + r"</time>\s*<span class=\"subject\">step rollback:</span>\s*"
                      r"<span class=\"move\">approved → running</span>\s*"
                      r"<span class=\"actor\">\(worker [^)]+\)</span>")
    assert line.search(page), section(page, 'id="h-timeline"', "</ol>")
    assert re.search(r"step rollback:</span>\s*<span class=\"kind\">approval.approve</span>\s*"
                     r"<span class=\"actor\">by alice</span>", page)
    timeline = draft[draft.index("### Timeline"):]
    assert re.search(r"^- " + FULL_TIME + r" step check: pending → running \(worker \S+\)$",
                     timeline, re.M), timeline
    assert re.search(r"^- " + FULL_TIME + r" step rollback: approval\.approve by alice — "
                     r"drift confirmed$", timeline, re.M), timeline
    assert re.search(r"^- " + FULL_TIME + r" execution: running → succeeded \(worker \S+\)",
                     timeline, re.M), timeline


async def test_stats_page_draws_the_charts_with_readable_durations(make_rig, tokens):
    async with make_rig([book(), runbook("broken", [step("x", "fail")])]) as r, \
            browser(r.server.url) as web:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await r.fire("web", starts_at=now)
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")
        await r.fire("broken")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "failed")
        await sign_in(web, tokens["victor"])
        page = await web.get("/stats")
        only = (await web.get("/stats", params={"runbook": "broken"})).text
        today = dt.date.today().isoformat()
        dated = await web.get("/stats", params={"since": today, "until": today,
                                                "period": "week"})
        bad = await web.get("/stats", params={"since": "yesterday"})
        backwards = await web.get("/stats", params={"since": today, "until": "2020-01-01"})
    assert page.status_code == 200, page.text
    text = page.text
    for chart in ("chart-restore", "chart-outcomes", "chart-automation", "chart-approval-wait",
                  "chart-failing"):
        assert re.search(rf'id="{chart}"[^>]*>.*?<svg [^>]*role="img"', text, re.S), chart
    restore = section(text, 'id="chart-restore"', "</section>")
    assert 'class="objective"' in restore and "web: objective 2h" in restore
    assert 'class="p50"' in restore and 'class="p90"' in restore
    assert "broken: 1 failed" in section(text, 'id="chart-failing"', "</section>")
    assert "web: 1 approved" in section(text, 'id="chart-automation"', "</section>")
    assert re.search(r"\d+ succeeded</title>", section(text, 'id="chart-outcomes"', "</section>"))
    assert not re.search(r"\d+\.\d{3}", restore)  # readable, never 233434.976
    assert 'href="/stats" aria-current="page"' in text
    assert "No execution in this window has a measured time to restore" in only
    assert "broken: 1 failed" in only and "web: 1 approved" not in only
    assert dated.status_code == 200 and "Outcomes per week" in dated.text
    assert bad.status_code == 422 and "since must be a date written like 2026-12-01" in bad.text
    assert backwards.status_code == 422 and "since must be on or before until" in backwards.text


async def test_runbook_page_draws_the_triage_tree_and_diffs_versions(make_rig, tokens, tmp_path):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["victor"])
        before = (await web.get("/runbooks/web")).text
        ex = await r.awaiting("web")
        await r.approve(ex.id, "rollback", "alice")
        await r.wait_status(ex.id, "succeeded")
        path = tmp_path / "catalog" / "remediations" / "web.yaml"
        path.write_text(yaml.safe_dump(book(severity="high"), sort_keys=False))
        reloaded = await r.http.post("/-/reload", headers=auth(tokens["root"]))
        assert reloaded.status_code == 200, reloaded.text
        after = (await web.get("/runbooks/web")).text
    tree = section(after, 'class="triage-tree"', "</ol>")
    assert tree.count('class="tree-node"') == 2
    assert '<a href="#step-check">Step check</a>' in tree
    assert 'class="points points-model">model<' in tree and "then: roll the alias back" in tree
    assert 'href="https://grafana.example/d/fs"' in tree and "points-data" in tree
    assert ('last result: <span class="status s-succeeded">succeeded</span> in '
            f'<a href="/executions/{ex.id}">') in tree
    assert "next: Q2" in tree and "none of these: escalate" in tree
    assert "no finished run yet" in section(before, 'class="triage-tree"', "</ol>")
    diff = section(after, 'class="diff"', "</details>")
    assert '<span class="d-del">-severity: critical</span>' in diff
    assert '<span class="d-add">+severity: high</span>' in diff
    assert "+1 \N{MINUS SIGN}1 lines" in after and "first version" in after


async def test_favicon_and_its_link(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        icon = await web.get("/favicon.ico")
        page = (await web.get("/login")).text
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg")
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page


def test_readable_durations():
    assert [readable(s) for s in (None, 0.85, 42, 233.4, 3600, 7500, 233434.976)] == [
        "—", "850 ms", "42s", "3m 53s", "1h", "2h 5m", "2d 16h"]


def test_chart_labels_are_escaped_and_bars_scale_to_the_objective():
    svg = str(timing_bars("t", [TimingRow("<script>x</script>", 60, 120, 3, 240)]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    widths = [float(w) for w in re.findall(r'class="p(?:50|90)"[^>]*width="([\d.]+)"', svg)]
    assert widths[0] == 2 * widths[1]  # p90 twice p50, on an axis reaching the objective


def test_version_diffs_compare_each_version_with_the_one_before():
    at = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    rows = [SimpleNamespace(version=v, loaded_at=at, content=c) for v, c in (
        ("b" * 64, {"id": "x", "severity": "high"}), ("a" * 64, {"id": "x", "severity": "info"}))]
    newest, oldest = version_diffs(rows)
    assert (newest.previous, newest.added, newest.removed) == ("a" * 64, 1, 1)
    assert ("add", "+severity: high") in newest.lines and ("del", "-severity: info") in newest.lines
    assert oldest.previous is None and oldest.lines == []
