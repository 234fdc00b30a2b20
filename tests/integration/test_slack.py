"""Slack interactivity over real HTTP: signed block_actions approve or reject with exactly the
API's rules, the message is updated through response_url (a fake Slack on 127.0.0.1), and
forged, stale, replayed or malformed requests are refused with a 401 and an audit event."""

from __future__ import annotations

import time

import pytest

from app.engine.slack_buttons import SlackRejected, verify_signature
from tests.support.engine_catalog import risky, runbook, step
from tests.support.fake_slack import (
    SIGNING_SECRET,
    block_actions,
    form_body,
    run_fake_slack,
    sign,
    signed_headers,
)

USERS = {"UALICE": "alice", "UBOB": "bob", "UVICTOR": "victor", "UROOT": "root",
         "UGHOST": "ghost"}


@pytest.fixture
async def fake_slack():
    async with run_fake_slack() as fake:
        yield fake


@pytest.fixture
def rig_settings():
    """Every runbookd here verifies Slack's signature and may call the fake Slack back."""
    return {"slack_signing_secret": SIGNING_SECRET, "slack_users": USERS,
            "http_allowlist": ["127.0.0.1"]}


def book(rid="sl", count=1):
    return runbook(rid, [step("check"), risky("rollback", count=count)],
                   limits={"concurrent": 5})


async def plan_hash(r, ex_id, step_id="rollback"):
    """The hash of the plan the step's approval request showed (its Slack buttons carry it)."""
    return next(s.step_hash for s in await r.steps(ex_id) if s.step_id == step_id)


async def click(r, fake, *, user, ex_id, action="approve", key="1", headers=None,
                seen_hash=None):
    payload = block_actions(user=user, execution_id=ex_id, step_id="rollback", action=action,
                            response_url=fake.response_url(key),
                            plan_hash=seen_hash or await plan_hash(r, ex_id))
    body = form_body(payload)
    return await r.http.post("/slack/interactions", content=body,
                             headers=headers or signed_headers(body))


async def test_approve_from_slack_updates_the_message(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        answer = await click(r, fake_slack, user="UALICE", ex_id=ex.id)
        assert answer.status_code == 200
        await r.wait_status(ex.id, "succeeded")
        [update] = await fake_slack.wait_updates(1)
        [approval] = await r.approvals()
    assert (approval.identity, approval.channel) == ("alice", "slack")
    assert "UALICE" in approval.comment
    assert update["replace_original"] is True
    status = update["blocks"][-1]
    assert status["block_id"] == "runbookd-status"
    assert "Approved by *alice* (1 of 1)" in status["elements"][0]["text"]
    action_ids = [e["action_id"] for b in update["blocks"] if b["type"] == "actions"
                  for e in b["elements"]]
    assert action_ids == ["open_execution"]  # the decision buttons are gone


async def test_quorum_keeps_the_buttons_until_the_last_approval(make_rig, fake_slack):
    async with make_rig([book(count=2)]) as r:
        ex = await r.awaiting("sl")
        assert (await click(r, fake_slack, user="UALICE", ex_id=ex.id)).status_code == 200
        [first] = await fake_slack.wait_updates(1)
        assert "waiting for more approvals" in first["blocks"][-1]["elements"][0]["text"]
        assert any(e["action_id"] == "approve" for b in first["blocks"]
                   if b["type"] == "actions" for e in b["elements"])
        again = await click(r, fake_slack, user="UALICE", ex_id=ex.id)
        assert again.status_code == 200
        updates = await fake_slack.wait_updates(2)
        assert updates[1]["replace_original"] is False
        assert "already approved" in updates[1]["text"]
        [run] = [s for s in await r.steps(ex.id) if s.step_id == "rollback"]
        assert run.status == "awaiting_approval"
        await click(r, fake_slack, user="UBOB", ex_id=ex.id)
        await r.wait_status(ex.id, "succeeded")
        updates = await fake_slack.wait_updates(3)
        approvals = await r.approvals()
    assert "(2 of 2)" in updates[2]["blocks"][-1]["elements"][0]["text"]
    assert sorted(a.identity for a in approvals) == ["alice", "bob"]


async def test_viewer_and_requester_are_refused_as_by_the_api(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "sl", "params": {"model": "m1"}})
        ex_id = started.json()["id"]
        await r.wait_status(ex_id, "awaiting_approval")
        assert (await click(r, fake_slack, user="UVICTOR", ex_id=ex_id)).status_code == 200
        assert (await click(r, fake_slack, user="UROOT", ex_id=ex_id, key="2")).status_code \
            == 200
        viewer, requester = await fake_slack.wait_updates(2)
        refused = [e for e in await r.events() if e.kind == "slack.refused"]
        [run] = [s for s in await r.steps(ex_id) if s.step_id == "rollback"]
    assert await r.approvals() == []
    assert run.status == "awaiting_approval"
    assert viewer["response_type"] == "ephemeral" and viewer["replace_original"] is False
    assert "victor" in viewer["text"] and "may not decide" in viewer["text"]
    assert "separation of duties" in requester["text"]
    assert sorted(e.actor for e in refused) == ["root", "victor"]


async def test_reject_from_slack(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        await click(r, fake_slack, user="UBOB", ex_id=ex.id, action="reject")
        await r.wait_status(ex.id, "rejected")
        [update] = await fake_slack.wait_updates(1)
        late = await click(r, fake_slack, user="UALICE", ex_id=ex.id, key="2")
        assert late.status_code == 200
        updates = await fake_slack.wait_updates(2)
    assert "Rejected by *bob*" in update["blocks"][-1]["elements"][0]["text"]
    assert "not awaiting approval" in updates[1]["text"]


async def test_unknown_slack_user_is_told_and_audited(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        for user, key in (("UNOBODY", "1"), ("UGHOST", "2")):
            assert (await click(r, fake_slack, user=user, ex_id=ex.id, key=key)).status_code \
                == 200
        updates = await fake_slack.wait_updates(2)
        events = [e for e in await r.events() if e.kind == "slack.unknown_user"]
    assert await r.approvals() == []
    assert all("403" in u["text"] and "not mapped" in u["text"] for u in updates)
    assert [e.data["slack_user"] for e in events] == ["UNOBODY", "UGHOST"]


async def test_forged_stale_malformed_and_replayed_requests_get_401(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        body = form_body(block_actions(user="UALICE", execution_id=ex.id, step_id="rollback",
                                       response_url=fake_slack.response_url(),
                                       plan_hash=await plan_hash(r, ex.id)))
        now = str(int(time.time()))
        stale = str(int(time.time()) - 301)
        cases = {
            "wrong secret": signed_headers(body, secret="another-secret-0123456789"),
            "stale": signed_headers(body, timestamp=stale),
            "future": signed_headers(body, timestamp=str(int(time.time()) + 400)),
            "not a number": {"X-Slack-Request-Timestamp": "soon",
                             "X-Slack-Signature": sign(body, "soon")},
            "float": {"X-Slack-Request-Timestamp": f"{time.time()}",
                      "X-Slack-Signature": sign(body, f"{time.time()}")},
            "no headers": {},
            "no signature": {"X-Slack-Request-Timestamp": now},
            "garbage signature": {"X-Slack-Request-Timestamp": now,
                                  "X-Slack-Signature": "v0=zz\u00e9".encode("latin-1")},
        }
        for name, headers in cases.items():
            answer = await r.http.post("/slack/interactions", content=body, headers={
                "Content-Type": "application/x-www-form-urlencoded", **headers})
            assert answer.status_code == 401, (name, answer.text)
            assert answer.json()["error"]["code"] == "unauthenticated"
        tampered = body.replace(b"approve", b"reject", 1)
        answer = await r.http.post("/slack/interactions", content=tampered,
                                   headers=signed_headers(body))
        assert answer.status_code == 401
        good = signed_headers(body)
        first = await r.http.post("/slack/interactions", content=body, headers=good)
        replay = await r.http.post("/slack/interactions", content=body, headers=good)
        assert (first.status_code, replay.status_code) == (200, 401)
        await r.wait_status(ex.id, "succeeded")
        rejected = [e for e in await r.events() if e.kind == "slack.rejected"]
        approvals = await r.approvals()
    assert len(approvals) == 1
    assert len(rejected) == len(cases) + 2
    reasons = " ".join(e.reason for e in rejected)
    assert "stale or replayed" in reasons and "malformed timestamp" in reasons
    assert "replayed request" in reasons and "bad signature" in reasons
    assert SIGNING_SECRET not in reasons


async def test_signed_but_odd_payloads(make_rig, fake_slack):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        for body, status in ((b"payload=not-json", 400), (b"nothing=here", 400),
                             (form_body({"type": "view_submission"}), 200),
                             (form_body(block_actions(user="UALICE", execution_id=ex.id,
                                                      step_id="rollback",
                                                      action="open_approval")), 200)):
            answer = await r.http.post("/slack/interactions", content=body,
                                       headers=signed_headers(body))
            assert answer.status_code == status, body
        huge = b"payload=" + b"x" * 70_000
        assert (await r.http.post("/slack/interactions", content=huge,
                                  headers=signed_headers(huge))).status_code == 413
        assert await r.approvals() == []


async def test_without_a_signing_secret_the_endpoint_is_off(make_rig, fake_slack):
    async with make_rig([book()], slack_signing_secret=None) as r:
        body = form_body({"type": "block_actions"})
        answer = await r.http.post("/slack/interactions", content=body,
                                   headers=signed_headers(body))
        assert answer.status_code == 404


@pytest.mark.parametrize(("timestamp", "signature", "why"), [
    (None, "v0=aa", "missing"), ("123", None, "missing"), ("12a", "v0=aa", "malformed"),
    ("-5", "v0=aa", "malformed"), ("1" * 40, "v0=aa", "malformed"),
    ("1000", "v0=aa", "window"), ("NOW", "v0=aa", "bad signature"),
])
def test_verify_signature_table(timestamp, signature, why):
    now = 1_800_000_000.0
    timestamp = str(int(now)) if timestamp == "NOW" else timestamp
    with pytest.raises(SlackRejected, match=why):
        verify_signature("secret-0123456789", b"payload=%7B%7D", timestamp, signature, now=now)
    good = str(int(now) - 299)
    verify_signature("secret-0123456789", b"x", good, sign(b"x", good, "secret-0123456789"),
                     now=now)


async def test_an_outdated_click_is_told_the_new_plan_and_approves_nothing(make_rig,
                                                                           fake_slack):
    """Hole 4: a button carries the hash of the plan its message showed; a click on an old
    message gets an ephemeral "this request changed" with the plan as it is now."""
    async with make_rig([book()]) as r:
        ex = await r.awaiting("sl")
        answer = await click(r, fake_slack, user="UALICE", ex_id=ex.id, seen_hash="ab" * 32)
        assert answer.status_code == 200
        [update] = await fake_slack.wait_updates(1)
        assert await r.approvals() == []
        refused = [e for e in await r.events() if e.kind == "slack.refused"]
        [step] = [s for s in await r.steps(ex.id) if s.step_id == "rollback"]
    assert update["response_type"] == "ephemeral" and update["replace_original"] is False
    assert "changed since this message was sent" in update["text"]
    assert step.plan["summary"] in update["text"]
    assert step.status == "awaiting_approval"
    assert refused[0].data["clicked_hash"] == "ab" * 32
