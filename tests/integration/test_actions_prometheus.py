"""prometheus.query against a real Prometheus scraping a gauge the test sets."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.actions.base import ActionContext, ActionFailed
from app.actions.prometheus import PrometheusQuery
from tests.integration.conftest import PrometheusPeer
from tests.support.action_ctx import make_ctx, run_action
from tests.support.peers import wait_for_prometheus_empty, wait_for_prometheus_value

ACTION = PrometheusQuery()
pytestmark = pytest.mark.e2e


def ctx(prometheus: PrometheusPeer, **kwargs: object) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], prometheus_url=prometheus.url, **kwargs)


async def set_and_wait(prometheus: PrometheusPeer, series: str, value: float) -> None:
    prometheus.exporter.set(series, value)
    await wait_for_prometheus_value(prometheus.url, series, value)


async def test_expectation_holds_for_every_sample(prometheus: PrometheusPeer) -> None:
    for model, value in (("a", 0.01), ("b", 0.03)):
        await set_and_wait(prometheus, f'error_rate{{model="{model}"}}', value)
    result = await run_action(ACTION, ctx(prometheus), query='error_rate{model=~"a|b"}',
                              expect="< 0.05")
    assert result.output["holds"] is True
    assert result.output["count"] == 2
    assert result.output["worst"]["labels"]["model"] == "b"
    assert result.output["worst"]["value"] == 0.03


async def test_breach_reports_the_worst_sample(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, 'drift{model="x"}', 0.02)
    await set_and_wait(prometheus, 'drift{model="y"}', 0.4)
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx(prometheus), query="drift", expect="< 0.1")
    message = failed.value.message
    assert message.startswith("expectation 'drift' < 0.1 did not hold: does not hold for 2 "
                              "sample(s), worst {")
    assert 'model="y"} = 0.4' in message
    assert failed.value.output["worst"]["value"] == 0.4


async def test_scalar_queries_work(prometheus: PrometheusPeer) -> None:
    result = await run_action(ACTION, ctx(prometheus), query="scalar(vector(3))", expect="== 3")
    assert result.output["values"] == [{"labels": {}, "value": 3.0}]


async def test_within_waits_until_it_holds(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "queue_depth", 500)

    async def recover() -> None:
        await asyncio.sleep(1)
        prometheus.exporter.set("queue_depth", 10)

    recovery = asyncio.create_task(recover())
    started = time.monotonic()
    result = await run_action(ACTION, ctx(prometheus), query="queue_depth", expect="<= 100",
                              hold="20s", interval="250ms")
    await recovery
    assert result.output["attempts"] > 1
    assert time.monotonic() - started < 10


async def test_within_gives_up_when_time_runs_out(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "stuck_gauge", 7)
    started = time.monotonic()
    with pytest.raises(ActionFailed, match=r"did not hold within 1s: .* = 7 \(after \d+ "):
        await run_action(ACTION, ctx(prometheus), query="stuck_gauge", expect="== 0",
                         within="1s", interval="200ms")
    assert 0.9 < time.monotonic() - started < 3


async def test_stable_for_needs_the_value_to_stay(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "healthy", 1)
    result = await run_action(ACTION, ctx(prometheus), query="healthy", expect="== 1",
                              stable_for="1s", interval="250ms")
    assert result.output["attempts"] >= 5


async def test_empty_result_fail_or_pass(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "flapping_series", 1)
    prometheus.exporter.remove("flapping_series")
    await wait_for_prometheus_empty(prometheus.url, "flapping_series")
    with pytest.raises(ActionFailed, match=r"did not hold: no samples \(empty: fail\)"):
        await run_action(ACTION, ctx(prometheus), query="flapping_series", expect="> 0")
    passed = await run_action(ACTION, ctx(prometheus), query="flapping_series", expect="> 0",
                              empty="pass")
    assert passed.output["count"] == 0


async def test_bad_query_fails_at_once_with_prometheus_reason(prometheus: PrometheusPeer,
                                                              ) -> None:
    started = time.monotonic()
    with pytest.raises(ActionFailed, match=r"Prometheus rejected the query 'rate\(' \(400\): "
                                           r".*parse error"):
        await run_action(ACTION, ctx(prometheus), query="rate(", expect="> 0", within="30s")
    assert time.monotonic() - started < 2
    with pytest.raises(ActionFailed, match="range vector"):
        await run_action(ACTION, ctx(prometheus), query="up[1m]", expect="> 0")


async def test_unreachable_prometheus_names_the_host() -> None:
    context = make_ctx(allow=["127.0.0.1"], prometheus_url="http://127.0.0.1:9")
    with pytest.raises(ActionFailed, match=r"prometheus.query on 127\.0\.0\.1:9: could not "
                                           r"reach 127\.0\.0\.1:9"):
        await run_action(ACTION, context, query="up", expect="== 1", within="500ms",
                         interval="200ms")
    refused = make_ctx(allow=["prometheus.internal"], prometheus_url="http://127.0.0.1:9")
    with pytest.raises(ActionFailed, match=r"host '127\.0\.0\.1' is not on the HTTP allow-list"):
        await run_action(ACTION, refused, query="up", within="1m")


async def test_dry_run_queries_once_without_waiting(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "dry_gauge", 5)
    started = time.monotonic()
    result = await run_action(ACTION, ctx(prometheus, dry_run=True), query="dry_gauge",
                              expect="< 1", within="5m")
    assert time.monotonic() - started < 2
    assert result.summary == (
        "dry run (read-only, queried once): would query 'dry_gauge' expecting < 1, "
        "re-querying every 5s for up to 5m; now: does not hold for 1 sample(s), worst "
        '{__name__="dry_gauge",instance="' + prometheus.exporter.target + '",job="test"} = 5')


async def test_waiting_is_cancellable(prometheus: PrometheusPeer) -> None:
    await set_and_wait(prometheus, "never_ok", 1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(ACTION, ctx(prometheus), query="never_ok",
                                          expect="== 0", within="1h"), 0.5)
