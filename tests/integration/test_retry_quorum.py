"""Hole 3: a retry after a crash needs the full quorum again, never one fresh approver.

A risky, non-idempotent step approved by two people is cut by `kill -9`. The execution goes
to needs_attention; a human chooses retry. The old approvals were given for the run that was
cut: they are void, with events, and one approver alone must not release a second run.
"""

from __future__ import annotations

import asyncio

import httpx

from app.engine.models import Approval, StepRun
from app.events import Event
from tests.integration.test_crash_recovery import _fire, _wait_execution, _wait_for_lines
from tests.support.auth import WEBHOOK_TOKEN, auth
from tests.support.db import all_rows
from tests.support.engine_catalog import risky, runbook, write_catalog
from tests.support.procs import RunbookdProcess, runbookd_env


async def _approve(http: httpx.AsyncClient, token: str, execution_id: int) -> httpx.Response:
    return await http.post(f"/api/v1/executions/{execution_id}/steps/long/approve",
                           headers=auth(token), json={"comment": "go"})


async def test_a_retry_after_a_crash_needs_the_full_quorum_again(tmp_path, db_url, tokens,
                                                                tokens_file):
    marks = tmp_path / "starts.txt"
    book = runbook("crashy", [
        risky("long", count=2, action="sleep", idempotent=False,
              **{"with": {"seconds": 3, "append_to": str(marks)}}),
    ])
    mappings, remediations = write_catalog(tmp_path / "catalog", [book])
    env = runbookd_env(db_url=db_url, mappings=mappings, remediations=remediations,
                       tokens_file=tokens_file, webhook_token=WEBHOOK_TOKEN,
                       RUNBOOKD_LEASE_SECONDS="1.5")
    proc = RunbookdProcess(env, log_path=tmp_path / "runbookd.log")
    await proc.start()
    try:
        await _fire(proc.url)
        execution = await _wait_execution(db_url, "awaiting_approval")
        async with httpx.AsyncClient(base_url=proc.url) as http:
            for who in ("alice", "bob"):
                answer = await _approve(http, tokens[who], execution.id)
                assert answer.status_code == 200, answer.text
        await _wait_for_lines(marks, 1)
        proc.kill9()
        await proc.start()
        await _wait_execution(db_url, "needs_attention")
        async with httpx.AsyncClient(base_url=proc.url) as http:
            retry = await http.post(f"/api/v1/executions/{execution.id}/retry",
                                    headers=auth(tokens["rita"]))
            assert retry.status_code == 200, retry.text
            await _wait_execution(db_url, "awaiting_approval")
            alone = await _approve(http, tokens["alice"], execution.id)
            assert alone.status_code == 200, alone.text
            assert alone.json()["approvals"] == 1
            await asyncio.sleep(1.5)  # give a wrong second run the chance to start
            [run] = await all_rows(db_url, StepRun)
            assert run.status == "awaiting_approval"
            assert marks.read_text().count("\n") == 1, "one approver released a second run"
            second = await _approve(http, tokens["bob"], execution.id)
            assert second.status_code == 200, second.text
        await _wait_execution(db_url, "succeeded")
        approvals = await all_rows(db_url, Approval, order_by=Approval.id)
        events = await all_rows(db_url, Event, order_by=Event.id)
    finally:
        proc.stop()
    assert [(a.identity, a.voided_at is not None) for a in approvals] == [
        ("alice", True), ("bob", True), ("alice", False), ("bob", False)]
    assert all("retry" in (a.void_reason or "") for a in approvals[:2])
    voided = [e for e in events if e.kind == "approvals.voided"]
    assert voided and "retry" in voided[0].reason and voided[0].data["count"] == 2
    assert marks.read_text().count("\n") == 2
