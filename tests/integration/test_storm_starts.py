"""A storm that starts work (issue 17, target 3): a webhook of new alerts starts its
executions in a few statements whatever its size, and keeps what the one-at-a-time start
guaranteed: one active execution per target, a trigger link and an event per execution,
alerts that join, the order of firing and resolved alerts, and a race lost to another
replica."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from app.actions.registry import default_registry
from app.catalog.loader import load_catalog
from app.db import make_session_factory, utcnow
from app.engine import starts
from app.engine.models import Execution, ExecutionAlert
from app.intake.models import Alert
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.payloads import am_alert, am_body, go_json

STORM = "storm"
rig_settings = pytest.fixture(lambda: {"worker_enabled": False})


def _alert(n: int, model: str, *, status: str = "firing") -> dict[str, Any]:
    return am_alert(f"{n:016x}", status=status, labels={"alertname": STORM, "model": model},
                    ends_at="2026-11-26T06:30:00Z" if status == "resolved"
                    else "0001-01-01T00:00:00Z")


async def _post(r: Any, *alerts: dict[str, Any]) -> None:
    response = await r.http.post("/webhooks/alertmanager", content=go_json(am_body(*alerts)),
                                 headers=WEBHOOK_HEADERS)
    assert response.status_code == 200, response.text


@contextlib.contextmanager
def _statements() -> Iterator[collections.Counter[str]]:
    """The intake writer's statements meanwhile (not the periodic jobs'), by the table they
    write or read first."""
    seen: collections.Counter[str] = collections.Counter()

    def count(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:  # aiosqlite's thread: its caller is the task that counts
            task = None
        if task is None or task.get_name() != "ingest-writer":
            return
        words = sql.split()
        verb = words[0].upper()
        table = next((w for w in words[1:6] if w.strip('"') in {
            "executions", "execution_alerts", "events", "alerts"}), "")
        seen[f"{verb} {table.strip(chr(34))}".strip()] += 1

    event.listen(Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", count)


async def test_a_webhook_of_new_alerts_starts_them_in_statements_that_do_not_grow_with_it(
        make_rig):
    async with make_rig([runbook(STORM, [step("a")])]) as r:
        with _statements() as ten:
            await _post(r, *(_alert(n, f"m-{n}") for n in range(10)))
        with _statements() as forty:
            await _post(r, *(_alert(n, f"m-{n}") for n in range(100, 140)))
        executions = await r.executions()
        links = await r.rows(ExecutionAlert)
        events = await r.events()
    execution_writes = {k: v for k, v in forty.items()
                        if k.split()[-1] in {"executions", "execution_alerts", "events"}}
    # Forty new targets cost what ten did: no statement per alert on the way to the engine.
    # One read of the active executions, one insert each of executions, links and events.
    one_each = {"SELECT executions": 1, "INSERT executions": 1, "INSERT execution_alerts": 1,
                "INSERT events": 1}
    assert execution_writes == one_each, forty
    assert {k: v for k, v in ten.items() if k in one_each} == one_each, ten
    assert len(executions) == 50
    assert {e.target for e in executions} == {f"model:m-{n}" for n in
                                              [*range(10), *range(100, 140)]}
    assert all(e.status == "pending" and not e.dry_run for e in executions)
    assert sorted(link.execution_id for link in links) == sorted(e.id for e in executions)
    assert {link.role for link in links} == {"trigger"}
    created = [e for e in events if e.kind == "execution.created"]
    assert sorted(e.execution_id for e in created) == sorted(e.id for e in executions)
    assert created[0].reason.startswith(f"alert: {STORM} on model:m-")


async def test_alerts_for_one_target_in_one_webhook_start_one_execution_and_join_it(
        make_rig):
    async with make_rig([runbook(STORM, [step("a")])]) as r:
        await _post(r, _alert(1, "shared"), _alert(2, "other"), _alert(3, "shared"),
                    _alert(4, "shared"))
        # Redelivered with one more: the known alerts do not attach twice.
        await _post(r, _alert(1, "shared"), _alert(3, "shared"), _alert(5, "shared"))
        executions = {e.target: e for e in await r.executions()}
        links = await r.rows(ExecutionAlert)
        alerts = {a.fingerprint: a for a in await r.rows(Alert)}
        attached = [e for e in await r.events() if e.kind == "alert.attached"]
    assert set(executions) == {"model:shared", "model:other"}
    shared = executions["model:shared"].id
    roles = {(link.alert_id, link.role) for link in links if link.execution_id == shared}
    first, third, fourth, fifth = (alerts[f"{n:016x}"].id for n in (1, 3, 4, 5))
    assert roles == {(first, "trigger"), (third, "joined"), (fourth, "joined"),
                     (fifth, "joined")}
    assert sorted(e.data["alert_id"] for e in attached) == sorted([third, fourth, fifth])
    assert alerts[f"{1:016x}"].match_note == f"to-{STORM} -> {STORM}: started execution {shared}"
    assert alerts[f"{4:016x}"].match_note == f"to-{STORM} -> {STORM}: joined execution {shared}"


async def test_an_alert_whose_params_do_not_fit_starts_nothing_and_says_why(make_rig):
    async with make_rig([runbook(STORM, [step("a")])]) as r:
        await _post(r, _alert(1, "ok-1"), _alert(2, "Not A Model!"), _alert(3, "ok-2"))
        executions = await r.executions()
        alerts = {a.fingerprint: a for a in await r.rows(Alert)}
    assert sorted(e.target for e in executions) == ["model:ok-1", "model:ok-2"]
    refused = alerts[f"{2:016x}"].match_note
    assert refused.startswith(f"to-{STORM} -> {STORM}: no execution: "), refused
    assert "model" in refused
    assert alerts[f"{3:016x}"].match_note.startswith(f"to-{STORM} -> {STORM}: started ")


@pytest.mark.parametrize("order", ["firing first", "resolved first"])
async def test_an_alert_that_resolves_beside_a_new_one_for_its_target_keeps_the_execution(
        make_rig, order):
    """A webhook that resolves the alert behind an execution and brings a new one for the same
    target, in either order: the new alert joins before the resolve is judged (the intake
    hands new alerts to the engine before changed ones), so the execution runs on."""
    async with make_rig([runbook(STORM, [step("a")])]) as r:
        await _post(r, _alert(1, "m"))
        first, = await r.executions()
        joining, resolving = _alert(2, "m"), _alert(1, "m", status="resolved")
        await _post(r, *((joining, resolving) if order == "firing first"
                         else (resolving, joining)))
        executions = await r.executions()
        links = await r.rows(ExecutionAlert)
    assert [(e.id, e.status) for e in executions] == [(first.id, "pending")]
    assert sorted(link.role for link in links) == ["joined", "trigger"]


async def test_a_pair_that_another_replica_started_meanwhile_is_joined_not_duplicated(
        engine, tmp_path, monkeypatch):
    """Another writer commits an active execution for the pair after this batch read none:
    the insert skips it (ON CONFLICT on the active-target index) and the alert joins it."""
    mappings, remediations = write_catalog(tmp_path, [runbook(STORM, [step("a")])])
    catalog = load_catalog(mappings, remediations, action_names=default_registry().specs())
    loaded = catalog.runbooks[STORM]
    sessions = make_session_factory(engine)
    async with sessions() as setup:
        now = utcnow()
        alert = Alert(fingerprint="f" * 16, source="alertmanager", status="firing",
                      labels={"alertname": STORM, "model": "m"}, annotations={},
                      starts_at=now, status_at=now, received_at=now, updated_at=now)
        setup.add(alert)
        await setup.commit()
        alert_id = alert.id

    real_active_ids = starts._active_ids
    calls = 0

    async def racing_read(session: Any, keys: Any) -> dict[starts.Key, int]:
        nonlocal calls
        calls += 1
        if calls == 1:  # read nothing, then the other replica commits its execution
            async with sessions() as other:
                await starts.start_or_attach_all(other, [starts.Start(
                    runbook=loaded.runbook, version=loaded.version, target="model:m",
                    params={"model": "m"})], actor="replica-2")
                await other.commit()
            return {}
        return await real_active_ids(session, keys)

    monkeypatch.setattr(starts, "_active_ids", racing_read)
    async with sessions() as session:
        started, = await starts.start_or_attach_all(session, [starts.Start(
            runbook=loaded.runbook, version=loaded.version, target="model:m",
            params={"model": "m"}, alert_id=alert_id)], actor="replica-1")
        await session.commit()
        rows = (await session.execute(select(Execution))).scalars().all()
        links = (await session.execute(select(ExecutionAlert))).scalars().all()
    assert len(rows) == 1 and not started.created and started.execution_id == rows[0].id
    assert [(link.execution_id, link.alert_id, link.role) for link in links] == [
        (rows[0].id, alert_id, "joined")]
