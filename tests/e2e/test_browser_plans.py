"""The shipped runbooks' risky steps show concrete plans, in a real browser.

For every runbook in remediations/ that has a risky step, a real runbookd serves that runbook
with each safe step, precondition and safe-step check replaced by a `noop` whose output is what
later templates read (`steps['read-champion'].output.version`), and every risky step exactly as
shipped. That isolates the risky steps' plans from the safe steps' peers (Prometheus, Airflow
reads), which other suites drill. What the plans themselves read is real: the embedded
registry, a real MLflow server, a real Airflow 3 (the airflow.* plans read its DAGs and runs),
the fake Kubernetes API (the argo.* plans read the Rollout), the HTTP allow-list with the
Airflow host and its secret (an http plan sends nothing), and fake kubectl and
dataset-quarantine commands on the command allow-list.

Each execution waits for approval on its first risky step. Headless Chromium, signed in as an
approver, reads the plan on the execution page (and, for model-drift, on the approval-link
page) and saves a full-page screenshot to test-artifacts/screenshots/plans/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import re
import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.actions._support import json_sha256
from app.actions.embedded_registry import ModelRegistry, create_demo_registry
from app.actions.mlflow import MlflowSetAlias
from tests.e2e.test_browser import sign_in
from tests.support.action_ctx import make_ctx, run_action
from tests.support.airflow import AirflowPeer, run_airflow
from tests.support.auth import WEBHOOK_HEADERS
from tests.support.binaries import need_module
from tests.support.fake_kube import add_rollout, run_fake_kube
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.peers import Peer, create_mlflow_version, run_mlflow
from tests.support.web import SCREENSHOTS, launched_chromium

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PLANS = SCREENSHOTS / "plans"
AIRFLOW = "https://airflow.ml.internal/api/v1/dags"
AIRFLOW_TOKEN = "airflow-token-for-the-plans-test"
QUARANTINE = "dataset-quarantine"
AIRFLOW_SECRET = "airflow"
VIEWPORT = {"width": 1280, "height": 800}
# `steps['read-champion'].output.version` and the like, in any template of a runbook.
OUTPUT_REF = re.compile(r"""steps\[['"]([a-z0-9-]+)['"]\]\.output\.([A-Za-z_][A-Za-z0-9_]*)""")
SETTLED = {"awaiting_approval", "failed", "needs_attention", "paused", "cancelled", "rejected",
           "expired", "succeeded"}


@dataclass(frozen=True)
class World:
    """What an expected plan may name besides the execution: the fake commands, the hosts of
    MLflow and Airflow."""

    execution_id: int
    kubectl: str
    mlflow_host: str
    quarantine: str = ""
    airflow_host: str = ""


@dataclass(frozen=True)
class Case:
    runbook: str
    labels: dict[str, str]
    # The plan's summary and the part of its `resolved` that must hold, for this world.
    expect: Callable[[World], tuple[str, dict[str, Any]]]
    # Outputs of the safe steps (now noops) that the risky steps' templates read.
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    mlflow: bool = False
    airflow: bool = False
    # The plan reads a Rollout from the fake Kubernetes API (see `kube_rollout`).
    kube: bool = False
    # False: the summary goes on after the expected text (it lists the versions it skipped).
    complete: bool = True


def alias_read(model: str, alias: str, version: str) -> dict[str, Any]:
    """What registry.get_alias and mlflow.get_alias return, for a noop to stand in for them."""
    return {"model": model, "alias": alias, "version": version}


def http_plan(method: str, url: str, body: Any) -> tuple[str, dict[str, Any]]:
    digest = json_sha256(body)
    assert digest is not None
    shown = json.dumps(body, sort_keys=True, ensure_ascii=False)
    if len(shown) > 160:
        shown = shown[:160] + f"… (sha256 {digest[:12]})"
    return (f"{method} {url} with {shown}",
            {"method": method, "url": url, "body_sha256": digest})


def registry_plan(model: str, alias: str, before: str, after: str, *, why: str = "",
                  ) -> tuple[str, dict[str, Any]]:
    return (f"{alias} of {model}: version {before} → version {after}{why}",
            {"model": model, "alias": alias, "from": before, "to": after})


LAST_GOOD = " (the last version that held it; its manifest verifies)"
MLFLOW_LISTED = " (the last version that held it; its artifacts read back as MLflow lists them)"
# Airflow refuses a triggered run id that looks scheduled (scheduled__...): 400.
RUN_ID = "failed_2026-11-26T06:00:00+00:00"
# The Airflow cases' DAGs (tests/airflow_dags/): a run of FAILING that failed, as RUN_ID; a
# retraining DAG to pause.
FAILING, RETRAIN = "runbookd_fails", "retrain_drill_stale"
# The canary case's Rollout: its stable and canary ReplicaSets.
STABLE_RS, CANARY_RS = "6b7f9c4d5", "7c8d9e0f1"
# The recalibration's conf, as its plan shows it (compact JSON, sorted keys).
RECALIBRATE_CONF = json.dumps({"model": "credit-v7", "env": "production", "base_version": "3",
                               "window": "7d", "promote_alias": "champion",
                               "reason": "mild-drift"}, sort_keys=True)

CASES = [
    Case("canary-promotion-failed",
         {"model": "fraud-v4", "env": "production", "rollout": "fraud-v4-serving",
          "namespace": "ml-serving"},
         lambda w: ("abort rollout ml-serving/fraud-v4-serving (canary at step 1/5, 20% "
                    f"traffic) → all traffic to stable {STABLE_RS}",
                    {"namespace": "ml-serving", "name": "fraud-v4-serving",
                     "stable": STABLE_RS, "canary": CANARY_RS, "abort": True}),
         outputs={"read-champion": alias_read("fraud-v4", "champion", "2")}, kube=True),
    Case("input-data-quality",
         {"dataset": "transactions_daily", "partition": "2026-11-26"},
         lambda w: ("argv: " + shlex.join([QUARANTINE, "add", "--dataset=transactions_daily",
                                           "--partition=2026-11-26",
                                           f"--reason=runbookd execution {w.execution_id}"])
                    + f" ({QUARANTINE} is {w.quarantine})",
                    {"executable": w.quarantine})),
    Case("model-artifact-corrupt", {"model": "ranker-v5", "alias": "champion"},
         lambda w: (registry_plan("ranker-v5", "champion", "3", "1", why=LAST_GOOD)[0]
                    + "; skipped version 2 (fails verification: ",
                    registry_plan("ranker-v5", "champion", "3", "1")[1]),
         complete=False),
    Case("model-artifact-corrupt-mlflow", {"model": "ranker-mlflow", "alias": "champion"},
         lambda w: (f"champion of ranker-mlflow (MLflow): version 3 → version 2{MLFLOW_LISTED}",
                    {"mlflow": w.mlflow_host, "model": "ranker-mlflow", "alias": "champion",
                     "from": "3", "to": "2"}),
         outputs={"read-alias": alias_read("ranker-mlflow", "champion", "3")}, mlflow=True),
    Case("model-drift-mlflow", {"model": "fraud-v3", "env": "production"},
         lambda w: (f"champion of fraud-v3 (MLflow): version 3 → version 2{MLFLOW_LISTED}",
                    {"mlflow": w.mlflow_host, "model": "fraud-v3", "alias": "champion",
                     "from": "3", "to": "2"}),
         outputs={"read-champion": alias_read("fraud-v3", "champion", "3")}, mlflow=True),
    Case("model-drift-recalibrate", {"model": "credit-v7", "env": "production"},
         lambda w: (f"trigger recalibrate_model with conf {RECALIBRATE_CONF} as run "
                    f"runbookd-{w.execution_id}-recalibrate on {w.airflow_host}",
                    {"airflow": w.airflow_host, "dag_id": "recalibrate_model",
                     "dag_run_id": f"runbookd-{w.execution_id}-recalibrate"}),
         outputs={"read-champion": alias_read("credit-v7", "champion", "3")}, airflow=True),
    Case("model-staged-promotion", {"model": "pricing-v2", "version": "3"},
         lambda w: ("challenger of pricing-v2 (MLflow): (unset) → version 3",
                    {"mlflow": w.mlflow_host, "model": "pricing-v2", "alias": "challenger",
                     "from": None, "to": "3"}),
         outputs={"read-champion": alias_read("pricing-v2", "champion", "2")}, mlflow=True),
    Case("model-drift", {"model": "fraud-v3", "env": "production"},
         lambda w: registry_plan("fraud-v3", "champion", "3", "2", why=LAST_GOOD),
         outputs={"read-champion": alias_read("fraud-v3", "champion", "3")}),
    Case("prediction-skew", {"model": "churn-v2", "env": "production"},
         lambda w: ("shadow of churn-v2: (unset) → version 3",
                    {"model": "churn-v2", "alias": "shadow", "from": None, "to": "3"}),
         outputs={"read-champion": alias_read("churn-v2", "champion", "3")}),
    Case("registry-quick-rollback", {"model": "demo-model"},
         lambda w: registry_plan("demo-model", "champion", "2", "1", why=LAST_GOOD),
         outputs={"read-alias": alias_read("demo-model", "champion", "2")}),
    Case("registry-quick-rollback-mlflow", {"model": "demo-mlflow", "alias": "champion"},
         lambda w: (f"champion of demo-mlflow (MLflow): version 2 → version 1{MLFLOW_LISTED}",
                    {"mlflow": w.mlflow_host, "model": "demo-mlflow", "alias": "champion",
                     "from": "2", "to": "1"}),
         outputs={"read-alias": alias_read("demo-mlflow", "champion", "2")}, mlflow=True),
    Case("serving-latency-regression", {"model": "search-ranker", "env": "production"},
         lambda w: (f"serving of search-ranker (MLflow): version 2 → version 1{MLFLOW_LISTED}",
                    {"mlflow": w.mlflow_host, "model": "search-ranker", "alias": "serving",
                     "from": "2", "to": "1"}),
         outputs={"read-serving": alias_read("search-ranker", "serving", "2")}, mlflow=True),
    Case("stale-feature-store",
         {"feature_view": "user_transactions_7d", "retrain_dag": RETRAIN},
         lambda w: (f"pause DAG {RETRAIN} on {w.airflow_host}: unpaused → paused",
                    {"airflow": w.airflow_host, "dag_id": RETRAIN, "from": False,
                     "to": True}),
         airflow=True),
    Case("training-pipeline-failed", {"dag_id": FAILING, "run_id": RUN_ID},
         lambda w: (f"clear 1 failed task instance(s) of run {RUN_ID} of {FAILING} on "
                    f"{w.airflow_host}: broken (the run goes back to queued)",
                    {"airflow": w.airflow_host, "dag_id": FAILING, "dag_run_id": RUN_ID,
                     "tasks": ["broken"]}),
         airflow=True),
]


@dataclass(frozen=True)
class Gap:
    """A shipped risky step known to fail its plan here: the error it fails with, and why."""

    error: str
    reason: str


# The test still asserts the plan a known gap should show, and fails if the step fails in any
# other way; once the plan is made, remove the entry. (input-data-quality was one: it named an
# absolute executable a test cannot create; it now names dataset-quarantine, found on PATH.)
KNOWN_GAPS: dict[str, Gap] = {}


def shipped(runbook_id: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "remediations" / f"{runbook_id}.yaml").read_text())


def risky_runbooks() -> list[str]:
    return sorted(path.stem for path in (REPO / "remediations").glob("*.yaml")
                  if any(s.get("risk") == "risky" for s in shipped(path.stem)["steps"]))


def stand_in(check: dict[str, Any], output: dict[str, Any] | None = None) -> dict[str, Any]:
    """A check or step body whose action is a noop saying what it stands in for."""
    body = {"action": "noop", "with": {"message": f"stand-in for {check['action']} (this test "
                                                  "replaces safe steps)"}}
    if output:
        body["with"]["output"] = output
    return body


def isolate(book: dict[str, Any], outputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The runbook with safe steps, preconditions and safe-step checks as noops, and every
    risky step exactly as shipped."""
    out = copy.deepcopy(book)
    out["preconditions"] = [{**p, **stand_in(p)} for p in book.get("preconditions", [])]
    steps = []
    for step in book["steps"]:
        if step.get("risk") == "risky":
            steps.append(copy.deepcopy(step))
            continue
        replaced = {**step, **stand_in(step, outputs.get(step["id"]))}
        for part in ("verify", "rollback"):
            if part in step:
                replaced[part] = {**step[part], **stand_in(step[part])}
        replaced.pop("retries", None)
        steps.append(replaced)
    out["steps"] = steps
    return out


def read_outputs(book: dict[str, Any]) -> set[tuple[str, str]]:
    """(step, key) of every earlier step's output a template of the runbook reads."""
    return set(OUTPUT_REF.findall(yaml.safe_dump(book["steps"])))


def test_every_runbook_with_a_risky_step_has_a_case() -> None:
    assert sorted(c.runbook for c in CASES) == risky_runbooks()
    assert len(CASES) >= 11
    for case in CASES:
        book = shipped(case.runbook)
        safe = {s["id"] for s in book["steps"] if s.get("risk") != "risky"}
        # Every output of a replaced step that a template reads is one the noop returns.
        needed = {(sid, key) for sid, key in read_outputs(book) if sid in safe}
        provided = {(sid, key) for sid, out in case.outputs.items() for key in out}
        assert needed <= provided, (case.runbook, needed - provided)
        params = book.get("params", {})
        for name, spec in params.items():
            label = spec["from"].removeprefix("labels.")
            if label in case.labels:
                value = case.labels[label]
                assert (re.fullmatch(spec["pattern"], value) if "pattern" in spec
                        else value in spec["allowed"]), (case.runbook, name, value)
            else:
                assert "default" in spec, (case.runbook, name)
        isolated = isolate(book, case.outputs)
        for before, after in zip(book["steps"], isolated["steps"], strict=True):
            if before.get("risk") == "risky":
                assert after == before
            else:
                assert after["action"] == "noop" and after["id"] == before["id"]
        assert all(p["action"] == "noop" for p in isolated["preconditions"])


def build_registry(root: Path) -> None:
    """The embedded registry the registry.* plans read: each alert's model, with history."""
    create_demo_registry(root)  # demo-model: champion 1 → 2
    registry = ModelRegistry(root)
    for model in ("fraud-v3", "churn-v2", "credit-v7", "ranker-v5", "fraud-v4"):
        for version in ("1", "2", "3"):
            registry.add_version(model, version, {
                "model.bin": f"{model} weights, version {version}\n".encode() * 64,
                "config.json": json.dumps({"version": int(version)}).encode()})
        for version in ("1", "2", "3"):
            registry.set_alias(model, "champion", version, reason=f"release {version}")
    # The corrupt-artifact alert: the champion's files no longer match, nor version 2's.
    for version in ("2", "3"):
        (registry.version_dir("ranker-v5", version) / "model.bin").write_bytes(b"truncated")


@dataclass(frozen=True)
class MlflowPeer:
    url: str
    host: str


@pytest.fixture(scope="module")
async def mlflow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MlflowPeer]:
    """One MLflow server for the module, holding the models the mlflow.* plans read. Plans
    change nothing, so every test reads the same models."""
    need_module("mlflow")
    workdir = tmp_path_factory.mktemp("mlflow")
    async with run_mlflow(workdir) as peer:
        await asyncio.gather(
            register(peer, workdir, "fraud-v3", "champion", 3),
            register(peer, workdir, "search-ranker", "serving", 2),
            register(peer, workdir, "ranker-mlflow", "champion", 3),
            register(peer, workdir, "demo-mlflow", "champion", 2),
            # A candidate (version 3) beside the champion (2), for the staged promotion.
            register(peer, workdir, "pricing-v2", "champion", 2, unaliased=1))
        yield MlflowPeer(url=peer.url, host=f"127.0.0.1:{peer.port}")


async def register(peer: Peer, workdir: Path, model: str, alias: str, count: int, *,
                   unaliased: int = 0) -> None:
    """`count` versions of `model`; runbookd's own set_alias moves `alias` through them in
    order, recording the history that rollback_alias walks back; then `unaliased` newer
    versions that no alias points at."""
    host = f"127.0.0.1:{peer.port}"
    ctx = make_ctx(allow=[host], mlflow_url=peer.url, execution_id=None, step_id=None)
    for n in range(1, count + unaliased + 1):
        version, _ = await asyncio.to_thread(
            create_mlflow_version, peer.url, model,
            {"weights.bin": f"{model} weights {n}".encode() * 64}, workdir=workdir)
        if n <= count:
            await run_action(MlflowSetAlias(), ctx, model=model, alias=alias, version=version)


@dataclass(frozen=True)
class AirflowPlans:
    """The module's Airflow: the settings that point runbookd at it, and its host."""

    peer: AirflowPeer

    @property
    def host(self) -> str:
        return self.peer.host

    def settings(self) -> dict[str, Any]:
        return {"airflow_url": self.peer.url, "airflow_auth_secret": AIRFLOW_SECRET,
                "secrets": {AIRFLOW_SECRET: f"{self.peer.username}:{self.peer.password}"}}


@pytest.fixture(scope="module")
async def airflow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AirflowPlans]:
    """One Airflow 3 for the module, holding what the airflow.* plans read: a failed run of
    FAILING (RUN_ID) and the unpaused DAG RETRAIN. Plans change nothing, so every test reads
    the same ones."""
    async with run_airflow(tmp_path_factory.mktemp("airflow")) as peer:
        await peer.trigger(FAILING, RUN_ID)
        assert await peer.wait_for_state(FAILING, RUN_ID) == "failed"
        async with peer.api() as http:
            assert (await http.get(f"/api/v2/dags/{RETRAIN}")).status_code == 200
        assert not await peer.is_paused(RETRAIN)
        yield AirflowPlans(peer)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium, launched once for the module."""
    async with launched_chromium() as launched:
        yield launched


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A `kubectl` first on PATH that only prints its arguments (a plan never runs it)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubectl = bindir / "kubectl"
    kubectl.write_text('#!/bin/sh\necho "fake kubectl $*"\n')
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return str(kubectl)


@pytest.fixture
async def kube_rollout(tmp_path: Path) -> AsyncIterator[Path]:
    """The fake Kubernetes API holding the canary case's Rollout, paused at canary step 1/5
    with 20% of the traffic; the kubeconfig that points runbookd at it."""
    async with run_fake_kube() as fake:
        add_rollout(fake, "ml-serving", "fraud-v4-serving", stable=STABLE_RS,
                    canary=CANARY_RS, step=1, weight=20, paused=True)
        yield fake.kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def fake_quarantine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A `dataset-quarantine` first on PATH, allow-listed by name as the runbook's header says
    (a plan never runs it)."""
    bindir = tmp_path / "quarantine-bin"
    bindir.mkdir()
    command = bindir / QUARANTINE
    command.write_text('#!/bin/sh\necho "fake dataset-quarantine $*"\n')
    command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return str(command)


async def fire(r: Any, case: Case) -> None:
    labels = {"alertname": case.runbook, **case.labels}
    alert = am_alert(hashlib.sha256(case.runbook.encode()).hexdigest()[:16], labels=labels,
                     annotations={"summary": f"{case.runbook} on "
                                             f"{', '.join(case.labels.values())}"})
    answer = await r.http.post("/webhooks/alertmanager", content=go_json(am_body(alert)),
                               headers=WEBHOOK_HEADERS)
    assert answer.status_code == 200, answer.text


def first_risky(book: dict[str, Any]) -> str:
    return next(s["id"] for s in book["steps"] if s.get("risk") == "risky")


def params(*, mlflow: bool = False, airflow: bool = False, kube: bool = False) -> list[Any]:
    return [pytest.param(c, id=c.runbook) for c in CASES
            if (c.mlflow, c.airflow, c.kube) == (mlflow, airflow, kube)]


# Plans read the registry, MLflow, Airflow and the allow-list, not the database: SQLite is
# enough.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", params())
async def test_the_first_risky_step_shows_its_concrete_plan(
        case: Case, make_rig: Callable[..., Any], tokens: dict[str, str], tmp_path: Path,
        browser: Any, fake_kubectl: str, fake_quarantine: str) -> None:
    await check_plan(case, make_rig, tokens, tmp_path, browser, kubectl=fake_kubectl,
                     quarantine=fake_quarantine)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", params(mlflow=True))
async def test_the_first_risky_mlflow_step_shows_its_concrete_plan(
        case: Case, make_rig: Callable[..., Any], tokens: dict[str, str], tmp_path: Path,
        browser: Any, fake_kubectl: str, mlflow: MlflowPeer) -> None:
    await check_plan(case, make_rig, tokens, tmp_path, browser, kubectl=fake_kubectl,
                     mlflow=mlflow)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", params(airflow=True))
async def test_the_first_risky_airflow_step_shows_its_concrete_plan(
        case: Case, make_rig: Callable[..., Any], tokens: dict[str, str], tmp_path: Path,
        browser: Any, fake_kubectl: str, airflow: AirflowPlans) -> None:
    await check_plan(case, make_rig, tokens, tmp_path, browser, kubectl=fake_kubectl,
                     airflow=airflow)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("case", params(kube=True))
async def test_the_first_risky_kubernetes_step_shows_its_concrete_plan(
        case: Case, make_rig: Callable[..., Any], tokens: dict[str, str], tmp_path: Path,
        browser: Any, fake_kubectl: str, kube_rollout: Path) -> None:
    await check_plan(case, make_rig, tokens, tmp_path, browser, kubectl=fake_kubectl,
                     kubeconfig=kube_rollout)


async def check_plan(case: Case, make_rig: Callable[..., Any], tokens: dict[str, str],
                     tmp_path: Path, browser: Any, *, kubectl: str, quarantine: str = "",
                     mlflow: MlflowPeer | None = None,
                     airflow: AirflowPlans | None = None,
                     kubeconfig: Path | None = None) -> None:
    """Fire the case's alert at a runbookd serving its isolated runbook, then read the plan
    of the first risky step in the database and on the execution page, as an approver."""
    from playwright.async_api import expect

    book = shipped(case.runbook)
    risky = first_risky(book)
    registry = tmp_path / "registry"
    build_registry(registry)
    settings: dict[str, Any] = {
        "registry_dir": registry,
        "http_allowlist": ["airflow.ml.internal"],
        "secrets": {"airflow_token": AIRFLOW_TOKEN},
        "command_allowlist": ["kubectl", QUARANTINE],
    }
    if mlflow is not None:
        settings.update(mlflow_url=mlflow.url,
                        http_allowlist=[*settings["http_allowlist"], mlflow.host])
    mlflow_host = mlflow.host if mlflow is not None else ""
    if airflow is not None:
        settings.update(airflow.settings(),
                        http_allowlist=[*settings["http_allowlist"], airflow.host],
                        secrets={**settings["secrets"], **airflow.settings()["secrets"]})
    airflow_host = airflow.host if airflow is not None else ""
    if kubeconfig is not None:
        settings.update(kubeconfig=kubeconfig,
                        http_allowlist=[*settings["http_allowlist"], "127.0.0.1"])

    async with make_rig([isolate(book, case.outputs)], **settings) as r:
        await fire(r, case)
        [ex] = await r.wait_for(lambda rows: bool(rows) and rows[0].status in SETTLED,
                                timeout=60)
        runs = {s.step_id: s for s in await r.steps(ex.id) if s.kind == "step"}
        summary, resolved = case.expect(World(ex.id, kubectl, mlflow_host, quarantine,
                                              airflow_host))

        context = await browser.new_context(viewport=VIEWPORT)
        try:
            page = await context.new_page()
            await page.goto(f"{r.server.url}/executions/{ex.id}")
            await sign_in(page, tokens["alice"])
            await expect(page).to_have_title(f"Execution #{ex.id} · runbookd")
            PLANS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(PLANS / f"{case.runbook}.png"), full_page=True)

            gap = KNOWN_GAPS.get(case.runbook)
            if gap is not None and gap.error in (runs[risky].error or ""):
                pytest.xfail(f"{gap.reason}; the step failed with: {runs[risky].error}")
            # What the approver must see, whatever the page looked like above.
            assert ex.status == "awaiting_approval", (ex.status, ex.status_reason)
            run = runs[risky]
            assert run.status == "awaiting_approval", (run.status, run.error)
            assert run.plan is not None
            assert run.plan["summary"].startswith(summary), run.plan["summary"]
            if case.complete:
                assert run.plan["summary"] == summary
            assert run.plan["resolved"].items() >= resolved.items(), run.plan["resolved"]
            assert "previous" not in json.dumps(run.plan["resolved"])

            card = page.locator(f"#step-{risky}")
            await expect(card.locator(".status").first).to_have_text("awaiting approval")
            shown = card.locator("[data-plan]")
            await expect(shown).to_have_text(run.plan["summary"])
            text = await shown.inner_text()
            assert "{{" not in text and "{%" not in text
            assert not re.search(r"(→|version) previous\b", text), text
            await expect(card.get_by_role("button", name="Approve")).to_be_visible()
            # The plan comes first: before the rendered parameters and the decision form.
            assert await card.evaluate(
                "c => { const p = c.querySelector('.plan'), h = [...c.querySelectorAll('h4')]"
                ".find(e => e.textContent.includes('Rendered parameters'));"
                " return !!p && !!h && !!(p.compareDocumentPosition(h) & 4); }")
            body = await page.locator("main").inner_text()
            assert "{{" not in body and "{%" not in body

            if case.runbook == "model-drift":
                await approval_link_page(r, ex.id, risky, run.plan["summary"], browser,
                                         tokens)
            assert gap is None, f"{case.runbook} plans now: remove it from KNOWN_GAPS"
        finally:
            await context.close()


async def approval_link_page(r: Any, execution_id: int, step_id: str, summary: str,
                             browser: Any, tokens: dict[str, str]) -> None:
    """The link alice sends: bob opens it, signs in, and reads the same plan first."""
    from playwright.async_api import expect

    made = await r.post(f"/api/v1/executions/{execution_id}/steps/{step_id}/approval-links",
                        "alice", {})
    assert made.status_code == 201, made.text
    url = made.json()["url"].replace(r.server.app.state.settings.public_url, r.server.url)
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        assert (await page.goto(url)).status == 200
        await expect(page.locator("[data-plan]")).to_have_text(summary)
        await sign_in(page, tokens["bob"])
        await expect(page).to_have_url(url)
        await expect(page.get_by_text("You are deciding as")).to_contain_text("bob")
        await expect(page.locator("[data-plan]")).to_have_text(summary)
        body = await page.locator("main").inner_text()
        assert "{{" not in body and "{%" not in body
        await page.screenshot(path=str(PLANS / "model-drift-approval-link.png"),
                              full_page=True)
    finally:
        await context.close()
