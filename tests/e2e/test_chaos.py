"""Chaos: sustained webhook load while runbookd is killed with SIGKILL 20 times at random
moments and restarted after each kill (invariants 1, 2 and 4 together).

The runbook's two steps are not idempotent and each appends a line to a file when it really
runs, so a second run of a step would show as a repeated line. Afterwards:
- every alert that got a 2xx is in the database (acknowledged means stored);
- each alert has exactly one execution, though acknowledged alerts are redelivered throughout;
- no step ran twice, and an execution whose step was cut by a kill waits in needs_attention
  instead of running the step again.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from app.engine.models import Execution, ExecutionAlert, StepRun
from app.intake.models import Alert
from tests.support.auth import WEBHOOK_HEADERS, WEBHOOK_TOKEN
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.procs import RunbookdProcess, runbookd_env
from tests.support.wait import eventually

# Alone: twenty restarts must each come up between the kills (see tests/support/workers.py).
pytestmark = [pytest.mark.e2e, pytest.mark.alone]

KILLS = 20
SENDERS = 3
ALERTS_PER_REQUEST = 2
# Between two requests of one sender: keeps the work the engine must finish bounded.
PAUSE = 0.3
SETTLED = {"succeeded", "needs_attention"}


@dataclass
class Load:
    """What the senders posted, and what runbookd answered."""

    acknowledged: set[str] = field(default_factory=set)
    redelivered: int = 0
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    _fingerprints: itertools.count[int] = field(
        default_factory=lambda: itertools.count(0x0C00_0000_0000_0000))

    async def served_beyond(self, count: int) -> bool:
        return self.answers["200"] > count

    def alert(self, fingerprint: str) -> dict:
        return am_alert(fingerprint, starts_at="2026-11-26T06:00:00Z", labels={
            "alertname": "chaos", "model": f"m-{fingerprint}", "severity": "critical"})

    async def send(self, http: httpx.AsyncClient, url: str, rng: random.Random) -> None:
        fresh = [f"{next(self._fingerprints):016x}" for _ in range(ALERTS_PER_REQUEST)]
        # Alertmanager resends what it already delivered: mix one acknowledged alert in.
        again = [rng.choice(sorted(self.acknowledged))] if self.acknowledged else []
        body = go_json(am_body(*(self.alert(fp) for fp in fresh + again)))
        try:
            answer = await http.post(f"{url}/webhooks/alertmanager", content=body,
                                     headers=WEBHOOK_HEADERS)
        except httpx.HTTPError as exc:
            self.answers[type(exc).__name__] += 1
            await asyncio.sleep(0.05)  # down: a sender backs off, as Alertmanager does
            return
        self.answers[str(answer.status_code)] += 1
        if answer.status_code == 200:
            self.acknowledged.update(fresh)
            self.redelivered += len(again)
            counted = answer.json()["alerts"]
            # The redelivered alert is a duplicate, even when it was stored by an earlier life.
            assert (counted["new"], counted["duplicate"]) == (len(fresh), len(again)), counted


@pytest.fixture
def chaos_proc(tmp_path: Path, db_url: str, tokens: dict[str, str], tokens_file: Path):
    marks = tmp_path / "side-effects.txt"
    book = runbook("chaos", [
        step("first", "noop", idempotent=False, **{"with": {"append_to": str(marks)}}),
        step("second", "sleep", idempotent=False,
             **{"with": {"seconds": 0.2, "append_to": str(marks)}}),
    ], limits={"concurrent": 100_000})
    mappings, remediations = write_catalog(tmp_path / "catalog", [book])
    env = runbookd_env(db_url=db_url, mappings=mappings, remediations=remediations,
                       tokens_file=tokens_file, webhook_token=WEBHOOK_TOKEN,
                       RUNBOOKD_LEASE_SECONDS="2", RUNBOOKD_WORKER_CONCURRENCY="32")
    proc = RunbookdProcess(env, log_path=tmp_path / "runbookd.log")
    yield proc, marks
    proc.kill9()


async def wait_settled(db_url: str, timeout: float) -> list[Execution]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await all_rows(db_url, Execution)
        if all(r.status in SETTLED for r in rows):
            return rows
        assert time.monotonic() < deadline, (
            f"executions still moving: {collections.Counter(r.status for r in rows)}")
        await asyncio.sleep(0.25)


async def test_twenty_kill_9_under_load_lose_nothing_and_repeat_nothing(
        chaos_proc: tuple[RunbookdProcess, Path], db_url: str) -> None:
    proc, marks = chaos_proc
    rng = random.Random(8)
    load = Load()
    stop = asyncio.Event()
    started = time.monotonic()

    async def sender(seed: int) -> None:
        local = random.Random(seed)
        async with httpx.AsyncClient(timeout=10) as http:
            while not stop.is_set():
                await load.send(http, proc.url, local)
                await asyncio.sleep(PAUSE)

    await proc.start()
    senders = [asyncio.create_task(sender(i)) for i in range(SENDERS)]
    try:
        for _ in range(KILLS):
            served = load.answers["200"]
            await asyncio.sleep(rng.uniform(0.15, 0.7))
            # Each life takes load before it dies, however slow the host: on a busy one a
            # restart can eat the whole random pause.
            await eventually(functools.partial(load.served_beyond, served), timeout=30,
                             what="a 2xx from this life of runbookd", interval=0.05)
            proc.kill9()
            await proc.start()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*senders)
    load_seconds = time.monotonic() - started
    executions = await wait_settled(db_url, timeout=30)
    settle_seconds = time.monotonic() - started - load_seconds
    proc.stop()

    assert load.answers["200"] >= KILLS, f"a life took no load: {load.answers}"
    assert set(load.answers) <= {"200", "ConnectError", "ReadError", "RemoteProtocolError",
                                 "WriteError"}, load.answers

    # Acknowledged means stored, across 20 crashes.
    alerts = await all_rows(db_url, Alert)
    stored = collections.Counter(a.fingerprint for a in alerts)
    assert not load.acknowledged - set(stored), (
        f"{len(load.acknowledged - set(stored))} acknowledged alerts were lost")
    assert max(stored.values()) == 1, "an alert was stored twice"

    # One execution per alert, though acknowledged alerts kept being redelivered.
    assert load.redelivered > 0
    links = await all_rows(db_url, ExecutionAlert)
    per_alert = collections.Counter(link.alert_id for link in links)
    assert len(per_alert) == len(alerts) and max(per_alert.values()) == 1, (
        "an alert without exactly one execution")
    assert len(executions) == len(alerts)
    assert len({e.target for e in executions}) == len(executions)

    # No non-idempotent step ran twice: each step run left at most one line.
    lines = collections.Counter(marks.read_text().splitlines())
    repeated = [line for line, n in lines.items() if n > 1]
    assert not repeated, f"steps ran twice: {repeated[:5]}"
    runs = await all_rows(db_url, StepRun)
    by_execution = collections.defaultdict(list)
    for run in runs:
        by_execution[run.execution_id].append(run)
    line_of = {"first": "{x} {r}", "second": "{x} {r} start"}
    for execution in executions:
        ran = by_execution[execution.id]
        if execution.status == "succeeded":
            assert sorted(r.step_id for r in ran) == ["first", "second"]
            for run in ran:
                assert run.status == "succeeded" and run.attempts == 1
                assert lines[line_of[run.step_id].format(x=execution.id, r=run.id)] == 1
        else:  # needs_attention: a kill cut a step; it is not re-run blindly
            [cut] = [r for r in ran if r.status == "interrupted"]
            assert cut.attempts == 1
            assert "not idempotent" in (execution.status_reason or "")
            assert lines[line_of[cut.step_id].format(x=execution.id, r=cut.id)] <= 1
    print(f"\nchaos on {db_url.split(':')[0]}: {load_seconds:.0f}s of load, {KILLS} kills, "
          f"settled in {settle_seconds:.0f}s, answers {dict(load.answers)}, {len(alerts)} alerts, "
          f"{collections.Counter(e.status for e in executions)}")
