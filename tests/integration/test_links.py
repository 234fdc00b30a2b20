"""Signed approval links over real HTTP: a GET changes nothing, the POST acts through
`decide`, and expired, used, revoked, forged or malformed links get a clear page and a 4xx."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import re

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.engine.links import make_link, make_link_maker
from app.engine.models import ApprovalLink, StepRun
from app.errors import SigningKeyMissing
from app.notify.models import Notification
from app.signing import derived_key
from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import browser, csrf_of, sign_in

BOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
APPROVE_BUTTON = re.compile(r'<button[^>]*name="decision" value="approve"')


def book(rid="lk", count=1, out=None):
    extra = {"with": {"append_to": str(out)}} if out else {}
    return runbook(rid, [step("check"), risky("rollback", count=count, **extra)],
                   limits={"concurrent": 5})


async def new_link(r, ex_id, who="alice", **body):
    answer = await r.post(f"/api/v1/executions/{ex_id}/steps/rollback/approval-links", who,
                          body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def path_of(url):
    return "/approve/" + url.rsplit("/", 1)[1]


async def test_role_link_get_changes_nothing_then_sign_in_and_approve(make_rig, tokens,
                                                                      tmp_path):
    out = tmp_path / "rollback.txt"
    async with make_rig([book(out=out)]) as r:
        ex = await r.awaiting("lk")
        made = await new_link(r, ex.id)
        assert made["intended"] == "role:approver" and "token" not in made
        path = path_of(made["url"])
        assert made["url"].startswith(r.server.app.state.settings.public_url)
        events_before = len(await r.events())
        async with browser(r.server.url, user_agent=BOT) as bot:
            for _ in range(3):
                page = await bot.get(path)
                assert page.status_code == 200
        assert "Opening this page changes nothing" in page.text
        assert "append_to" in page.text and str(out) in page.text  # the rendered params
        assert "Sign in to decide" in page.text and not APPROVE_BUTTON.search(page.text)
        assert "fraud-v3" in page.text and "Nobody has approved yet" in page.text
        assert page.headers["referrer-policy"] == "same-origin"
        assert len(await r.events()) == events_before
        [link] = await r.rows(ApprovalLink)
        assert link.used_at is None and await r.approvals() == []

        async with browser(r.server.url) as web:
            landing = await web.get(path)
            signed = await web.post("/login", data={"token": tokens["bob"], "next": path,
                                                    "csrf_token": csrf_of(landing.text)})
            assert signed.headers["location"] == path
            confirm = await web.get(path)
            assert APPROVE_BUTTON.search(confirm.text) and "deciding as <strong>bob" in \
                confirm.text
            done = await web.post(path, data={"decision": "approve", "comment": "via link",
                                              "csrf_token": csrf_of(confirm.text)})
            assert done.status_code == 303
            assert done.headers["location"] == f"/executions/{ex.id}#step-rollback"
            await r.wait_status(ex.id, "succeeded")
            again = await web.post(path, data={"decision": "approve",
                                               "csrf_token": csrf_of(confirm.text)})
            assert again.status_code == 410 and "already used" in again.text
            assert f'href="/executions/{ex.id}"' in again.text  # others decide there
            assert (await web.get(path)).status_code == 410
        [approval] = await r.approvals()
        [link] = await r.rows(ApprovalLink)
        kinds = [e.kind for e in await r.events(ex.id)]
    assert (approval.identity, approval.channel, approval.comment) == ("bob", "link", "via link")
    assert approval.step_hash == link.step_hash
    assert link.used_at is not None
    assert "link.created" in kinds and "link.used" in kinds
    assert out.read_text().count("\n") == 1


async def test_role_link_rejects_viewer_and_requester_and_leaves_the_link_unused(
        make_rig, tokens):
    async with make_rig([book()]) as r:
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "lk", "params": {"model": "m1"}})
        ex_id = started.json()["id"]
        await r.wait_status(ex_id, "awaiting_approval")
        path = path_of((await new_link(r, ex_id))["url"])
        for who, why in (("victor", "this link is for the approver role"),
                         ("root", "separation of duties")):
            async with browser(r.server.url) as web:
                await sign_in(web, tokens[who])
                page = await web.get(path)
                assert page.status_code == 200 and why in page.text
                assert not APPROVE_BUTTON.search(page.text)
                answer = await web.post(path, data={"decision": "approve",
                                                    "csrf_token": csrf_of(page.text)})
                assert answer.status_code == 403 and why in answer.text
        async with browser(r.server.url) as anonymous:
            page = await anonymous.get(path)
            answer = await anonymous.post(path, data={"decision": "approve",
                                                      "csrf_token": csrf_of(page.text)})
            assert answer.status_code == 401 and "sign in" in answer.text
        [link] = await r.rows(ApprovalLink)
    assert link.used_at is None
    assert await r.approvals() == []


async def test_one_admin_cannot_pass_a_two_person_quorum_with_named_links(make_rig, tokens):
    """Hole 1: an admin minted links naming alice and bob and opened them without signing in;
    the step ran as approved by both. A link is an invitation, never a credential."""
    async with make_rig([book(count=2)]) as r:
        ex = await r.awaiting("lk")
        denied = await r.post(f"/api/v1/executions/{ex.id}/steps/rollback/approval-links",
                              "bob", {"intended": "alice"})
        assert denied.status_code == 403
        paths = {who: path_of((await new_link(r, ex.id, "root", intended=who))["url"])
                 for who in ("alice", "bob")}
        async with browser(r.server.url) as anonymous:
            for path in paths.values():
                page = await anonymous.get(path)
                assert "sign in" in page.text.lower() and not APPROVE_BUTTON.search(page.text)
                answer = await anonymous.post(path, data={"decision": "approve",
                                                          "csrf_token": csrf_of(page.text)})
                assert answer.status_code == 401, answer.text
        async with browser(r.server.url) as admin:
            await sign_in(admin, tokens["root"])
            page = await admin.get(paths["alice"])
            assert "this link is for alice" in page.text
            answer = await admin.post(paths["alice"], data={"decision": "approve",
                                                            "csrf_token": csrf_of(page.text)})
            assert answer.status_code == 403 and "this link is for alice" in answer.text
        assert await r.approvals() == []
        async with browser(r.server.url) as alice:
            await sign_in(alice, tokens["alice"])
            page = await alice.get(paths["alice"])
            assert "deciding as <strong>alice" in page.text
            done = await alice.post(paths["alice"], data={"decision": "approve",
                                                          "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303
        links = {link.intended: link for link in await r.rows(ApprovalLink)}
        created = [e for e in await r.events(ex.id) if e.kind == "link.created"]
        [approval] = await r.approvals()
        [current] = await r.rows(StepRun, StepRun.step_id == "rollback")
    assert (approval.identity, approval.channel) == ("alice", "link")
    assert current.status == "awaiting_approval"  # bob has not decided: no quorum
    assert links["alice"].used_at is not None and links["bob"].used_at is None
    assert {link.created_by for link in links.values()} == {"root"}
    assert [e.actor for e in created] == ["root", "root"]


async def test_the_initiator_cannot_make_links_for_its_own_execution(make_rig):
    async with make_rig([book()]) as r:
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "lk", "params": {"model": "m1"}})
        ex_id = started.json()["id"]
        await r.wait_status(ex_id, "awaiting_approval")
        answer = await r.post(f"/api/v1/executions/{ex_id}/steps/rollback/approval-links",
                              "root", {"intended": "role:approver"})
        assert answer.status_code == 403, answer.text
        assert "started execution" in answer.json()["error"]["message"]
        assert await r.rows(ApprovalLink) == []


async def test_a_shared_link_survives_a_decision_that_did_not_count(make_rig, tokens):
    """Hole 10: alice, who had approved already, clicked the shared role link; her repeat
    counted for nothing but used the link up, so bob could not use it."""
    async with make_rig([book(count=2)]) as r:
        ex = await r.awaiting("lk")
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        path = path_of((await new_link(r, ex.id, "carol"))["url"])
        async with browser(r.server.url) as alice:
            await sign_in(alice, tokens["alice"])
            page = await alice.get(path)
            await alice.post(path, data={"decision": "approve",
                                         "csrf_token": csrf_of(page.text)})
        [link] = await r.rows(ApprovalLink)
        assert link.used_at is None
        async with browser(r.server.url) as bob:
            await sign_in(bob, tokens["bob"])
            page = await bob.get(path)
            done = await bob.post(path, data={"decision": "approve",
                                              "csrf_token": csrf_of(page.text)})
            assert done.status_code == 303
        await r.wait_status(ex.id, "succeeded")
        [link] = await r.rows(ApprovalLink)
    assert link.used_at is not None


async def test_reject_by_link(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("lk")
        path = path_of((await new_link(r, ex.id))["url"])
        await sign_in(web, tokens["carol"], path)
        page = await web.get(path)
        done = await web.post(path, data={"decision": "reject", "comment": "wrong model",
                                          "csrf_token": csrf_of(page.text)})
        assert done.status_code == 303
        await r.wait_status(ex.id, "rejected")


async def test_bad_links_get_clear_pages(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("lk")
        path = path_of((await new_link(r, ex.id))["url"])
        token = path.rsplit("/", 1)[1]
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[-1] ^= 1
        tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        page = await web.get(f"/approve/{tampered}")
        assert page.status_code == 403 and "altered" in page.text
        assert "<title>Not allowed · runbookd</title>" in page.text
        raw[0] ^= 1
        unknown = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        assert (await web.get(f"/approve/{unknown}")).status_code == 404
        for junk in ("x", "%%%", "A" * 200, token[:-4]):
            answer = await web.get(f"/approve/{junk}")
            assert answer.status_code == 404 and "not valid" in answer.text, junk
        # The POST checks the link too, and never acts on a forged one. (Signed in: without
        # a session a form POST is refused before its body is read.)
        await sign_in(web, tokens["alice"])
        landing = await web.get(path)
        forged = await web.post(f"/approve/{tampered}", data={
            "decision": "approve", "csrf_token": csrf_of(landing.text)})
        assert forged.status_code == 403
        assert await r.approvals() == []


async def test_expired_and_revoked_links_are_410(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("lk")
        settings = r.server.app.state.settings
        async with session_scope(r.server.app.state.session_factory) as session:
            [run] = (await session.execute(select(StepRun).where(
                StepRun.step_id == "rollback"))).scalars().all()
            short = await make_link(session, settings, step_run=run, intended="role:approver",
                                    ttl=dt.timedelta(seconds=1), created_by="test")
        revocable = await new_link(r, ex.id)
        viewer = await r.post(f"/api/v1/approval-links/{revocable['id']}/revoke", "victor")
        assert viewer.status_code == 403
        revoked = await r.post(f"/api/v1/approval-links/{revocable['id']}/revoke", "alice")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        page = await web.get(path_of(revocable["url"]))
        assert page.status_code == 410 and "revoked" in page.text
        await asyncio.sleep(2.1)
        page = await web.get(path_of(short))
        assert page.status_code == 410 and "expired" in page.text
        listed = await r.http.get(f"/api/v1/executions/{ex.id}/approval-links",
                                  headers={"Authorization": f"Bearer {tokens['victor']}"})
        assert len(listed.json()) == 2
        assert all("url" not in item for item in listed.json())
        missing = await r.post("/api/v1/approval-links/nope/revoke", "alice")
        assert missing.status_code == 404
        kinds = [e.kind for e in await r.events(ex.id)]
    assert "link.revoked" in kinds


async def test_revoke_from_the_execution_page(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("lk")
        made = await new_link(r, ex.id)
        await sign_in(web, tokens["alice"])
        page = (await web.get(f"/executions/{ex.id}")).text
        assert f'aria-label="Revoke link {made["id"][:8]}"' in page
        answer = await web.post(f"/executions/{ex.id}/links/{made['id']}/revoke",
                                data={"csrf_token": csrf_of(page)})
        assert answer.status_code == 303
        assert (await web.get(path_of(made["url"]))).status_code == 410


async def test_changed_step_voids_the_link(make_rig, tokens):
    async with make_rig([book()]) as r, browser(r.server.url) as web:
        ex = await r.awaiting("lk")
        path = path_of((await new_link(r, ex.id))["url"])
        await sign_in(web, tokens["alice"], path)
        page = await web.get(path)
        async with session_scope(r.server.app.state.session_factory) as session:
            [run] = (await session.execute(select(StepRun).where(
                StepRun.step_id == "rollback"))).scalars().all()
            run.step_hash = "f" * 64  # as if the step re-rendered with new parameters
        changed = await web.get(path)
        assert changed.status_code == 409 and f'href="/executions/{ex.id}"' in changed.text
        answer = await web.post(path, data={"decision": "approve",
                                            "csrf_token": csrf_of(page.text)})
        assert answer.status_code == 409 and "changed" in answer.text
        assert await r.approvals() == []


async def test_link_maker_for_the_sender(make_rig, make_settings):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("lk")
        app = r.server.app
        maker = make_link_maker(app.state.settings, app.state.session_factory,
                                app.state.engine.runbooks)
        [row] = await r.rows(Notification, Notification.kind == "approval_request")
        first, second = await maker(row), await maker(row)
        assert first == second and first.startswith(f"{app.state.settings.public_url}/approve/")
        [link] = await r.rows(ApprovalLink)
        assert link.intended == "role:approver" and link.execution_id == ex.id
        page = await r.http.get(path_of(first))
        assert page.status_code == 200
        stale = Notification(**{c: getattr(row, c) for c in ("id", "execution_id",
                                                             "step_run_id", "kind")},
                             payload={**row.payload, "step_hash": "0" * 64})
        assert await maker(stale) is None
    prod = make_settings(env="prod", link_secret=None)
    with pytest.raises(SigningKeyMissing):
        derived_key(prod, "approval-link")
    no_key = make_link_maker(prod, app.state.session_factory, app.state.engine.runbooks)
    assert await no_key(row) is None
