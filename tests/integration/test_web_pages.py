"""The web pages over real HTTP: sign-in, CSRF, role-based buttons, guards, and that no GET
changes anything."""

from __future__ import annotations

import re

import yaml

from app.engine.models import Approval, ApprovalLink, Execution, Guard, StepRun
from app.events import Event
from app.identity import hash_token
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.db import all_rows
from tests.support.engine_catalog import risky, runbook, step
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.web import browser, csrf_of, sign_in

APPROVE_BUTTON = re.compile(r'<button[^>]*name="decision" value="approve"')


def book(rid="web", count=1):
    return runbook(rid, [step("check", **{"with": {"output": {"drift": 0.4}}}),
                         risky("rollback", count=count)],
                   dashboards={"drift": "https://grafana.example/d/drift"},
                   limits={"concurrent": 5})


async def snapshot(db_url):
    """Every row a GET could touch, as plain values."""
    out = {}
    for model in (Approval, ApprovalLink, Event, Execution, Guard, StepRun):
        rows = await all_rows(db_url, model)
        out[model.__name__] = sorted(
            tuple(sorted((k, repr(v)) for k, v in vars(r).items() if not k.startswith("_")))
            for r in rows)
    return out


async def test_sign_in_page_and_redirects(make_rig):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        home = await web.get("/")
        assert home.status_code == 200
        assert "<title>Sign in · runbookd</title>" in home.text
        assert 'for="token"' in home.text and 'id="token"' in home.text
        page = await web.get("/executions/1?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Fexecutions%2F1%3Fx%3D1"
        assert (await web.get("/ui/executions/1/version")).status_code == 303


async def test_sign_in_sets_a_safe_cookie_and_rejects_bad_tokens(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        page = await web.get("/login")
        bad = await web.post("/login", data={"token": "rbd_wrong", "csrf_token":
                                              csrf_of(page.text)})
        assert bad.status_code == 401
        assert "That token is not valid" in bad.text
        no_csrf = await web.post("/login", data={"token": tokens["alice"]})
        assert no_csrf.status_code == 403
        assert "session" not in "".join(no_csrf.headers.get_list("set-cookie"))
        answer = await sign_in(web, tokens["alice"], "/runbooks")
        assert answer.headers["location"] == "/runbooks"
        cookie = next(c for c in answer.headers.get_list("set-cookie")
                      if c.startswith("runbookd_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert tokens["alice"] not in value and hash_token(tokens["alice"]) not in value
        home = await web.get("/")
        assert "<title>Executions · runbookd</title>" in home.text
        assert "alice" in home.text
        # Off-site `next` is ignored.
        await web.post("/logout", data={"csrf_token": csrf_of(home.text)})
        assert (await web.get("/")).text.count("Sign in") >= 1
        page = await web.get("/login")
        away = await web.post("/login", data={"token": tokens["alice"], "next":
                                               "//evil.example/", "csrf_token":
                                               csrf_of(page.text)})
        assert away.headers["location"] == "/"


async def test_https_public_url_makes_a_secure_host_cookie(make_rig, tokens):
    async with make_rig([book()], public_url="https://runbookd.example") as r, \
            browser(r.server.url) as web:
        page = await web.get("/login")
        pre = "".join(page.headers.get_list("set-cookie"))
        assert "__Host-runbookd_csrf=" in pre and "Secure" in pre
        # httpx keeps Secure cookies off plain http, as a browser would: pass it by hand.
        value = pre.split("__Host-runbookd_csrf=")[1].split(";")[0]
        web.cookies.set("__Host-runbookd_csrf", value)
        answer = await web.post("/login", data={"token": tokens["alice"],
                                                "csrf_token": csrf_of(page.text)})
        cookie = next(c for c in answer.headers.get_list("set-cookie")
                      if c.startswith("__Host-runbookd_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie and "Path=/" in cookie


async def test_logout_needs_csrf_and_ends_the_session(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["victor"])
        forged = await web.post("/logout", data={"csrf_token": "x"})
        assert forged.status_code == 403
        odd = await web.post("/logout", data={"csrf_token": "\u00e9\u2603"})
        assert odd.status_code == 403
        assert "Executions" in (await web.get("/")).text
        home = await web.get("/")
        out = await web.post("/logout", data={"csrf_token": csrf_of(home.text)})
        assert out.status_code == 303
        assert "<title>Sign in · runbookd</title>" in (await web.get("/")).text


async def test_removed_token_ends_its_session(make_rig, tokens, tokens_file):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["bob"])
        assert (await web.get("/runbooks")).status_code == 200
        entries = [e for e in yaml.safe_load(tokens_file.read_text()) if e["name"] != "bob"]
        tokens_file.write_text(yaml.safe_dump(entries))
        assert (await web.get("/runbooks")).status_code == 303


async def test_executions_list_filters_and_live_status(make_rig, tokens):
    async with make_rig([book(), runbook("other", [step("only")])]) as r, \
            browser(r.server.url) as web:
        ex = await r.awaiting("web")
        await r.fire("other")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "succeeded")
        await sign_in(web, tokens["victor"])
        page = (await web.get("/")).text
        assert f'href="/executions/{ex.id}"' in page and "awaiting approval" in page
        assert "data-live-list" in page and 'for="f-status"' in page
        only = (await web.get("/", params={"status": "succeeded"})).text
        assert f'href="/executions/{ex.id}"' not in only and "other" in only
        bad = await web.get("/", params={"status": "nonsense"})
        assert bad.status_code == 422 and "unknown status" in bad.text
        live = await web.get("/ui/executions/status", params=[("id", ex.id), ("id", 999)])
        assert live.json() == {str(ex.id): "awaiting_approval"}
        version = (await web.get(f"/ui/executions/{ex.id}/version")).json()
        assert version["status"] == "awaiting_approval"


async def test_approve_button_only_for_allowed_identities(make_rig, tokens):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("web")
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "web", "params": {"model": "m2"}})
        manual = started.json()["id"]
        await r.wait_status(manual, "awaiting_approval")
        seen = {}
        for who in ("victor", "rita", "alice", "root"):
            async with browser(r.server.url) as web:
                await sign_in(web, tokens[who])
                seen[who] = ((await web.get(f"/executions/{ex.id}")).text,
                             (await web.get(f"/executions/{manual}")).text)
    assert not APPROVE_BUTTON.search(seen["victor"][0])
    assert "needs one of: approver" in seen["victor"][0]
    assert not APPROVE_BUTTON.search(seen["rita"][0])
    assert APPROVE_BUTTON.search(seen["alice"][0]) and APPROVE_BUTTON.search(seen["alice"][1])
    assert APPROVE_BUTTON.search(seen["root"][0])
    assert not APPROVE_BUTTON.search(seen["root"][1])
    assert "separation of duties" in seen["root"][1]
    page = seen["alice"][0]
    for text in ("Rendered parameters", "Timeline", "Alerts", "fraud-v3", "drift",
                 "&#34;drift&#34;: 0.4", "awaits approval", "Needs 1 approval from approver"):
        assert text in page or text.replace("&#34;", '"') in page, text


async def test_approve_on_the_page_needs_csrf_and_the_shown_hash(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        await sign_in(web, tokens["alice"])
        page = (await web.get(f"/executions/{ex.id}")).text
        step_hash = re.search(r'name="step_hash" value="([0-9a-f]{64})"', page).group(1)
        url = f"/executions/{ex.id}/steps/rollback/decide"
        forged = await web.post(url, data={"decision": "approve", "step_hash": step_hash})
        assert forged.status_code == 403 and "<html" in forged.text
        other_site = await web.post(url, data={"decision": "approve", "step_hash": step_hash,
                                               "csrf_token": csrf_of(page)},
                                    headers={"Origin": "https://evil.example"})
        assert other_site.status_code == 403
        stale = await web.post(url, data={"decision": "approve", "step_hash": "0" * 64,
                                          "csrf_token": csrf_of(page)})
        assert stale.status_code == 409 and "changed since" in stale.text
        assert await r.approvals() == []
        done = await web.post(url, data={"decision": "approve", "step_hash": step_hash,
                                         "comment": "checked the drift",
                                         "csrf_token": csrf_of(page)})
        assert done.status_code == 303
        await r.wait_status(ex.id, "succeeded")
        [approval] = await r.approvals()
        after = (await web.get(f"/executions/{ex.id}")).text
    assert (approval.identity, approval.channel, approval.comment) == (
        "alice", "web", "checked the drift")
    assert approval.step_hash == step_hash
    assert "checked the drift" in after and not APPROVE_BUTTON.search(after)


async def test_viewer_cannot_decide_even_by_posting(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        await sign_in(web, tokens["victor"])
        page = (await web.get(f"/executions/{ex.id}")).text
        [run] = [s for s in await r.steps(ex.id) if s.step_id == "rollback"]
        answer = await web.post(f"/executions/{ex.id}/steps/rollback/decide",
                                data={"decision": "approve", "step_hash": run.step_hash,
                                      "csrf_token": csrf_of(page)})
        assert answer.status_code == 403 and "may not decide" in answer.text
        assert await r.approvals() == []


async def test_session_cookie_works_for_api_reads_but_writes_need_the_csrf_header(
        make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        await sign_in(web, tokens["alice"])
        assert (await web.get("/api/v1/executions")).status_code == 200
        url = f"/api/v1/executions/{ex.id}/steps/rollback/approve"
        assert (await web.post(url, json={"comment": "x"})).status_code == 401
        page = (await web.get(f"/executions/{ex.id}")).text
        ok = await web.post(url, json={"comment": "x"},
                            headers={"X-CSRF-Token": csrf_of(page)})
        assert ok.status_code == 200, ok.text


async def test_get_never_changes_anything(make_rig, tokens, db_url):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("web")
        made = await r.post(f"/api/v1/executions/{ex.id}/steps/rollback/approval-links",
                            "alice", {})
        token = made.json()["url"].rsplit("/", 1)[1]
        await sign_in(web, tokens["alice"])
        before = await snapshot(db_url)
        for path in ("/", f"/executions/{ex.id}", "/runbooks", "/runbooks/web", "/guards",
                     f"/approve/{token}", "/login", f"/ui/executions/{ex.id}/version",
                     f"/ui/executions/status?id={ex.id}", "/static/app.css"):
            answer = await web.get(path)
            assert answer.status_code in (200, 303), (path, answer.status_code)
        assert await snapshot(db_url) == before


async def test_runbook_pages_render_the_document(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["victor"])
        listing = (await web.get("/runbooks")).text
        assert 'href="/runbooks/web"' in listing and "Test runbook web" in listing
        page = await web.get("/runbooks/web")
        for text in ("<title>Test runbook web · runbookd</title>", "Summary", "Triage",
                     "Is the test model drifting?", "Why this remediation", "Steps",
                     "risky", "1 from approver", "Escalation", "Version history", "live",
                     "https://grafana.example/d/drift"):
            assert text in page.text, text
        version = re.search(r'\?version=([0-9a-f]{64})', page.text).group(1)
        assert (await web.get(f"/runbooks/web?version={version}")).status_code == 200
        assert (await web.get("/runbooks/nope")).status_code == 404
        assert (await web.get("/runbooks/web?version=" + "0" * 64)).status_code == 404


async def test_guards_page_and_forms(make_rig, tokens):
    async with make_rig([book()]) as r:
        async with browser(r.server.url) as viewer:
            await sign_in(viewer, tokens["victor"])
            page = (await viewer.get("/guards")).text
            assert "Kill switch" in page and "Engage the kill switch" not in page
            assert "needs the responder role" in page
            denied = await viewer.post("/guards/kill-switch",
                                       data={"engaged": "on", "csrf_token": csrf_of(page)})
            assert denied.status_code == 403
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["rita"])
            page = (await web.get("/guards")).text
            assert "Engage the kill switch" in page
            assert 'aria-label="Pause web"' in page
            paused = await web.post("/guards/runbooks/web/pause",
                                    data={"reason": "noisy model", "csrf_token": csrf_of(page)})
            assert paused.status_code == 303
            page = (await web.get("/guards")).text
            assert "noisy model" in page and 'aria-label="Resume web"' in page
            engaged = await web.post("/guards/kill-switch", data={
                "engaged": "on", "reason": "incident 42", "csrf_token": csrf_of(page)})
            assert engaged.status_code == 303
            page = (await web.get("/guards")).text
            assert "Release the kill switch" in page and "incident 42" in page
            assert (await r.http.get("/api/v1/guards", headers=auth(tokens["rita"]))).json() \
                == {"kill_switch": True, "kill_reason": "incident 42",
                    "paused": {"web": "noisy model"}, "brakes": []}
            missing = await web.post("/guards/runbooks/nope/pause",
                                     data={"csrf_token": csrf_of(page)})
            assert missing.status_code == 404
            released = await web.post("/guards/kill-switch",
                                      data={"engaged": "off", "csrf_token": csrf_of(page)})
            assert released.status_code == 303
        events = [e for e in await r.events() if e.kind == "guard.changed"]
    assert [(e.actor, e.data["key"], e.data["engaged"]) for e in events] == [
        ("rita", "runbook:web", True), ("rita", "global", True), ("rita", "global", False)]


async def test_alert_text_is_escaped_and_headers_are_strict(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        alert = am_alert("ff00ff00ff00ff00", labels={"alertname": "web", "model": "fraud-v3"},
                         annotations={"summary": "<script>alert(1)</script>"})
        answer = await r.http.post("/webhooks/alertmanager", content=go_json(am_body(alert)),
                                   headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await sign_in(web, tokens["victor"])
        page = await web.get(f"/executions/{ex.id}")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"


async def test_unknown_execution_is_a_404_page(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["victor"])
        missing = await web.get("/executions/4242")
        assert missing.status_code == 404 and "<title>Not found · runbookd</title>" in \
            missing.text
        bad = await web.get("/executions/abc")
        assert bad.status_code == 422 and "<html" in bad.text


async def test_prod_without_link_secret_refuses_sign_in_clearly(make_rig, tokens):
    async with make_rig([book()], env="prod", link_secret=None) as r, \
            browser(r.server.url) as web:
        home = await web.get("/")
        assert home.status_code == 200 and "Sign in" in home.text
        answer = await web.post("/login", data={"token": tokens["alice"], "csrf_token": ""})
        assert answer.status_code == 503
        assert "RUNBOOKD_LINK_SECRET is not set" in answer.text
        assert "session" not in "".join(answer.headers.get_list("set-cookie"))
        ex = await r.awaiting("web")
        made = await r.post(f"/api/v1/executions/{ex.id}/steps/rollback/approval-links",
                            "alice", {})
        assert made.status_code == 503


async def test_sessions_survive_with_a_configured_link_secret(make_rig, tokens):
    """Keys derive from RUNBOOKD_LINK_SECRET, so a session is valid in every replica."""
    secret = "link-secret-for-tests-0123456789abcdef"
    async with make_rig([book()], link_secret=secret) as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        cookie = web.cookies.get("runbookd_session")
    async with make_rig([book()], link_secret=secret) as r2, browser(r2.server.url) as web2:
        web2.cookies.set("runbookd_session", cookie)
        assert "Executions" in (await web2.get("/")).text
    async with make_rig([book()], link_secret=secret + "x") as r3, \
            browser(r3.server.url) as web3:
        web3.cookies.set("runbookd_session", cookie)
        assert "<title>Sign in · runbookd</title>" in (await web3.get("/")).text
