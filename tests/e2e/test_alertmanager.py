"""A real Alertmanager (Debian's 0.25) posts to a real runbookd on 127.0.0.1 with bearer auth.

Alertmanager resends a whole group at the next `group_interval` whenever the group changes, so
an alert already stored comes back in every later notification of its group. Firing, then
resolved, must each be stored exactly once: one alert row whose status goes firing ->
resolved, one execution per alert, and the deliveries that carried an alert again counted as
duplicates that added no row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.engine.models import Execution, ExecutionAlert
from app.intake.models import Alert, Delivery
from tests.support.alertmanager import now_utc, run_alertmanager
from tests.support.auth import WEBHOOK_TOKEN
from tests.support.binaries import need_binary
from tests.support.db import all_rows
from tests.support.net import RunningServer

pytestmark = pytest.mark.e2e


def labels(model: str) -> dict[str, str]:
    # `test-noop` is the default test catalog's runbook: each alert starts an execution.
    return {"alertname": "test-noop", "model": model, "severity": "critical",
            "team": "ml-platform"}


async def wait_deliveries(db_url: str, count: int, *, timeout: float,
                          log: Callable[[], str]) -> list[Delivery]:
    """Poll runbookd's database until it holds `count` deliveries."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await all_rows(db_url, Delivery)
        if len(rows) >= count:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(rows)} deliveries after {timeout:.0f}s, wanted {count}; "
                                 f"Alertmanager log:\n{log()[-3000:]}")
        await asyncio.sleep(0.1)


def counts(delivery: Delivery) -> dict[str, Any]:
    return {"total": delivery.alerts_total, "new": delivery.alerts_new,
            "changed": delivery.alerts_changed, "duplicate": delivery.alerts_duplicate}


async def test_alertmanager_firing_then_resolved_are_each_stored_once(
        server: RunningServer, db_url: str, tmp_path: Path) -> None:
    binary = need_binary("prometheus-alertmanager")
    started = time.monotonic()
    async with run_alertmanager(binary, tmp_path / "alertmanager",
                                webhook_url=f"{server.url}/webhooks/alertmanager",
                                token=WEBHOOK_TOKEN, group_by=["alertname"]) as am:
        log = am.log
        a_start = now_utc() - dt.timedelta(seconds=30)
        await am.fire(labels("model-a"), starts_at=a_start)
        # group_wait (1s): the first notification carries A alone.
        [first] = await wait_deliveries(db_url, 1, timeout=10, log=log)
        assert counts(first) == {"total": 1, "new": 1, "changed": 0, "duplicate": 0}

        # B joins the group: at the next group_interval the whole group is sent again, so A
        # arrives a second time and must add nothing.
        b_start = now_utc()
        await am.fire(labels("model-b"), starts_at=b_start)
        second = (await wait_deliveries(db_url, 2, timeout=12, log=log))[1]
        assert counts(second) == {"total": 2, "new": 1, "changed": 0, "duplicate": 1}

        # A resolves: the next notification carries A resolved (a status change of the same
        # row) and B firing again (a duplicate).
        await am.resolve(labels("model-a"), starts_at=a_start)
        third = (await wait_deliveries(db_url, 3, timeout=12, log=log))[2]
        assert counts(third) == {"total": 2, "new": 0, "changed": 1, "duplicate": 1}


    assert all(d.source == "alertmanager" and d.receiver == "runbookd" for d in
               await all_rows(db_url, Delivery))
    alerts = {a.labels["model"]: a for a in await all_rows(db_url, Alert)}
    assert sorted(alerts) == ["model-a", "model-b"], "a redelivery created a second alert row"
    a, b = alerts["model-a"], alerts["model-b"]
    assert (a.status, b.status) == ("resolved", "firing")
    assert a.ends_at is not None and a.ends_at < now_utc()
    assert b.ends_at is None, "a firing alert's Go zero endsAt must mean no end"
    assert abs((a.starts_at - a_start).total_seconds()) < 0.001
    assert a.last_delivery_id == third.id, "the resolve is recorded as A's last change"
    assert b.last_delivery_id == second.id, "B's redelivery must not touch its row"

    # Exactly one execution per alert: the redeliveries started nothing.
    links = await all_rows(db_url, ExecutionAlert)
    assert sorted(link.alert_id for link in links) == sorted([a.id, b.id])
    assert len(await all_rows(db_url, Execution)) == 2
    assert time.monotonic() - started < 30
