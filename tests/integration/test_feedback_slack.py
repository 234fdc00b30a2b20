"""Responder feedback through Slack (issue 16): an ended execution's message asks those who
took part whether the runbook helped (three buttons); a signed click records the verdict for
the Slack user's runbookd identity with the API's rules; an unlinked user is told how to link."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.engine.feedback_models import Feedback
from app.notify.slack_messages import FEEDBACK_ACTIONS
from tests.support.engine_catalog import risky, runbook, step
from tests.support.fake_receivers import slack_block_errors
from tests.support.fake_slack import (
    SIGNING_SECRET,
    block_actions,
    form_body,
    run_fake_slack,
    signed_headers,
)
from tests.support.wait import eventually

USERS = {"UALICE": "alice", "UBOB": "bob"}
SLACK_PATH = "/services/T000/B000/XXXXSECRETXXXX"
BOOK = runbook("fbslack", [step("check"), risky("rollback")],
               escalation=[{"after": "10m", "notify": ["slack:ml-oncall"]}])


@pytest.fixture
async def fake_slack():
    async with run_fake_slack() as fake:
        yield fake


@pytest.fixture
def rig_settings(slack):
    """Slack messages go to the fake incoming webhook; clicks come back signed."""
    return {"slack_signing_secret": SIGNING_SECRET, "slack_users": USERS,
            "slack_webhook_url": SecretStr(slack.url + SLACK_PATH),
            "http_allowlist": ["127.0.0.1"]}


def feedback_click(fake, *, user: str, value: str, action: str, key: str) -> bytes:
    """A block_actions payload for a click on one of the feedback buttons."""
    payload = block_actions(user=user, execution_id=int(value) if value.isdigit() else 1,
                            step_id="rollback", response_url=fake.response_url(key))
    payload["actions"] = [{"type": "button", "action_id": action, "value": value,
                           "block_id": f"runbookd-feedback-{value}", "action_ts": "1.0",
                           "text": {"type": "plain_text", "text": action}}]
    return form_body(payload)


async def test_the_end_message_asks_and_a_signed_click_records_the_verdict(
        make_rig, fake_slack, slack):
    async with make_rig([BOOK]) as r:
        ex = await r.awaiting("fbslack")
        assert (await r.approve(ex.id, "rollback", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")

        async def asked():
            return [m.json() for m in slack.accepted
                    if any(b.get("block_id") == f"runbookd-feedback-{ex.id}"
                           for b in m.json().get("blocks", []))] or None

        [message] = await eventually(asked, timeout=15, interval=0.05, what="the feedback ask")
        buttons = next(b for b in message["blocks"]
                       if b.get("block_id") == f"runbookd-feedback-{ex.id}")["elements"]

        clicks = [("UALICE", "feedback_partly", "1"), ("UALICE", "feedback_helped", "2"),
                  ("UBOB", "feedback_did_not_help", "3"), ("UNOBODY", "feedback_helped", "4")]
        for user, action, key in clicks:
            body = feedback_click(fake_slack, user=user, value=str(ex.id), action=action,
                                  key=key)
            answer = await r.http.post("/slack/interactions", content=body,
                                       headers=signed_headers(body))
            assert answer.status_code == 200, answer.text
        forged_body = feedback_click(fake_slack, user="UBOB", value=str(ex.id),
                                     action="feedback_helped", key="5")
        forged = await r.http.post("/slack/interactions", content=forged_body,
                                   headers=signed_headers(forged_body, secret="not-slack's"))
        updates = {u["key"]: u for u in await fake_slack.wait_updates(4)}
        rows = await r.rows(Feedback)
        unlinked = [e for e in await r.events() if e.kind == "slack.unknown_user"]

    assert slack_block_errors(message) == []
    assert "Did this runbook help?" in str(message)
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (action, str(ex.id)) for action in FEEDBACK_ACTIONS]
    assert forged.status_code == 401
    # Alice approved: her second click replaced her first; the others were refused.
    [row] = rows
    assert (row.identity, row.verdict, row.channel) == ("alice", "helped", "slack")
    assert all(u["response_type"] == "ephemeral" and u["replace_original"] is False
               for u in updates.values())
    assert "Thanks, alice" in updates["2"]["text"] and "helped" in updates["2"]["text"]
    assert "only the people who took part" in updates["3"]["text"]
    assert "not linked" in updates["4"]["text"] and "RUNBOOKD_SLACK_USERS" in updates["4"]["text"]
    assert [e.data["slack_user"] for e in unlinked] == ["UNOBODY"]
    assert "5" not in updates


async def test_an_automatic_success_asks_nobody(make_rig, slack):
    async with make_rig([runbook("quiet", [step("check")],
                                 escalation=[{"after": "10m", "notify": ["slack:ml-oncall"]}])
                         ]) as r:
        await r.fire("quiet")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        notifications = await r.notifications()
    assert [n for n in notifications if n.execution_id == ex.id] == []


async def test_a_rejection_in_slack_asks_in_the_updated_message(make_rig, fake_slack):
    async with make_rig([BOOK]) as r:
        ex = await r.awaiting("fbslack")
        step_hash = next(s.step_hash for s in await r.steps(ex.id) if s.step_id == "rollback")
        payload = block_actions(user="UALICE", execution_id=ex.id, step_id="rollback",
                                action="reject", response_url=fake_slack.response_url("r"),
                                plan_hash=step_hash)
        body = form_body(payload)
        assert (await r.http.post("/slack/interactions", content=body,
                                  headers=signed_headers(body))).status_code == 200
        [update] = await fake_slack.wait_updates(1)
        await r.wait_status(ex.id, "rejected")
        click = feedback_click(fake_slack, user="UALICE", value=str(ex.id),
                               action="feedback_did_not_help", key="f")
        assert (await r.http.post("/slack/interactions", content=click,
                                  headers=signed_headers(click))).status_code == 200
        await fake_slack.wait_updates(2)
        [row] = await r.rows(Feedback)
    assert update["replace_original"] is True
    asks = [b for b in update["blocks"] if b.get("block_id") == f"runbookd-feedback-{ex.id}"]
    assert [e["action_id"] for e in asks[0]["elements"]] == list(FEEDBACK_ACTIONS)
    assert not any(e.get("action_id") in ("approve", "reject") for b in update["blocks"]
                   for e in b.get("elements", []))
    assert (row.identity, row.verdict, row.channel) == ("alice", "did_not_help", "slack")
