"""Big deliveries are stored in parts, each its own transaction, and other senders' small
deliveries are stored between two parts; the 2xx of the big one waits for its last part, and
its delivery row always tells what is committed (issue 17, target 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import make_session_factory
from app.intake import writer as writer_module
from app.intake.models import Alert, Delivery
from app.intake.redelivery import open_lane
from app.intake.service import AlertChange, record_no_match
from app.intake.writer import GroupCommitWriter
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.db import all_rows
from tests.support.intake import quiet_envelope
from tests.support.payloads import am_alert, am_body, go_json


async def test_a_small_delivery_is_stored_between_two_parts_of_a_big_one(engine):
    """The full path (lane=None), whose hook sees each transaction's alerts in commit order:
    the small delivery arrives while the big one's first part is being written."""
    writes: list[list[str]] = []
    small: list[asyncio.Future[Any]] = []
    submitted = asyncio.Event()
    writer: GroupCommitWriter

    async def hook(session: AsyncSession, changes: list[AlertChange]) -> None:
        writes.append([c.alert.fingerprint for c in changes])
        if not small:
            small.append(writer.submit(quiet_envelope("small", receiver="other-sender")))
            submitted.set()
        await record_no_match(session, changes)

    writer = GroupCommitWriter(make_session_factory(engine), hook=lambda: hook, lane=None,
                               chunk_alerts=10)
    await writer.start()
    done: list[str] = []
    try:
        big = writer.submit(quiet_envelope(*(f"big{i:02d}" for i in range(35)), receiver="big"))
        big.add_done_callback(lambda _: done.append("big"))
        await submitted.wait()
        small[0].add_done_callback(lambda _: done.append("small"))
        result, small_result = await big, await small[0]
    finally:
        await writer.stop()

    # Four parts of at most ten alerts, and the small delivery right after the first.
    assert [len(w) for w in writes] == [10, 1, 10, 10, 5]
    assert writes[1] == ["small"]
    assert done == ["small", "big"]
    assert (result.received, result.new, result.duplicate) == (35, 35, 0)
    assert small_result.new == 1
    rows = {d.receiver: d for d in await all_rows(engine, Delivery)}
    big_row = rows["big"]
    assert (big_row.id, big_row.alerts_total, big_row.alerts_new) == (result.delivery_id, 35, 35)
    alerts = await all_rows(engine, Alert)
    assert {a.last_delivery_id for a in alerts if a.fingerprint.startswith("big")} == {
        result.delivery_id}
    # The small one committed between the first part and the second.
    ids = {a.fingerprint: a.id for a in alerts}
    assert ids["big09"] < ids["small"] < ids["big10"]


async def test_a_big_delivery_through_the_lane_counts_every_part(engine):
    """The lane stores parts too; a later part adds its counts to the delivery's row, and
    alerts already stored, in any part, are duplicates."""
    lane = open_lane(engine, unmatched=lambda labels: True)
    if lane is None:
        pytest.skip("no lane on this database")
    writer = GroupCommitWriter(make_session_factory(engine), hook=lambda: record_no_match,
                               lane=lane, chunk_alerts=10)
    await writer.start()
    try:
        first = await writer.submit(quiet_envelope(*(f"a{i:02d}" for i in range(0, 40, 4))))
        # 25 alerts: every fourth of the first 25 (7) is stored already, in three parts.
        result = await writer.submit(quiet_envelope(*(f"a{i:02d}" for i in range(25)),
                                              receiver="big"))
    finally:
        await writer.stop()
    assert (first.new, result.received, result.new, result.duplicate) == (10, 25, 18, 7)
    big_row = next(d for d in await all_rows(engine, Delivery) if d.receiver == "big")
    assert (big_row.alerts_total, big_row.alerts_new, big_row.alerts_duplicate) == (25, 18, 7)
    assert len(await all_rows(engine, Alert)) == 28


async def test_over_http_a_big_delivery_and_a_small_one_are_both_stored(
        make_rig, monkeypatch):
    monkeypatch.setattr(writer_module, "CHUNK_ALERTS", 20)
    big_body = go_json(am_body(*(am_alert(f"h{i:03d}", labels={"alertname": "Quiet",
                                                               "n": str(i)})
                                 for i in range(150))))
    small_body = go_json(am_body(am_alert("hsmall", labels={"alertname": "Quiet"})))
    async with make_rig() as r:
        client = r.http
        big, small = await asyncio.gather(
            client.post("/webhooks/alertmanager", content=big_body, headers=WEBHOOK_HEADERS),
            client.post("/webhooks/alertmanager", content=small_body, headers=WEBHOOK_HEADERS))
        assert big.status_code == 200 and small.status_code == 200
        assert big.json()["alerts"] == {"received": 150, "new": 150, "changed": 0,
                                        "duplicate": 0}
        again = await client.post("/webhooks/alertmanager", content=big_body,
                                  headers=WEBHOOK_HEADERS)
        assert again.json()["alerts"]["duplicate"] == 150
