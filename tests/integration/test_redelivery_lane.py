"""The lane on both databases: it stores batches in which every alert is already stored, or
new and handled by no runbook, declines everything else without writing, and turns a lost
database into Unavailable."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db import make_engine, make_session_factory, session_scope
from app.errors import Unavailable
from app.intake import statements
from app.intake.models import NO_RUNBOOK, Alert, AlertLabel, Delivery
from app.intake.normalize import Envelope
from app.intake.redelivery import Declined, RedeliveryLane, open_lane
from app.intake.service import ingest_batch, record_no_match
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.db import all_rows
from tests.support.intake import am_envelope
from tests.support.payloads import am_alert, am_body, go_json


@pytest.fixture
async def lane(engine: AsyncEngine) -> AsyncIterator[RedeliveryLane]:
    opened = open_lane(engine)
    assert opened is not None
    yield opened
    await opened.close()


async def store_full(engine: AsyncEngine, *envelopes: Envelope) -> None:
    async with session_scope(make_session_factory(engine)) as session:
        await ingest_batch(session, list(envelopes))


@pytest.mark.parametrize("chunk", [statements.CHUNK, 2])
async def test_a_batch_of_redeliveries_writes_only_its_delivery_rows(
        engine, lane, chunk, monkeypatch):
    # With chunk=2 the SQLite statements split (bound values are limited) in one transaction.
    monkeypatch.setattr(statements, "CHUNK", chunk)
    await store_full(engine, am_envelope(am_alert("aa01"), am_alert("aa02")))
    batch = [am_envelope(am_alert("aa01"), am_alert("aa02"), receiver=f"r{i}") for i in range(5)]

    results = await lane.store(batch)

    assert isinstance(results, list)
    assert [(r.received, r.new, r.changed, r.duplicate) for r in results] == [(2, 0, 0, 2)] * 5
    stored = await all_rows(engine, Delivery)
    assert [d.id for d in stored[1:]] == [r.delivery_id for r in results]
    # Each id belongs to its own request's row, in order.
    assert [d.receiver for d in stored[1:]] == [f"r{i}" for i in range(5)]
    assert all(d.alerts_duplicate == 2 and d.alerts_new == 0 for d in stored[1:])


async def test_a_stale_firing_after_the_resolve_is_a_duplicate(engine, lane):
    await store_full(engine, am_envelope(am_alert("bb01")))
    await store_full(engine, am_envelope(am_alert("bb01", status="resolved",
                                               ends_at="2026-11-26T06:10:00Z")))
    results = await lane.store([am_envelope(am_alert("bb01"))])
    assert isinstance(results, list) and results[0].duplicate == 1


@pytest.mark.parametrize("incoming", [
    pytest.param([am_alert("cc01"), am_alert("cc99")], id="one-new-alert"),
    pytest.param([am_alert("cc01", status="resolved", ends_at="2026-11-26T06:10:00Z")],
                 id="a-status-change"),
    pytest.param([am_alert("cc01", starts_at="2026-11-26T07:00:00Z")],
                 id="a-new-occurrence"),
])
async def test_anything_that_changes_an_alert_is_declined_unwritten(engine, lane, incoming):
    await store_full(engine, am_envelope(am_alert("cc01")))
    before = len(await all_rows(engine, Delivery))
    # One redelivery and one change in the same batch: the whole batch takes the full path.
    declined = await lane.store([am_envelope(am_alert("cc01")), am_envelope(*incoming)])
    assert isinstance(declined, Declined)
    assert len(await all_rows(engine, Delivery)) == before
    # What it read is handed to the full path, which need not read it again.
    assert declined.states is not None
    assert {fp for _, fp, _ in declined.states} == {"cc01"}


async def test_a_delivery_with_an_id_to_check_is_declined(engine, lane):
    await store_full(engine, am_envelope(am_alert("dd01")))
    keyed = dataclasses.replace(am_envelope(am_alert("dd01")), delivery_key="wh-1")
    assert await lane.store([keyed]) == Declined()


async def test_a_value_the_database_refuses_is_left_to_the_full_path(pg_url):
    # PostgreSQL enforces the column's length (SQLite stores text of any length).
    engine = make_engine(pg_url)
    lane = open_lane(engine)
    assert lane is not None
    await store_full(engine, am_envelope(am_alert("ee01")))
    before = len(await all_rows(engine, Delivery))
    try:
        declined = await lane.store([am_envelope(am_alert("ee01"), receiver="r" * 300)])
        assert declined == Declined()  # the error comes after the read: the full path rereads
        assert len(await all_rows(engine, Delivery)) == before
    finally:
        await lane.close()
        await engine.dispose()


async def test_an_unreachable_database_is_unavailable(db_url, tmp_path):
    if db_url.startswith("postgresql"):
        engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    else:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    lane = open_lane(engine)
    assert lane is not None
    try:
        with pytest.raises(Unavailable):
            await lane.store([am_envelope(am_alert("ff01"))])
    finally:
        await lane.close()
        await engine.dispose()


def test_in_memory_sqlite_has_no_lane():
    # Each connection to an in-memory database has its own: the lane would write elsewhere.
    assert open_lane(create_async_engine("sqlite+aiosqlite://")) is None
    assert open_lane(create_async_engine("sqlite+aiosqlite:///:memory:")) is None


async def test_redeliveries_over_http_take_the_lane(client: httpx.AsyncClient, engine):
    headers = WEBHOOK_HEADERS
    body = go_json(am_body(am_alert("gg01")))

    async def lane_batches() -> float:
        return await _lane_batches(client)

    first = await client.post("/webhooks/alertmanager", content=body, headers=headers)
    assert first.json()["alerts"]["new"] == 1
    taken = await lane_batches()
    again = await client.post("/webhooks/alertmanager", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["alerts"]["duplicate"] == 1
    assert await lane_batches() == taken + 1
    async with make_session_factory(engine)() as session:
        count = await session.scalar(select(func.count()).select_from(Delivery))
    assert count == 2


async def _lane_batches(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    line = next(x for x in text.splitlines()
                if x.startswith('runbookd_ingest_batches_total{path="lane"}'))
    return float(line.split()[-1])


async def test_over_http_the_lane_takes_new_alerts_only_if_no_runbook_handles_them(
        client: httpx.AsyncClient, engine):
    taken = await _lane_batches(client)
    answer = await client.post("/webhooks/alertmanager", headers=WEBHOOK_HEADERS,
                               content=go_json(am_body(quiet("nn01"))))
    assert answer.status_code == 200 and answer.json()["alerts"]["new"] == 1
    assert await _lane_batches(client) == taken + 1
    # The test catalog's one runbook handles this one: the hook must see it (full path).
    handled = am_alert("nn02", labels={"alertname": "test-noop", "model": "m-1"})
    answer = await client.post("/webhooks/alertmanager", headers=WEBHOOK_HEADERS,
                               content=go_json(am_body(handled)))
    assert answer.status_code == 200 and answer.json()["alerts"]["new"] == 1
    assert await _lane_batches(client) == taken + 1
    notes = {a.fingerprint: a.match_note for a in await all_rows(engine, Alert)}
    assert notes["nn01"] == NO_RUNBOOK
    assert "started execution" in notes["nn02"]


async def test_the_full_path_splits_statements_too(engine, monkeypatch):
    monkeypatch.setattr(statements, "CHUNK", 2)
    batch = [am_envelope(am_alert(f"hh{i}a"), am_alert(f"hh{i}b"), receiver=f"r{i}")
             for i in range(5)]
    async with session_scope(make_session_factory(engine)) as session:
        results = await ingest_batch(session, batch)
    assert [r.new for r in results] == [2] * 5
    stored = await all_rows(engine, Delivery)
    assert [(d.id, d.receiver) for d in stored] == [
        (r.delivery_id, f"r{i}") for i, r in enumerate(results)]
    # And the same batch again is five redeliveries, read back across chunks.
    async with session_scope(make_session_factory(engine)) as session:
        again = await ingest_batch(session, batch)
    assert [r.duplicate for r in again] == [2] * 5


async def test_reading_stored_states_uses_an_index(db_url):
    """Every batch reads the states of its alerts: by fingerprint alone (not the index's
    leading column) it scanned the whole table, 17 ms a batch at 200,000 alerts."""
    if db_url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(_plain(db_url))
        try:
            # Enough rows for the planner to prefer an index where one serves.
            await conn.execute(
                "INSERT INTO alerts (source, fingerprint, starts_at, status, status_at, labels,"
                " annotations, received_at, updated_at) SELECT 'alertmanager', md5(i::text),"
                " now(), 'firing', now(), '{}', '{}', now(), now()"
                " FROM generate_series(1, 5000) AS i")
            await conn.execute("ANALYZE alerts")
            plan = await conn.fetch("EXPLAIN " + statements.PG_STATES_SQL,
                                    "alertmanager", ["a1", "b2"])
        finally:
            await conn.close()
        text = "\n".join(r[0] for r in plan)
        assert "Seq Scan" not in text, text
        condition = next(line for line in text.splitlines() if "Index Cond" in line)
        assert "source" in condition and "fingerprint" in condition, text
    else:
        import sqlite3

        conn = sqlite3.connect(db_url.split(":///", 1)[1])
        try:
            plan = conn.execute("EXPLAIN QUERY PLAN " + statements.sqlite_states_sql(2),
                                ["alertmanager", "a1", "b2"]).fetchall()
        finally:
            conn.close()
        text = "\n".join(str(r[-1]) for r in plan)
        assert "(source=? AND fingerprint=?)" in text, text


def no_runbook(labels) -> bool:
    return labels.get("alertname") != "ModelDrift"


@pytest.fixture
async def unmatched_lane(engine: AsyncEngine) -> AsyncIterator[RedeliveryLane]:
    opened = open_lane(engine, unmatched=no_runbook)
    assert opened is not None
    yield opened
    await opened.close()


def quiet(fingerprint: str, **kwargs: Any) -> dict[str, Any]:
    """An alert that no runbook handles."""
    return am_alert(fingerprint, labels={"alertname": "Quiet", "model": "m-1", "team": "ml"},
                    **kwargs)


async def test_an_alert_joining_a_group_is_stored_without_rewriting_the_others(
        engine, unmatched_lane):
    group = [quiet(f"jj{i:02d}") for i in range(9)]
    await store_full(engine, am_envelope(*group))
    before = {a.fingerprint: (a.updated_at, a.last_delivery_id)
              for a in await all_rows(engine, Alert)}

    results = await unmatched_lane.store([am_envelope(*group, quiet("jj09"), receiver="r1"),
                                          am_envelope(*group, quiet("jj10"), receiver="r2")])

    assert isinstance(results, list)
    assert [(r.received, r.new, r.changed, r.duplicate) for r in results] == [(10, 1, 0, 9)] * 2
    alerts = {a.fingerprint: a for a in await all_rows(engine, Alert)}
    # The known alerts are counted, not written.
    assert {fp: (alerts[fp].updated_at, alerts[fp].last_delivery_id) for fp in before} == before
    deliveries = await all_rows(engine, Delivery)
    assert [(d.id, d.receiver, d.alerts_new, d.alerts_duplicate) for d in deliveries[1:]] == [
        (results[0].delivery_id, "r1", 1, 9), (results[1].delivery_id, "r2", 1, 9)]
    # Each new alert points at its own delivery, with the hook's note and its labels.
    assert alerts["jj09"].last_delivery_id == results[0].delivery_id
    assert alerts["jj10"].last_delivery_id == results[1].delivery_id
    assert alerts["jj10"].match_note == NO_RUNBOOK
    labels = await all_rows(engine, AlertLabel, AlertLabel.alert_id == alerts["jj10"].id)
    assert {(x.name, x.value) for x in labels} == {
        ("alertname", "Quiet"), ("model", "m-1"), ("team", "ml")}


async def test_the_lane_stores_a_new_alert_as_the_full_path_does(engine, unmatched_lane):
    resolved = {"status": "resolved", "ends_at": "2026-11-26T06:30:00Z"}
    await store_full(engine, am_envelope(quiet("kk01"), quiet("kk02", **resolved)))
    stored = await unmatched_lane.store([am_envelope(quiet("kk11"), quiet("kk12", **resolved))])
    assert isinstance(stored, list)

    columns = [c.key for c in Alert.__table__.columns
               if c.key not in ("id", "fingerprint", "raw", "received_at", "updated_at",
                                "last_delivery_id", "match_note")]
    rows = {a.fingerprint: a for a in await all_rows(engine, Alert)}
    for full, lane in (("kk01", "kk11"), ("kk02", "kk12")):
        assert ({c: getattr(rows[lane], c) for c in columns}
                == {c: getattr(rows[full], c) for c in columns})
        assert rows[lane].raw == {**rows[full].raw, "fingerprint": lane}
        assert (await _labels(engine, rows[lane].id)) == (await _labels(engine, rows[full].id))
    # The engine's hook notes a new firing alert, and nothing on one that arrives resolved
    # (the test's full path ran the intake's own default hook, which notes both).
    assert rows["kk11"].match_note == NO_RUNBOOK and rows["kk12"].match_note is None


async def _labels(engine: AsyncEngine, alert_id: int) -> set[tuple[str, str]]:
    return {(x.name, x.value) for x in await all_rows(engine, AlertLabel,
                                                      AlertLabel.alert_id == alert_id)}


@pytest.mark.parametrize("incoming", [
    pytest.param([quiet("ll01"), am_alert("ll99")], id="a-new-alert-a-runbook-handles"),
    pytest.param([quiet("ll01", status="resolved", ends_at="2026-11-26T06:10:00Z")],
                 id="a-status-change"),
])
async def test_a_batch_the_hook_must_see_is_declined_unwritten(engine, unmatched_lane, incoming):
    await store_full(engine, am_envelope(quiet("ll01")))
    before = len(await all_rows(engine, Alert)), len(await all_rows(engine, Delivery))
    declined = await unmatched_lane.store([am_envelope(quiet("ll02")), am_envelope(*incoming)])
    assert isinstance(declined, Declined) and declined.states is not None
    assert (len(await all_rows(engine, Alert)), len(await all_rows(engine, Delivery))) == before
    # The full path then stores it all, with the states the lane read.
    async with session_scope(make_session_factory(engine)) as session:
        results = await ingest_batch(session, [am_envelope(quiet("ll02")), am_envelope(*incoming)],
                                     hook=record_no_match, known_states=declined.states)
    assert results[0].new == 1


async def test_a_new_alert_another_writer_stored_meanwhile_is_declined(db_url, engine):
    """The states are read outside the transaction: if another writer inserts one of the
    batch's new alerts in between, the unique index refuses the lane's insert, nothing of
    the batch is written, and the full path reads the states again."""
    if db_url.startswith("postgresql"):
        pytest.skip("the race is staged on SQLite's lane thread; the index is the same")
    import sqlite3

    other = sqlite3.connect(db_url.split(":///", 1)[1], isolation_level=None,
                            check_same_thread=False)

    def racing(labels) -> bool:
        # Runs on the lane's thread between its read and its writes.
        other.execute(
            "INSERT INTO alerts (source, fingerprint, starts_at, status, status_at, labels, "
            "annotations, received_at, updated_at) VALUES ('alertmanager', 'mm01', "
            "'2026-11-26 06:00:00.123456', 'firing', '2026-11-26 06:00:00.123456', '{}', "
            "'{}', '2026-11-26 06:00:00', '2026-11-26 06:00:00')")
        return True

    lane = open_lane(engine, unmatched=racing)
    assert lane is not None
    try:
        assert await lane.store([am_envelope(quiet("mm01"))]) == Declined()
    finally:
        await lane.close()
        other.close()
    assert [a.fingerprint for a in await all_rows(engine, Alert)] == ["mm01"]
    assert await all_rows(engine, Delivery) == []


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
