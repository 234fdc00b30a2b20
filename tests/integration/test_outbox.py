"""The notification outbox: written with the change, delivered with retries, at least once.

A notification sent just before a crash (delivered, but `sent` never committed) is delivered
again after the claim lease runs out, with the same Idempotency-Key / dedup_key, so the
receiver can tell it is the same message.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from app.db import make_engine
from app.notify.models import Notification
from tests.support.engine_catalog import risky, runbook
from tests.support.wait import eventually

ESCALATION = [{"after": "1h", "notify": ["webhook:ops", "pagerduty:ml"]}]


async def test_outbox_delivers_retries_and_redelivers_after_a_crash(
        make_rig, db_url, webhook, pagerduty):
    book = runbook("ob", [risky("change")], escalation=ESCALATION)
    webhook.fail(500, 503)  # two transient failures before it accepts
    async with make_rig([book], notify_webhook_url=f"{webhook.url}/hooks/ops",
                        pagerduty_events_url=f"{pagerduty.url}/v2/enqueue",
                        pagerduty_routing_key="R" * 32, http_allowlist=["127.0.0.1"]) as r:
        await r.fire("ob")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")

        async def all_sent():
            rows = await r.notifications()
            return rows if rows and all(n.status == "sent" for n in rows) else None

        rows = await eventually(all_sent, timeout=15, interval=0.05, what="all sent")
        assert {n.channel for n in rows} == {"webhook:ops", "pagerduty:ml"}
        hook_row = next(n for n in rows if n.channel == "webhook:ops")
        first_key = webhook.accepted[0].headers["idempotency-key"]
        assert first_key == hook_row.dedup_key
        assert [x.status for x in webhook.requests] == [500, 503, 200]
        assert pagerduty.accepted[0].json()["dedup_key"] == f"runbookd-{ex.id}"

        # The crash window: delivered, but the process died before `sent` committed.
        engine = make_engine(db_url)
        async with engine.begin() as conn:
            await conn.execute(update(Notification).values(
                status="pending", sent_at=None,
                next_attempt_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        await engine.dispose()
        await eventually(all_sent, timeout=15, interval=0.05, what="all sent again")

    keys = [x.headers["idempotency-key"] for x in webhook.accepted]
    assert keys == [first_key, first_key]
    assert webhook.accepted[1].json() == webhook.accepted[0].json()
    assert [e.json()["dedup_key"] for e in pagerduty.accepted] == [f"runbookd-{ex.id}"] * 2


async def test_a_permanent_failure_is_marked_failed_and_counted(
        make_rig, webhook):
    book = runbook("ob2", [risky("change")], escalation=[{"after": "1h",
                                                          "notify": ["webhook:ops"]}])
    webhook.fail(400)
    async with make_rig([book], notify_webhook_url=f"{webhook.url}/hooks/ops",
                        http_allowlist=["127.0.0.1"]) as r:
        await r.fire("ob2")

        async def failed():
            rows = await r.notifications()
            return rows if rows and rows[0].status == "failed" else None

        [row] = await eventually(failed, timeout=15, interval=0.05, what="a failed row")
        metrics = (await r.http.get("/metrics")).text
    assert "400" in row.last_error and row.attempts == 1
    # The host is named; the path, which may embed a token, is not.
    assert "/hooks/ops" not in row.last_error
    failed_total = next(line for line in metrics.splitlines()
                        if line.startswith("runbookd_notifications_failed_total "))
    assert float(failed_total.split()[1]) >= 1
