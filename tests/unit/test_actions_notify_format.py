"""Slack and PagerDuty payloads as the real services check them, and the retry helper."""

from __future__ import annotations

import time

import pytest

from app.notify.errors import DeliveryError, retry_after_seconds
from app.notify.pagerduty import build_event
from app.notify.retry import deliver_with_retries
from app.notify.slack_messages import build_message, escape, parse_button_value
from tests.support.fake_receivers import pagerduty_event_errors, slack_block_errors

KEY = "R" * 32


def test_approval_request_has_approve_reject_and_a_link() -> None:
    message = build_message("approval_request", title="Roll back fraud-v3", execution_id=42,
                            runbook="model-drift", step_id="rollback",
                            step_title="Roll back the champion", target={"model": "fraud-v3"},
                            approve_url="https://runbookd.example/approvals/abc",
                            execution_url="https://runbookd.example/executions/42",
                            plan="champion of fraud-v3: version 3 → version 2",
                            plan_hash="ab" * 32)
    assert slack_block_errors(message) == []
    # The plan is the first thing the approver reads.
    assert "*Plan:* champion of fraud-v3: version 3 → version 2" in (
        message["blocks"][0]["text"]["text"].split("\n")[2])
    assert [b["type"] for b in message["blocks"]] == ["section", "context", "actions"]
    buttons = message["blocks"][-1]["elements"]
    assert [b["action_id"] for b in buttons] == ["approve", "reject", "open_approval",
                                                 "open_execution"]
    assert parse_button_value(buttons[0]["value"]) == (42, "rollback", "ab" * 32)
    assert buttons[2]["url"] == "https://runbookd.example/approvals/abc"
    assert message["text"] == "Approval needed: Roll back fraud-v3 (step rollback)"


@pytest.mark.parametrize("kind", ["started", "succeeded", "failed", "needs_attention",
                                  "escalation", "resolved", "info"])
def test_every_kind_is_valid_block_kit(kind: str) -> None:
    message = build_message(kind, title="t", execution_id=1,  # type: ignore[arg-type]
                            details="x" * 5000)
    assert slack_block_errors(message) == []
    assert not any(b["type"] == "actions" for b in message["blocks"])


def test_alert_text_cannot_ping_or_forge_links() -> None:
    message = build_message("info", title="<!channel> & <https://evil|click>", details="<@U1>")
    text = message["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text and "<https://evil" not in text and "<@U1>" not in text
    assert escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_approval_request_needs_ids() -> None:
    with pytest.raises(ValueError, match="execution id, the step id and the hash of its plan"):
        build_message("approval_request", title="t")
    with pytest.raises(ValueError, match="hash of its plan"):
        build_message("approval_request", title="t", execution_id=1, step_id="s")
    for value in ("rollback", "42:rollback", "42:rollback:" + "g" * 64,
                  "9" * 40 + ":s:" + "a" * 64):
        with pytest.raises(ValueError):
            parse_button_value(value)


def test_the_fake_slack_rejects_what_slack_rejects() -> None:
    assert slack_block_errors({"blocks": [{"type": "bogus"}]}) == [
        "missing text fallback", "blocks[0]: unknown block type"]
    button = {"type": "button", "text": {"type": "mrkdwn", "text": "x"}, "action_id": "a"}
    assert slack_block_errors({"text": "t", "blocks": [{"type": "actions",
                                                        "elements": [button]}]})
    assert slack_block_errors({"text": "t", "blocks": [{"type": "divider"}] * 51})


def test_pagerduty_trigger_and_resolve_events() -> None:
    trigger = build_event("trigger", routing_key=KEY, dedup_key="runbookd-9",
                          summary="s" * 2000, source="runbookd", severity="critical",
                          custom_details={"model": "fraud-v3"},
                          links=[{"href": "https://x/executions/9"}])
    assert pagerduty_event_errors(trigger) == []
    assert len(trigger["payload"]["summary"]) == 1024
    assert trigger["links"] == [{"href": "https://x/executions/9",
                                 "text": "https://x/executions/9"}]
    resolve = build_event("resolve", routing_key=KEY, dedup_key="runbookd-9")
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": "runbookd-9"}
    assert pagerduty_event_errors(resolve) == []
    with pytest.raises(ValueError, match="needs a summary, a source and a severity"):
        build_event("trigger", routing_key=KEY, dedup_key="k", summary="s", source="x",
                    severity="fatal")  # type: ignore[arg-type]
    assert pagerduty_event_errors({**resolve, "routing_key": "short"}) == [
        "'routing_key' must be 32 characters"]


async def test_retries_only_what_is_retryable() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DeliveryError("busy", retryable=True, status=503)
        return "done"

    assert await deliver_with_retries(flaky, attempts=3, initial=0.01, maximum=0.05) == "done"
    assert len(calls) == 3

    calls.clear()

    async def broken() -> None:
        calls.append(1)
        raise DeliveryError("bad request", retryable=False, status=400)

    with pytest.raises(DeliveryError, match="bad request"):
        await deliver_with_retries(broken, attempts=5, initial=0.01)
    assert len(calls) == 1


async def test_retry_after_is_respected_but_capped() -> None:
    calls: list[float] = []

    async def throttled() -> None:
        calls.append(time.monotonic())
        raise DeliveryError("slow down", retryable=True, status=429, retry_after=0.3)

    with pytest.raises(DeliveryError):
        await deliver_with_retries(throttled, attempts=2, initial=0.01, maximum=0.5)
    assert calls[1] - calls[0] >= 0.3
    assert retry_after_seconds("120") == 60.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") is None
