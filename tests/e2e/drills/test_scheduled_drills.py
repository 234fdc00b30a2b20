"""A drill of EVERY shipped runbook against the real peers changes nothing on them (issue 16).

One runbookd serves the shipped catalog against real Prometheus, MLflow and Airflow, the fake
Kubernetes API and an embedded registry, set up as the runbooks' `drill:` params expect (the
model `fraud` in MLflow and in the registry, its serving rollout, the DAGs). Each runbook is
drilled by hand with its own drill params, as the scheduler would. Then, on every peer:
MLflow's models, versions, aliases and tags; each DAG's paused flag and number of runs; the
registry's files; the Kubernetes objects (and that runbookd only read them); and the stand-in
commands the runbooks would run: all as before.

The platform is healthy for `fraud`: it serves every series the runbooks read, at values of a
quiet day (a precondition that does not hold is no problem in a drill), and the training DAG
has run once, successfully. So every drill comes out clean, training-pipeline-failed's too:
its drill names the DAG's newest run ("@latest"), whose clear is planned as "no change".
Every step has a verdict, and every read of what exists succeeds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.harness import (
    MLFLOW_API,
    SHIPPED_REMEDIATIONS,
    Platform,
    declare_series,
    histogram_counters,
    labels_text,
)
from tests.support import wait
from tests.support.fake_kube import FakeKube, add_rollout, run_fake_kube

pytestmark = pytest.mark.e2e

MODEL, NS, ROLLOUT = "fraud", "ml-serving", "fraud-serving"
DAGS = ("retrain_model", "recalibrate_model", "feature_backfill")
COMMANDS = ("kubectl", "dataset-quarantine")
# What only the drill's own setup can make true: reads of what it created succeed.
MUST_READ = {"mlflow.get_alias", "mlflow.verify_version", "registry.get_alias",
             "registry.list_versions", "registry.verify", "argo.rollout_status"}
SERVING = {"model": MODEL, "env": "production"}
PARTITION = {"dataset": "transactions", "partition": "2026-11-30"}
FEATURES = {"feature_view": "user_features"}


def requests(variant: str, code: str, **more: str) -> str:
    return "ml_serving_requests_total" + labels_text({**SERVING, "variant": variant,
                                                      **more, "code": code})


# A quiet day for `fraud`, in every series the shipped runbooks read (their drill params).
declare_series(
    gauges={
        "ml_model_artifact_verify_ok" + labels_text({"model": MODEL, "alias": "champion"}): 1,
        "ml_model_drift_score" + labels_text(SERVING): 0.02,
        "ml_prediction_psi" + labels_text(SERVING): 0.03,
        "ml_labels_last_ingested_timestamp_seconds" + labels_text({"model": MODEL}): time.time(),
        "ml_serving_model_version_info" + labels_text({**SERVING, "version": "2"}): 1,
        "ml_feature_last_materialized_timestamp_seconds" + labels_text(FEATURES): time.time(),
        "ml_source_last_updated_timestamp_seconds" + labels_text(FEATURES): time.time(),
        "ml_dataset_validation_failures_total" + labels_text(PARTITION): 0,
        "ml_dataset_rows_total" + labels_text(PARTITION): 100_000,
    },
    counters={
        requests("canary", "200"): 5.0, requests("canary", "500"): 0.0,
        requests("challenger", "200", version="2"): 5.0,
        requests("challenger", "500", version="2"): 0.0,
        **histogram_counters("ml_serving_request_duration_seconds", SERVING, per_second=5.0,
                             shares={0.1: 0.9, 0.25: 1.0}),
    })
# What a healthy platform has in Airflow: a run of the training DAG, which succeeded.
TRAINED = ("retrain_model", "manual__2026-11-30T06:00:00+00:00")

SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(SHIPPED_REMEDIATIONS.glob("*.yaml"))]


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, Path]]:
    async with run_fake_kube() as fake:
        add_rollout(fake, NS, ROLLOUT)
        yield fake, fake.kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture
def commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-ins for the commands the runbooks run, first on PATH; each leaves a mark."""
    bindir, marks = tmp_path / "bin", tmp_path / "ran"
    bindir.mkdir()
    for name in COMMANDS:
        stand_in = bindir / name
        stand_in.write_text(f"#!{sys.executable}\nimport sys\n"
                            f"open({str(marks)!r}, 'a').write(' '.join(sys.argv) + '\\n')\n")
        stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return marks


async def mlflow_state(url: str) -> Any:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        models = (await http.get(f"{MLFLOW_API}/registered-models/search",
                                 params={"max_results": 1000})).json()
        versions = (await http.get(f"{MLFLOW_API}/model-versions/search",
                                   params={"max_results": 10000})).json()
    return models, versions


async def airflow_state(airflow: Any) -> dict[str, Any]:
    state = {}
    async with airflow.peer.api() as http:
        for dag in DAGS:
            found = (await http.get(f"/api/v2/dags/{dag}")).json()
            runs = (await http.get(f"/api/v2/dags/{dag}/dagRuns", params={"limit": 1})).json()
            state[dag] = (found["is_paused"], runs["total_entries"])
    return state


def files_state(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


async def test_a_drill_of_every_shipped_runbook_changes_nothing(
        platform: Platform, mlflow: Any, airflow: Any, shipped: Any, registry_dir: Path,
        kube: tuple[FakeKube, Path], commands: Path) -> None:
    fake, kubeconfig = kube
    files = {"model.pkl": b"weights" * 300, "MLmodel": b"flavor: sklearn\n"}
    for n in (1, 2):
        await mlflow.create_version(MODEL, {**files, "model.pkl": b"v%d" % n * 300})
        ModelRegistry(registry_dir).add_version(MODEL, str(n), {**files,
                                                                "model.pkl": b"v%d" % n * 300})
    for alias in ("champion", "serving"):
        await mlflow.set_alias(MODEL, alias, "2")
    ModelRegistry(registry_dir).set_alias(MODEL, "champion", "1")
    ModelRegistry(registry_dir).set_alias(MODEL, "champion", "2")
    await airflow.parsed(*DAGS)
    if await airflow.peer.dag_run(*TRAINED) is None:
        await airflow.peer.trigger(*TRAINED)
    assert await airflow.peer.wait_for_state(*TRAINED) == "success"
    await platform.subqueries_see_series()

    before = (await mlflow_state(mlflow.url), await airflow_state(airflow),
              await asyncio.to_thread(files_state, registry_dir), repr(fake.objects))
    async with shipped(platform, mlflow, airflow, kubeconfig=kubeconfig,
                       command_allowlist=list(COMMANDS)) as runbookd:
        started = {}
        for book in SHIPPED:
            answer = await runbookd.http.post(
                f"/api/v1/runbooks/{book['id']}/drills",
                headers={"Authorization": f"Bearer {runbookd.tokens['rita']}"}, json={})
            assert answer.status_code == 201, f"{book['id']}: {answer.text}"
            started[book["id"]] = answer.json()["id"]

        async def drill_of(runbook_id: str) -> dict[str, Any]:
            async def ended() -> dict[str, Any] | None:
                body = await runbookd.api(f"/api/v1/runbooks/{runbook_id}/drills/"
                                          f"{started[runbook_id]}")
                return body if body["phase"] != "running" else None

            return await wait.eventually(ended, timeout=120, interval=0.5,
                                         what=f"the drill of {runbook_id}")

        drills = dict(zip(started, await asyncio.gather(*map(drill_of, started)),
                          strict=True))
        executions = (await runbookd.api("/api/v1/executions?drill=true&limit=100"))["items"]
    after = (await mlflow_state(mlflow.url), await airflow_state(airflow),
             await asyncio.to_thread(files_state, registry_dir), repr(fake.objects))

    # Nothing changed on any peer, and nothing ran that is not a read.
    assert after[0] == before[0], "MLflow's models, versions, aliases or tags changed"
    assert after[1] == before[1], "an Airflow DAG was paused, unpaused or triggered"
    assert after[2] == before[2], "the embedded registry's files changed"
    assert after[3] == before[3], "a Kubernetes object changed"
    assert {call.method for call in fake.calls} <= {"GET"}
    ran = await asyncio.to_thread(lambda: commands.read_text() if commands.exists() else "")
    assert ran == "", f"a command ran: {ran}"
    assert len(executions) == len(SHIPPED)
    assert all(e["dry_run"] and e["status"] == "succeeded" for e in executions)

    report = []
    for book in SHIPPED:
        drill = drills[book["id"]]
        verdicts = drill["verdicts"]
        report += [f"{book['id']}: {drill['problems']} problems"] + [
            f"  {v['step']} [{v['kind']}] {v['action']}: {v['reason'][:160]}"
            for v in verdicts if not v["ok"]]
        assert drill["phase"] == "finished"
        assert [v["step"] for v in verdicts if v["kind"] != "check"] == [
            s["id"] for s in book["steps"]], book["id"]
        assert len([v for v in verdicts if v["kind"] == "check"]) == len(
            book.get("preconditions", []))
        for v in verdicts:
            # The shipped catalog itself holds up: every template renders, every call's
            # parameters validate, and what the setup created reads back.
            assert "invalid parameters" not in v["reason"], (book["id"], v)
            assert "does not render" not in v["reason"], (book["id"], v)
            assert v["ok"] or v["action"] not in MUST_READ, (book["id"], v)
    print("\n".join(report))
    found = {rid: [v["step"] for v in d["verdicts"] if not v["ok"]] for rid, d in drills.items()}
    assert {rid: steps for rid, steps in found.items() if steps} == {}, "\n".join(report)
    # The training drill planned the clear of the newest run (another test's run of the DAG
    # may be newer than ours), named as such, and read it.
    training = {v["step"]: v["reason"] for v in drills["training-pipeline-failed"]["verdicts"]}
    newest = rf"run \S+ \(the newest of {TRAINED[0]}\) on "
    assert re.search(newest, training["rerun-failed-tasks"]), training
    assert re.search(newest, training["wait-for-rerun"]), training
