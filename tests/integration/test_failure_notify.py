"""Issue 14, defect 6: failures paged nobody.

"failed", "needs attention" and "rate limited" went to the first escalation tier only (Slack),
so a failed automatic rollback of a critical model paged nobody. A runbook's
`on_failure_notify` names who hears about a failure, beside the first tier."""

from __future__ import annotations

import asyncio
import logging

from tests.support.engine_catalog import runbook, step

TIERS = {"escalation": [{"after": "10m", "notify": ["slack:ml-oncall"]}],
         "on_failure_notify": ["pagerduty:ml-platform"]}


async def test_a_failed_execution_pages_who_the_runbook_names(make_rig) -> None:
    book = runbook("critical", [step("rollback", "fail")], **TIERS)
    async with make_rig([book]) as r:
        await r.fire("critical")
        await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        sent = {(n.kind, n.channel) for n in await r.notifications()}
    assert ("failed", "slack:ml-oncall") in sent
    assert ("failed", "pagerduty:ml-platform") in sent


async def test_a_rate_limited_execution_pages_too(make_rig) -> None:
    book = runbook("limited", [step("check")], limits={"rate": [{"count": 1, "per": "1h"}]},
                   **TIERS)
    async with make_rig([book]) as r:
        await r.fire("limited")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        await r.fire("limited", fingerprint="0000000000000003")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "rate_limited")
        sent = {(n.kind, n.channel) for n in await r.notifications()}
    assert ("rate_limited", "pagerduty:ml-platform") in sent


async def test_without_it_failures_go_to_the_first_tier(make_rig) -> None:
    book = runbook("quiet", [step("rollback", "fail")],
                   escalation=[{"after": "10m", "notify": ["slack:ml-oncall"]}])
    async with make_rig([book]) as r:
        await r.fire("quiet")
        await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        sent = {(n.kind, n.channel) for n in await r.notifications()}
    assert {c for k, c in sent if k == "failed"} == {"slack:ml-oncall"}


async def test_an_unconfigured_slack_is_said_once_not_warned_per_message(make_rig,
                                                                         caplog) -> None:
    """Issue 15: start-up says "Slack is not configured"; each message then goes to the log
    at INFO instead of a warning per execution."""
    book = runbook("quiet", [step("rollback", "fail")],
                   escalation=[{"after": "10m", "notify": ["slack:ml-oncall"]}])
    with caplog.at_level(logging.INFO, logger="app.notify.sender"):
        async with make_rig([book]) as r:
            await r.fire("quiet")
            await r.wait_for(lambda rows: rows and rows[0].status == "failed")
            for _ in range(150):
                if any(n.status == "failed" for n in await r.notifications()):
                    break
                await asyncio.sleep(0.1)
    lines = [rec for rec in caplog.records if rec.name == "app.notify.sender"]
    assert lines and all(rec.levelno == logging.INFO for rec in lines), [
        (rec.levelname, rec.getMessage()) for rec in lines]
    assert "not sent to slack:ml-oncall, which is not configured" in lines[0].getMessage()
