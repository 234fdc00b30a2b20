"""Drill of serving-latency-regression: a real MLflow, and Prometheus for the latency histogram,
the served versions, the load, CPU throttling and the feature store.

CI logged versions 1 and 2 (without a manifest.json, as CI does) and moved the alias `serving`
to 2; pods served 1, then 2, and p99 went to 450 ms. The precondition is a subquery
(`max_over_time(...[2h:1m])`), so the drill waits for the platform's first minute boundary.
alice approves moving `serving` back to 1; the pods reload it and p99 falls, and the
verification requires it to stay under 250 ms for 5 minutes.

The 5-minute hold runs on a clock 30 times faster (the prometheus.query action's `time`, in
this process, for this test only): the real queries go to Prometheus every 5 s, for 10 s.
Everything else (the query, `within`, the step's timeouts) runs in real time.
"""

from __future__ import annotations

import time

import pytest

import app.actions.prometheus as prometheus_action
from tests.e2e.drills.harness import declare_series, histogram_counters, labels_text, step_of

pytestmark = pytest.mark.e2e

RUNBOOK = "serving-latency-regression"
MODEL = "slow-ranker"
SERVING = {"model": MODEL, "env": "production"}
LATENCY = "ml_serving_request_duration_seconds"
# Version 2 answers 5 % of its requests in 250-500 ms: p99 is 450 ms.
SLOW = histogram_counters(LATENCY, SERVING, per_second=100,
                          shares={0.05: 0.5, 0.1: 0.8, 0.25: 0.95, 0.5: 1.0, 1.0: 1.0})
# Version 1, once the pods reload it, answers every request under 50 ms, and serves the
# requests that queued: enough of them that the 2-minute window's p99 falls at once.
FAST_PER_SECOND = 50_000.0
VERSION_INFO = "ml_serving_model_version_info"
POD = {"namespace": "ml-serving", "pod": f"{MODEL}-7d9f8-x2k4q"}
QUERY_P99 = (f"histogram_quantile(0.99, sum by (le) (rate({LATENCY}_bucket"
             f"{labels_text(SERVING)}[2m])))")

declare_series(
    gauges={f"{VERSION_INFO}{labels_text({**SERVING, 'version': '1'})}": 1,
            f"{VERSION_INFO}{labels_text({**SERVING, 'version': '2'})}": 1},
    counters={
        **SLOW,
        f"ml_serving_requests_total{labels_text({**SERVING, 'code': '200'})}": 100.0,
        f"container_cpu_cfs_throttled_periods_total{labels_text(POD)}": 1.0,  # 10 %
        f"container_cpu_cfs_periods_total{labels_text(POD)}": 10.0,
        **histogram_counters("feature_store_online_request_duration_seconds",
                             {"model": MODEL}, per_second=200,
                             shares={0.01: 0.9, 0.025: 0.995, 0.05: 1.0}),  # p99 24 ms
    })


class FastClock:
    """`time` for the prometheus.query action: its monotonic clock runs `factor` times faster."""

    def __init__(self, factor: float):
        self.factor = factor
        self.origin = time.monotonic()

    def monotonic(self) -> float:
        return self.origin + (time.monotonic() - self.origin) * self.factor


async def test_latency_regression_moves_serving_back_and_verifies_a_held_recovery(
        platform, mlflow, shipped, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in (1, 2):
        await mlflow.create_version(MODEL, {"model.onnx": f"graph {n}".encode() * 300,
                                            "MLmodel": f"flavor: onnx {n}\n".encode()},
                                    with_manifest=False)
        await mlflow.set_alias(MODEL, "serving", str(n))
    await platform.subqueries_see_series()
    # The rollout has ended: no pod serves version 1 any more.
    platform.exporter.remove(f"{VERSION_INFO}{labels_text({**SERVING, 'version': '1'})}")
    monkeypatch.setattr(prometheus_action, "time", FastClock(30))

    async with shipped(platform, mlflow) as runbookd:
        await runbookd.fire({"alertname": "ModelServingLatencyHigh", "severity": "critical",
                             "env": "production", "model": MODEL})
        execution = await runbookd.execution_of(RUNBOOK)
        assert execution["target"] == f"serving:{MODEL}:production"
        rollback = await runbookd.awaiting(execution["id"], "rollback-serving")
        assert rollback["plan"]["summary"] == (
            f"serving of {MODEL} (MLflow): version 2 → version 1 (newest older READY version; "
            "no runbookd history; its artifacts read back as MLflow lists them)")
        assert await mlflow.alias(MODEL, "serving") == "2", "moved before approval"
        await runbookd.approve(execution["id"], "rollback-serving")
        await runbookd.wait_step(execution["id"], "rollback-serving", "running")
        # The pods reload `serving` (version 1): fast answers from now on.
        for bucket in SLOW:
            platform.count(bucket, FAST_PER_SECOND)
        await platform.wait_until(QUERY_P99, lambda v: v < 0.25, what="p99 to fall")
        detail = await runbookd.finished(execution["id"], timeout=90)

    assert detail["status"] == "succeeded", detail["status_reason"]
    deploy = step_of(detail, "check-recent-deploy")
    assert deploy["status"] == "succeeded" and deploy["output"]["worst"]["value"] == 2
    load = step_of(detail, "check-load")  # no traffic a day ago in a fresh Prometheus
    assert load["status"] == "succeeded" and load["output"]["count"] == 0
    throttling = step_of(detail, "check-throttling")
    assert throttling["status"] == "succeeded"
    assert throttling["output"]["worst"]["value"] == pytest.approx(0.1, abs=0.02)
    features = step_of(detail, "check-feature-latency")
    assert features["status"] == "succeeded"
    assert features["output"]["worst"]["value"] == pytest.approx(0.0242, abs=0.002)
    assert step_of(detail, "read-serving")["output"]["version"] == "2"
    done = step_of(detail, "rollback-serving")
    assert done["status"] == "succeeded"
    assert (done["output"]["from"], done["output"]["to"]) == ("2", "1")
    verified = done["output"]["verify"]
    assert verified["holds"] is True and verified["worst"]["value"] < 0.25
    assert verified["attempts"] >= 3, verified  # it held across queries, not once
    assert not [s for s in detail["steps"] if s["kind"] != "step"], "a rollback ran"
    # The effect on MLflow, read through its REST API.
    assert await mlflow.alias(MODEL, "serving") == "1"
