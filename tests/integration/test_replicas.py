"""Two runbookd processes on one PostgreSQL: every step runs exactly once (invariant 4),
and a replica's leased work is taken over when it dies."""

from __future__ import annotations

import asyncio
import collections

import httpx
import pytest

from app.engine.models import Execution
from tests.support.auth import WEBHOOK_HEADERS, WEBHOOK_TOKEN
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.procs import RunbookdProcess, runbookd_env

# Alone: with leases of 2 s, a replica starved of CPU loses its leases and its steps are cut
# (see tests/support/workers.py).
pytestmark = pytest.mark.alone

EXECUTIONS = 500


@pytest.fixture
def replicas(tmp_path, pg_url, tokens_file):
    marks = tmp_path / "steps.txt"
    # Executions for different models run side by side: with the default of one at a time,
    # the replicas would take turns, and one execution cut by a kill and waiting for a human
    # would hold back all the others.
    book = runbook("fanout", [
        step("one", idempotent=False, **{"with": {"append_to": str(marks)}}),
        step("two", idempotent=False, **{"with": {"append_to": str(marks)}}),
    ], limits={"concurrent": 64})
    mappings, remediations = write_catalog(tmp_path / "catalog", [book])
    env = runbookd_env(db_url=pg_url, mappings=mappings, remediations=remediations,
                       tokens_file=tokens_file, webhook_token=WEBHOOK_TOKEN,
                       RUNBOOKD_LEASE_SECONDS="2", RUNBOOKD_WORKER_CONCURRENCY="16")
    procs = [RunbookdProcess(env, log_path=tmp_path / f"replica{i}.log") for i in range(2)]
    yield procs, marks
    for proc in procs:
        proc.stop()


async def _post_alerts(urls: list[str], count: int) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        async def send(batch: int) -> None:
            alerts = [am_alert(f"{batch * 10 + i:016x}",
                               labels={"alertname": "fanout", "model": f"m-{batch * 10 + i}"})
                      for i in range(10)]
            response = await http.post(
                f"{urls[batch % len(urls)]}/webhooks/alertmanager",
                content=go_json(am_body(*alerts)),
                headers=WEBHOOK_HEADERS)
            assert response.status_code == 200, response.text
        await asyncio.gather(*(send(b) for b in range(count // 10)))


async def _wait_all(db_url: str, status: str | None, count: int,
                    timeout: float) -> list[Execution]:
    """Wait until `count` executions are all `status` (None: all ended or need a human)."""
    settled = {status} if status else {"succeeded", "failed", "needs_attention", "cancelled"}
    for _ in range(int(timeout * 4)):
        rows = await all_rows(db_url, Execution)
        if len(rows) == count and all(r.status in settled for r in rows):
            return rows
        await asyncio.sleep(0.25)
    tally = collections.Counter(r.status for r in rows)
    raise AssertionError(f"not all {status}: {len(rows)} rows, {dict(tally)}")


async def test_two_replicas_run_every_step_exactly_once(replicas, pg_url):
    procs, marks = replicas
    await asyncio.gather(*(p.start() for p in procs))
    await _post_alerts([p.url for p in procs], EXECUTIONS)
    await _wait_all(pg_url, "succeeded", EXECUTIONS, timeout=120)
    lines = marks.read_text().splitlines()
    counts = collections.Counter(lines)
    assert len(lines) == 2 * EXECUTIONS
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]


async def test_a_killed_replicas_leases_are_taken_over(replicas, pg_url):
    procs, marks = replicas
    await procs[0].start()
    await _post_alerts([procs[0].url], 200)
    pid = f":{procs[0].proc.pid}:"
    for _ in range(200):  # kill it while it holds leases
        rows = await all_rows(pg_url, Execution)
        if any(r.lease_owner and pid in r.lease_owner for r in rows):
            break
        await asyncio.sleep(0.02)
    procs[0].kill9()
    await procs[1].start()
    rows = await _wait_all(pg_url, None, 200, timeout=60)
    tally = collections.Counter(r.status for r in rows)
    # A step cut mid-run by the kill is not re-run blindly: its execution waits for a human.
    assert set(tally) <= {"succeeded", "needs_attention"}, tally
    assert tally["needs_attention"] <= 16
    assert any(r.lease_owner is None for r in rows)
    lines = marks.read_text().splitlines()
    assert max(collections.Counter(lines).values()) == 1
