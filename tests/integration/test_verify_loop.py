"""Issue 14, defect 1: a check that can never pass.

serving-latency-regression verified with `stable_for: 5m` while the executor cut every check
attempt at 60 s, so the verification always failed and `on_failure: rollback` moved the model
back to the slow version. `within` and `stable_for` bound the whole verify loop; a timeout
bounds each single query. Scaled down here: `stable_for: 2s` against a 1 s step timeout.
"""

from __future__ import annotations

import pytest

from app.actions.registry import default_registry
from app.engine.runner import run_check
from tests.integration.conftest import PrometheusPeer
from tests.support.action_ctx import make_ctx
from tests.support.engine_catalog import runbook, step
from tests.support.peers import wait_for_prometheus_value

pytestmark = pytest.mark.e2e


async def healthy(prometheus: PrometheusPeer, series: str) -> None:
    prometheus.exporter.set(series, 1)
    await wait_for_prometheus_value(prometheus.url, series, 1)


async def test_a_check_may_hold_longer_than_one_attempt_timeout(prometheus: PrometheusPeer,
                                                                 ) -> None:
    await healthy(prometheus, "verify_loop_check")
    ctx = make_ctx(allow=["127.0.0.1"], prometheus_url=prometheus.url)
    outcome = await run_check(
        default_registry(), ctx, "prometheus.query",
        {"query": "verify_loop_check", "expect": "== 1", "stable_for": "2s",
         "interval": "250ms"},
        within=None, timeout=1.0)
    assert outcome.ok, outcome.summary
    assert outcome.output["attempts"] >= 8


async def test_a_step_verified_with_stable_for_succeeds(make_rig, prometheus: PrometheusPeer,
                                                        ) -> None:
    await healthy(prometheus, "verify_loop_step")
    book = runbook("latency", [
        step("act", timeout="1s", verify={
            "action": "prometheus.query", "within": "10s",
            "with": {"query": "verify_loop_step", "expect": "== 1", "stable_for": "2s",
                     "interval": "250ms"}}),
    ])
    async with make_rig([book], prometheus_url=prometheus.url,
                        http_allowlist=["127.0.0.1"]) as r:
        await r.fire("latency")
        [execution] = await r.wait_for(
            lambda rows: rows and rows[0].status in ("succeeded", "failed"), timeout=30)
        [act] = await r.steps(execution.id)
    assert (execution.status, act.status) == ("succeeded", "succeeded"), act.summary
    assert act.output["verify"]["attempts"] >= 8


async def test_a_check_that_does_not_hold_long_enough_fails_at_its_bound(
        make_rig, prometheus: PrometheusPeer) -> None:
    prometheus.exporter.set("verify_loop_flat", 0)
    await wait_for_prometheus_value(prometheus.url, "verify_loop_flat", 0)
    book = runbook("flat", [
        step("act", timeout="1s", verify={
            "action": "prometheus.query", "within": "2s",
            "with": {"query": "verify_loop_flat", "expect": "== 1", "stable_for": "1s",
                     "interval": "250ms"}}),
    ])
    async with make_rig([book], prometheus_url=prometheus.url,
                        http_allowlist=["127.0.0.1"]) as r:
        await r.fire("flat")
        [execution] = await r.wait_for(
            lambda rows: rows and rows[0].status in ("succeeded", "failed"), timeout=30)
        [act] = await r.steps(execution.id)
    assert (execution.status, act.status) == ("failed", "failed")
    assert "did not hold" in act.summary, act.summary
    assert "timed out" not in act.summary


async def test_a_step_that_waits_by_design_gets_its_wait_on_top_of_its_timeout(
        make_rig, prometheus: PrometheusPeer) -> None:
    """The same rule for a step's own action (airflow.wait, http.request until, a query
    with stable_for): its timeout bounds each request, its declared wait comes on top."""
    await healthy(prometheus, "verify_loop_step_wait")
    book = runbook("waits", [
        step("hold", "prometheus.query", timeout="1s", **{"with": {
            "query": "verify_loop_step_wait", "expect": "== 1", "stable_for": "2s",
            "interval": "250ms"}}),
    ])
    async with make_rig([book], prometheus_url=prometheus.url,
                        http_allowlist=["127.0.0.1"]) as r:
        await r.fire("waits")
        [execution] = await r.wait_for(
            lambda rows: rows and rows[0].status in ("succeeded", "failed"), timeout=30)
        [hold] = await r.steps(execution.id)
    assert (execution.status, hold.status) == ("succeeded", "succeeded"), hold.summary
