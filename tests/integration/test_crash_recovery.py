"""Invariant 4 across a real `kill -9`: a step interrupted by a crash never runs again
blindly. A non-idempotent one waits for a human; an idempotent one is retried."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from app.engine.models import Execution, StepRun
from tests.support.auth import WEBHOOK_HEADERS, WEBHOOK_TOKEN, auth
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.procs import RunbookdProcess, runbookd_env


async def _wait_for_lines(path, count: int, timeout: float = 20) -> None:
    for _ in range(int(timeout * 20)):
        if path.exists() and path.read_text().count("\n") >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never reached {count} lines")


async def _wait_execution(db_url: str, status: str, timeout: float = 30) -> Execution:
    for _ in range(int(timeout * 10)):
        rows = await all_rows(db_url, Execution)
        if rows and rows[0].status == status:
            return rows[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"execution never reached {status}: "
                         f"{[(r.status, r.status_reason) for r in rows]}")


@pytest.fixture
def crash_rig(tmp_path, db_url, tokens, tokens_file):
    def build(idempotent: bool):
        marks = tmp_path / "starts.txt"
        book = runbook("crashy", [
            step("long", "sleep", idempotent=idempotent,
                 **{"with": {"seconds": 2, "append_to": str(marks)}}),
        ])
        mappings, remediations = write_catalog(tmp_path / "catalog", [book])
        env = runbookd_env(db_url=db_url, mappings=mappings, remediations=remediations,
                           tokens_file=tokens_file, webhook_token=WEBHOOK_TOKEN,
                           RUNBOOKD_LEASE_SECONDS="1.5")
        return RunbookdProcess(env, log_path=tmp_path / "runbookd.log"), marks
    return build


async def _fire(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post(
            "/webhooks/alertmanager", content=go_json(am_body(am_alert(
                labels={"alertname": "crashy", "model": "fraud-v3"}))),
            headers=WEBHOOK_HEADERS)
        assert response.status_code == 200


async def _kill_9_mid_step(proc: RunbookdProcess, marks) -> None:
    """Fire the alert, `kill -9` runbookd once the step has started, and start it again."""
    await _fire(proc.url)
    await _wait_for_lines(marks, 1)
    proc.kill9()
    await proc.start()


async def test_kill_9_during_a_non_idempotent_step_needs_a_human(crash_rig, db_url, tokens):
    proc, marks = crash_rig(idempotent=False)
    await proc.start()
    try:
        await _kill_9_mid_step(proc, marks)
        execution = await _wait_execution(db_url, "needs_attention")
        await asyncio.sleep(1)  # give a wrong re-run the chance to happen
        [run] = await all_rows(db_url, StepRun)
        assert run.status == "interrupted"
        assert marks.read_text().count("\n") == 1, "the step ran again after the crash"
        assert "not idempotent" in execution.status_reason

        async with httpx.AsyncClient(base_url=proc.url) as http:
            skip = await http.post(f"/api/v1/executions/{execution.id}/skip",
                                   headers=auth(tokens["rita"]))
        assert skip.status_code == 200, skip.text
        await _wait_execution(db_url, "succeeded")
        assert marks.read_text().count("\n") == 1
    finally:
        proc.stop()


async def test_kill_9_during_an_idempotent_step_retries_it(crash_rig, db_url):
    proc, marks = crash_rig(idempotent=True)
    await proc.start()
    try:
        await _kill_9_mid_step(proc, marks)
        await _wait_execution(db_url, "succeeded")
        [run] = await all_rows(db_url, StepRun)
        assert run.status == "succeeded"
        assert marks.read_text().count("\n") == 2
    finally:
        proc.stop()
