"""Drill of canary-promotion-failed: the fake Kubernetes API (no real one can run here; it checks
tokens, paths, verbs, patch types and resourceVersions as the real one does), real Prometheus,
and the embedded registry for the champion.

One rollout lives three moments of its life, each with an execution of the shipped runbook:
1. at canary step 2/5 and erroring: the approved abort sets `status.abort` on the Rollout, and
   once the canary's traffic stops (the test, as the traffic router) the verification passes;
2. the abort's rollback started by hand after the fix: `kubectl argo rollouts retry rollout`,
   a fake kubectl that, like the plugin, needs the kubeconfig that RUNBOOKD_COMMAND_ENV lets
   through, and clears `status.abort` through the API;
3. fully promoted, a late alert: the approved abort changes nothing (argo-rollouts#1292).

The canary's errors stay in the precondition's 2-hour window throughout. Its verification
reads `rate(...[1m])`, which reaches zero a minute after the last canary request: that minute
is most of this drill's time, and what a responder waits in production too.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.actions.embedded_registry import ModelRegistry
from tests.e2e.drills.harness import (
    Platform,
    Shipped,
    declare_series,
    labels_text,
    step_of,
    steps_brief,
)
from tests.support import wait
from tests.support.auth import auth
from tests.support.fake_kube import MERGE, FakeKube, add_rollout, run_fake_kube

pytestmark = pytest.mark.e2e

RUNBOOK = "canary-promotion-failed"
MODEL, ENV, NS, ROLLOUT = "canary-drill", "production", "ml-serving", "canary-drill-serving"
STABLE, CANARY, FIXED = "6b7f9c4d5", "7c8d9e0f1", "8d9e0f1a2"
ALERT = {"alertname": "CanaryPromotionFailed", "model": MODEL, "env": ENV, "rollout": ROLLOUT,
         "namespace": NS, "severity": "critical"}
STATUS_PATH = f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/{ROLLOUT}/status"


def requests(code: str) -> str:
    return "ml_serving_requests_total" + labels_text(
        {"model": MODEL, "env": ENV, "version": "5", "variant": "canary", "code": code})


CANARY_OK, CANARY_5XX = requests("200"), requests("500")
declare_series(
    # The canary errs on 20% of its requests (the precondition wants more than 2%).
    counters={CANARY_OK: 4.0, CANARY_5XX: 1.0,
              # Its pods do not restart, and it misses no feature: the triage checks pass on
              # real series rather than on an empty answer.
              "kube_pod_container_status_restarts_total" + labels_text(
                  {"namespace": NS, "pod": f"{ROLLOUT}-{CANARY}-x7k2p",
                   "container": "server"}): 0.0,
              "ml_serving_missing_features_total" + labels_text(
                  {"model": MODEL, "env": ENV, "variant": "canary"}): 0.0})

# `kubectl argo rollouts retry rollout NAME --namespace=NS`, as the plugin does it: a merge
# patch {"status": {"abort": false}} on the status subresource (the resource without one).
# Like kubectl, it finds the cluster only through KUBECONFIG: runbookd's command.run passes it
# only when RUNBOOKD_COMMAND_ENV lists it.
FAKE_KUBECTL = textwrap.dedent("""\
    #!{python}
    import json, os, sys, urllib.error, urllib.request
    args = sys.argv[1:]
    if args[:4] != ["argo", "rollouts", "retry", "rollout"] or len(args) != 6 \\
            or not args[5].startswith("--namespace="):
        sys.exit(f"fake kubectl: unexpected arguments {{args}}")
    name, namespace = args[4], args[5].removeprefix("--namespace=")
    if not os.environ.get("KUBECONFIG"):
        sys.exit("The connection to the server localhost:8080 was refused - did you specify "
                 "the right host or port?")
    config = json.load(open(os.environ["KUBECONFIG"]))
    context = next(c["context"] for c in config["contexts"]
                   if c["name"] == config["current-context"])
    server = next(c["cluster"]["server"] for c in config["clusters"]
                  if c["name"] == context["cluster"])
    token = next(u["user"]["token"] for u in config["users"] if u["name"] == context["user"])
    url = f"{{server}}/apis/argoproj.io/v1alpha1/namespaces/{{namespace}}/rollouts/{{name}}"
    def patch(path):
        request = urllib.request.Request(
            path, data=json.dumps({{"status": {{"abort": False}}}}).encode(), method="PATCH",
            headers={{"Authorization": f"Bearer {{token}}",
                     "Content-Type": "application/merge-patch+json"}})
        return urllib.request.urlopen(request, timeout=10)
    try:
        try:
            patch(url + "/status")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            patch(url)
    except urllib.error.HTTPError as exc:
        sys.exit(f"Error from server: {{exc.code}} {{exc.read().decode()[:200]}}")
    print(f"rollout '{{name}}' retried")
    """)


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[tuple[FakeKube, Path]]:
    """The fake API server and a kubeconfig for it. One per drill, not per session: it starts
    in milliseconds, and a fresh one keeps its record of calls to this drill's own."""
    async with run_fake_kube() as fake:
        yield fake, fake.kubeconfig(tmp_path / "kubeconfig", namespace=NS)


@pytest.fixture
def kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake kubectl, first on runbookd's PATH (command.run resolves `kubectl` there)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    path = bindir / "kubectl"
    path.write_text(FAKE_KUBECTL.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return path


def make_registry(root: Path) -> None:
    """The champion (version 4) that the stable pods serve; version 5 is the canary's."""
    registry = ModelRegistry(root)
    for version in ("4", "5"):
        registry.add_version(MODEL, version, {"model.bin": f"weights {version}".encode() * 64})
    registry.set_alias(MODEL, "champion", "4", reason="release")


async def new_execution(runbookd: Shipped, *, besides: set[int]) -> dict[str, Any]:
    """The execution of RUNBOOK that is not one of `besides`."""
    async def started() -> dict[str, Any] | None:
        items = (await runbookd.api("/api/v1/executions"))["items"]
        assert {e["runbook_id"] for e in items} <= {RUNBOOK}, items
        fresh = [e for e in items if e["id"] not in besides]
        return fresh[0] if fresh else None

    return await wait.eventually(started, timeout=15, what=f"a new execution of {RUNBOOK}")


async def aborted_in(fake: FakeKube) -> bool:
    return bool(fake.get("rollouts", NS, ROLLOUT)["status"].get("abort"))


async def approve_and_finish(runbookd: Shipped, execution_id: int, ref: str,
                             *, timeout: float = 60) -> dict[str, Any]:
    await runbookd.approve(execution_id, ref)
    detail = await runbookd.finished(execution_id, timeout=timeout)
    assert detail["status"] == "succeeded", (detail["status_reason"], steps_brief(detail))
    return detail


async def test_canary_abort_then_retry_then_a_late_abort_that_changes_nothing(
        shipped: Any, platform: Platform, registry_dir: Path, kube: tuple[FakeKube, Path],
        kubectl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, kubeconfig = kube
    make_registry(registry_dir)
    add_rollout(fake, NS, ROLLOUT, stable=STABLE, canary=CANARY, step=2)
    # kubernetes.* and argo.* read RUNBOOKD_KUBECONFIG (the setting); the rollback's kubectl
    # reads KUBECONFIG, which runbookd passes on because RUNBOOKD_COMMAND_ENV lists it.
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    await platform.subqueries_see_series()  # the precondition's [2h:1m] sees the errors

    async with shipped(platform, kubeconfig=kubeconfig, command_allowlist=["kubectl"],
                       command_env=["KUBECONFIG", "HOME"]) as runbookd:
        # 1. The canary at step 2/5 errs: abort it.
        await runbookd.fire(ALERT)
        first = await runbookd.execution_of(RUNBOOK)
        assert first["target"] == f"rollout:{NS}/{ROLLOUT}"
        abort = await runbookd.awaiting(first["id"], "abort-promotion")
        assert abort["plan"]["summary"] == (
            f"abort rollout {NS}/{ROLLOUT} (canary at step 2/5, 50% traffic) → all traffic "
            f"to stable {STABLE}")
        assert abort["plan"]["resolved"]["abort"] is True
        detail = await runbookd.detail(first["id"])
        read = step_of(detail, "read-rollout")["output"]
        assert (read["phase"], read["step"], read["weight"], read["canary"]) == (
            "Progressing", 2, 50, CANARY)
        assert step_of(detail, "check-canary-pods")["status"] == "succeeded"
        assert step_of(detail, "check-canary-features")["status"] == "succeeded"
        assert step_of(detail, "read-champion")["output"]["version"] == "4"
        assert fake.writes() == [], "the rollout changed before the approval"

        await runbookd.approve(first["id"], "abort-promotion")
        # The effect on the cluster: status.abort set, one merge patch on the status
        # subresource, on the resourceVersion that was read.
        await wait.eventually(lambda: aborted_in(fake), timeout=15,
                              what="status.abort on the Rollout")
        assert [(c.method, c.path, c.content_type, c.status) for c in fake.writes()] == [
            ("PATCH", STATUS_PATH, MERGE, 200)]
        # The router sends the canary nothing more; the verification waits for its traffic
        # (a one-minute rate) to read zero.
        platform.count(CANARY_OK, 0.0)
        platform.count(CANARY_5XX, 0.0)
        detail = await runbookd.finished(first["id"], timeout=120)
        assert detail["status"] == "succeeded", (detail["status_reason"], steps_brief(detail))
        aborted = step_of(detail, "abort-promotion")
        assert aborted["output"]["changed"] is True
        assert (aborted["output"]["stable"], aborted["output"]["canary"]) == (STABLE, CANARY)
        assert step_of(detail, "verify-champion")["status"] == "succeeded"
        # The controller then reports the abort, as Argo Rollouts does.
        fake.set_status("rollouts", NS, ROLLOUT, phase="Degraded",
                        message="RolloutAborted: Rollout aborted update to revision 2")

        # 2. After the fix, the abort's rollback (retry) is started by hand and approved.
        answer = await runbookd.http.post(
            f"/api/v1/executions/{first['id']}/steps/abort-promotion/rollback",
            headers=auth(runbookd.tokens["rita"]), json={"reason": "fixed in version 5"})
        assert answer.status_code == 201, answer.text
        retry = answer.json()
        assert (retry["trigger"], retry["parent_id"]) == ("rollback", first["id"])
        await runbookd.awaiting(retry["id"], "abort-promotion.rollback")
        detail = await approve_and_finish(runbookd, retry["id"], "abort-promotion.rollback")
        ran = step_of(detail, "abort-promotion.rollback")
        assert f"rollout '{ROLLOUT}' retried" in json.dumps(ran["output"]), ran
        assert fake.get("rollouts", NS, ROLLOUT)["status"]["abort"] is False
        assert [c.path for c in fake.writes()][-1] == STATUS_PATH

        # 3. The controller promoted the fixed version fully; a late alert asks to abort.
        fake.set_status("rollouts", NS, ROLLOUT, abort=None, stableRS=FIXED,
                        currentPodHash=FIXED, currentStepIndex=5, phase="Healthy", message="")
        before = fake.get("rollouts", NS, ROLLOUT)
        writes = len(fake.writes())
        await runbookd.fire({**ALERT, "attempt": "late"})
        late = await new_execution(runbookd, besides={first["id"], retry["id"]})
        abort = await runbookd.awaiting(late["id"], "abort-promotion")
        assert abort["plan"]["summary"] == (
            f"rollout {NS}/{ROLLOUT} has no update in progress (stable {FIXED}): nothing to "
            "abort (no change)")
        assert abort["plan"]["resolved"]["abort"] is False
        detail = await approve_and_finish(runbookd, late["id"], "abort-promotion")
        assert step_of(detail, "abort-promotion")["output"]["changed"] is False
        # Nothing was written: no patch, the same resourceVersion, no abort.
        assert len(fake.writes()) == writes
        assert fake.get("rollouts", NS, ROLLOUT) == before
        assert "abort" not in before["status"]
