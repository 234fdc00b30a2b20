"""notify.slack, notify.webhook and pagerduty.* against receivers that check what the real
services check, with retries on 429/5xx and none on 400."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import SecretStr

from app.actions.base import ActionContext, ActionFailed
from app.actions.notify import NotifySlack, NotifyWebhook, PagerdutyResolve, PagerdutyTrigger
from app.notify.errors import DeliveryError
from app.notify.slack_messages import build_message, parse_button_value, post_incoming_webhook
from tests.support.action_ctx import make_ctx, run_action
from tests.support.fake_receivers import Receiver

ROUTING_KEY = "0123456789abcdef0123456789abcdef"
SLACK_PATH = "/services/T000/B000/XXXXSECRETXXXX"


def ctx(**kwargs: Any) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], execution_id=42, step_id="page",
                    public_url="https://runbookd.example", **kwargs)


def slack_ctx(slack: Receiver, **kwargs: Any) -> ActionContext:
    return ctx(slack_webhook_url=SecretStr(slack.url + SLACK_PATH), **kwargs)


def pd_ctx(pagerduty: Receiver, **kwargs: Any) -> ActionContext:
    settings: dict[str, Any] = {"pagerduty_events_url": f"{pagerduty.url}/v2/enqueue",
                                "pagerduty_routing_key": SecretStr(ROUTING_KEY)}
    settings.update(kwargs)
    return ctx(**settings)


async def test_slack_message_is_valid_block_kit(slack: Receiver) -> None:
    result = await run_action(NotifySlack(), slack_ctx(slack), text="Rolled back <fraud-v3>",
                              kind="succeeded")
    port = slack.url.rsplit(":", 1)[1]
    assert result.summary == ("posted a message (succeeded) to the Slack webhook at "
                              f"127.0.0.1:{port}")
    [request] = slack.requests
    assert request.status == 200
    body = request.json()
    assert "&lt;fraud-v3&gt;" in body["blocks"][0]["text"]["text"]
    assert body["blocks"][-1]["elements"][0]["url"] == "https://runbookd.example/executions/42"


async def test_approval_request_reaches_slack_with_buttons(slack: Receiver) -> None:
    payload = build_message("approval_request", title="Roll back fraud-v3", execution_id=42,
                            step_id="rollback", approve_url="https://runbookd.example/a/x",
                            plan="champion of fraud-v3: version 3 → version 2",
                            plan_hash="cd" * 32)
    await post_incoming_webhook(make_ctx(allow=["127.0.0.1"]).http, slack.url + SLACK_PATH,
                                payload)
    [request] = slack.requests
    buttons = request.json()["blocks"][-1]["elements"]
    assert parse_button_value(buttons[1]["value"]) == (42, "rollback", "cd" * 32)


async def test_slack_retries_429_and_500_then_delivers(slack: Receiver) -> None:
    slack.fail(429, 500)
    await run_action(NotifySlack(), slack_ctx(slack), text="hello", attempts=3)
    assert [r.status for r in slack.requests] == [429, 500, 200]


async def test_slack_400_is_not_retried_and_the_url_stays_secret(slack: Receiver) -> None:
    bad = {"text": "x", "blocks": [{"type": "nonsense"}]}
    with pytest.raises(DeliveryError) as failed:
        await post_incoming_webhook(make_ctx(allow=["127.0.0.1"]).http,
                                    slack.url + SLACK_PATH, bad)
    assert not failed.value.retryable
    assert "answered 400: invalid_blocks" in failed.value.message
    assert "XXXXSECRETXXXX" not in failed.value.message


async def test_slack_gives_up_after_its_attempts(slack: Receiver) -> None:
    slack.fail(503, 503)
    with pytest.raises(ActionFailed, match=r"Slack: 127\.0\.0\.1:\d+ answered 503.*after 2"):
        await run_action(NotifySlack(), slack_ctx(slack), text="hello", attempts=2)
    assert len(slack.requests) == 2


async def test_slack_webhook_from_a_named_secret(slack: Receiver) -> None:
    context = ctx(secrets={"ml_channel": SecretStr(slack.url + "/services/T1/B1/other")})
    await run_action(NotifySlack(), context, text="hi", webhook_secret="ml_channel")
    assert slack.requests[0].path == "T1/B1/other"


async def test_slack_without_configuration_fails_clearly() -> None:
    with pytest.raises(ActionFailed, match="set RUNBOOKD_SLACK_WEBHOOK_URL or name a secret"):
        await run_action(NotifySlack(), ctx(), text="hi")


async def test_slack_dry_run_posts_nothing(slack: Receiver) -> None:
    result = await run_action(NotifySlack(), slack_ctx(slack, dry_run=True), text="hello")
    assert result.summary.startswith("would post a message (info) to the Slack webhook at ")
    assert "hello" in result.summary
    assert slack.requests == []


async def test_slack_delivery_can_be_cancelled(slack: Receiver) -> None:
    slack.delay = 30
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(NotifySlack(), slack_ctx(slack), text="x"), 0.3)
    slack.delay = 0


async def test_pagerduty_trigger_then_resolve_share_a_dedup_key(pagerduty: Receiver) -> None:
    context = pd_ctx(pagerduty)
    triggered = await run_action(PagerdutyTrigger(), context, summary="fraud-v3 drift",
                                 severity="critical", custom_details={"model": "fraud-v3"},
                                 links=[{"href": "https://grafana.example/d/1", "text": "dash"}])
    assert triggered.output == {"dedup_key": "runbookd-42", "event_action": "trigger"}
    resolved = await run_action(PagerdutyResolve(), context)
    assert resolved.summary == "resolved PagerDuty incident runbookd-42"
    trigger, resolve = (r.json() for r in pagerduty.requests)
    assert [r.status for r in pagerduty.requests] == [202, 202]
    assert trigger["payload"]["severity"] == "critical"
    assert {"href": "https://runbookd.example/executions/42",
            "text": "runbookd execution"} in trigger["links"]
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": "runbookd-42"}


async def test_pagerduty_retries_429_and_5xx(pagerduty: Receiver) -> None:
    pagerduty.fail(429, 502)
    await run_action(PagerdutyTrigger(), pd_ctx(pagerduty), summary="s")
    assert [r.status for r in pagerduty.requests] == [429, 502, 202]


async def test_pagerduty_400_is_not_retried_and_hides_the_key(pagerduty: Receiver) -> None:
    context = pd_ctx(pagerduty, secrets={"pd_short": SecretStr("too-short-key-1")})
    with pytest.raises(ActionFailed) as failed:
        await run_action(PagerdutyTrigger(), context, summary="s",
                         routing_key_secret="pd_short", attempts=5)
    assert len(pagerduty.requests) == 1
    assert "answered 400: Event object is invalid; 'routing_key' must be 32" \
        in failed.value.message
    assert "too-short-key-1" not in failed.value.message


async def test_pagerduty_routing_key_from_a_named_secret(pagerduty: Receiver) -> None:
    other = "f" * 32
    context = pd_ctx(pagerduty, secrets={"pd_ml_platform": SecretStr(other)})
    await run_action(PagerdutyTrigger(), context, summary="s", severity="warning",
                     routing_key_secret="pd_ml_platform")
    assert pagerduty.requests[0].json()["routing_key"] == other


async def test_pagerduty_dry_run_and_cancellation(pagerduty: Receiver) -> None:
    result = await run_action(PagerdutyTrigger(), pd_ctx(pagerduty, dry_run=True),
                              summary="fraud-v3 drift", severity="critical")
    assert result.summary.startswith(
        "would trigger PagerDuty incident runbookd-42: critical 'fraud-v3 drift' (via 127.0.0.1")
    assert pagerduty.requests == []
    pagerduty.delay = 30
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(PagerdutyResolve(), pd_ctx(pagerduty)), 0.3)
    pagerduty.delay = 0


async def test_webhook_sends_a_stable_idempotency_key(webhook: Receiver) -> None:
    context = ctx(notify_webhook_url=f"{webhook.url}/hooks/runbookd")
    webhook.fail(500)
    first = await run_action(NotifyWebhook(), context, payload={"event": "rolled_back"})
    await run_action(NotifyWebhook(), context, payload={"event": "rolled_back"})
    keys = [r.headers["idempotency-key"] for r in webhook.requests]
    assert keys == ["runbookd-42-page"] * 3
    assert [r.status for r in webhook.requests] == [500, 200, 200]
    assert json.loads(webhook.requests[-1].body) == {"event": "rolled_back"}
    assert first.output == {"status": 200, "idempotency_key": "runbookd-42-page"}


async def test_webhook_delivery_can_be_cancelled(webhook: Receiver) -> None:
    webhook.delay = 30
    context = ctx(notify_webhook_url=f"{webhook.url}/hooks/runbookd")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(NotifyWebhook(), context, payload={"a": 1}), 0.3)
    webhook.delay = 0


async def test_webhook_4xx_is_final(webhook: Receiver) -> None:
    context = ctx(notify_webhook_url=f"{webhook.url}/hooks/runbookd")
    webhook.fail(404)
    with pytest.raises(ActionFailed, match=r"webhook: 127\.0\.0\.1:\d+ answered 404"):
        await run_action(NotifyWebhook(), context, payload={"a": 1}, attempts=4)
    assert len(webhook.requests) == 1


async def test_webhook_dry_run_and_allow_list(webhook: Receiver) -> None:
    result = await run_action(NotifyWebhook(),
                              ctx(notify_webhook_url=f"{webhook.url}/h", dry_run=True),
                              payload={"a": 1})
    assert "with Idempotency-Key runbookd-42-page" in result.summary
    refused = make_ctx(allow=["hooks.example"], execution_id=1, step_id="s",
                       notify_webhook_url=f"{webhook.url}/h")
    with pytest.raises(ActionFailed, match=r"host '127\.0\.0\.1' is not on the HTTP allow-list"):
        await run_action(NotifyWebhook(), refused, payload={"a": 1})
    assert webhook.requests == []
