"""kubernetes.* and argo.* against the fake Kubernetes API (tests/support/fake_kube.py), which
checks tokens, paths, verbs, patch types and resourceVersions as the real one does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.actions import kube_client
from app.actions.base import ActionContext, ActionFailed, ActionPlan
from app.actions.kube_client import Deployment, Kube, KubeConflict, KubeParams, PatchType
from app.actions.kube_workloads import RESTARTED_AT, undo_patch
from app.actions.kubernetes import RolloutRestart, RolloutStatus, RolloutUndo, Scale
from app.actions.kubernetes_argo import RolloutAbort, RolloutPromote
from app.actions.kubernetes_argo import RolloutStatus as ArgoStatus
from tests.support.action_ctx import make_ctx, run_action
from tests.support.fake_kube import (
    JSON_PATCH,
    MERGE,
    STRATEGIC,
    FakeKube,
    add_deployment,
    add_rollout,
    run_fake_kube,
)

NS, APP = "ml-serving", "fraud-serving"
REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with run_fake_kube() as fake:
        yield fake


@pytest.fixture
def kubeconfig(kube: FakeKube, tmp_path: Path) -> Path:
    return kube.kubeconfig(tmp_path / "kubeconfig")


def ctx(kubeconfig: Path, **kwargs: Any) -> ActionContext:
    return make_ctx(allow=["127.0.0.1"], kubeconfig=kubeconfig, **kwargs)


async def plan(action: Any, context: ActionContext, **params: Any) -> ActionPlan:
    return await action.plan(context, action.Params.model_validate(params))


def image_of(obj: dict[str, Any]) -> str:
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


# -- connection: configuration, allow-list, credentials ----------------------------------------

async def test_an_api_server_off_the_allow_list_is_refused_before_any_request(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    context = make_ctx(allow=["mlflow.internal"], kubeconfig=kubeconfig)
    with pytest.raises(ActionFailed, match=r"API server '127.0.0.1' \(from kubeconfig .*, named "
                                           r"by RUNBOOKD_KUBECONFIG\) is not on the HTTP "
                                           "allow-list: add it to RUNBOOKD_HTTP_ALLOWLIST"):
        await run_action(RolloutStatus(), context, namespace=NS, name=APP)
    assert kube.calls == []


async def test_a_wrong_token_is_a_401_that_says_to_check_the_credentials(
        kube: FakeKube, tmp_path: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    config = kube.kubeconfig(tmp_path / "bad", token="not-the-token")
    with pytest.raises(ActionFailed, match=r"answered 401 Unauthorized.*check the credentials"):
        await run_action(RolloutStatus(), ctx(config), namespace=NS, name=APP)


async def test_kubeconfig_comes_from_runbookd_kubeconfig_then_kubeconfig(
        kube: FakeKube, kubeconfig: Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    monkeypatch.setenv("KUBECONFIG", f"{kubeconfig}:{tmp_path / 'ignored'}")
    result = await run_action(RolloutStatus(), make_ctx(allow=["127.0.0.1"]),
                              namespace=NS, name=APP)
    assert result.output["done"] is True
    missing = tmp_path / "missing"
    with pytest.raises(ActionFailed, match=f"kubeconfig {missing}, named by "
                                           "RUNBOOKD_KUBECONFIG, does not exist"):
        await run_action(RolloutStatus(), ctx(missing), namespace=NS, name=APP)


async def test_without_configuration_the_error_names_the_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT", tmp_path / "no-account")
    with pytest.raises(ActionFailed, match=r"set RUNBOOKD_KUBECONFIG \(or KUBECONFIG\) to a "
                                           "kubeconfig file, or run runbookd in a pod"):
        await run_action(RolloutStatus(), make_ctx(allow=["127.0.0.1"]), namespace=NS,
                         name=APP)


async def test_in_a_pod_the_service_account_is_used(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    for name, text in {"token": "sa-token", "namespace": NS, "ca.crt": ""}.items():
        (account / name).write_text(text)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setattr(kube_client, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    # The cluster it found is the in-cluster one, checked against the allow-list.
    with pytest.raises(ActionFailed, match=r"'10.96.0.1' \(from the pod's service account\) "
                                           "is not on the HTTP allow-list"):
        await run_action(RolloutStatus(), make_ctx(allow=["127.0.0.1"]), namespace=NS,
                         name=APP)


async def test_an_unknown_context_and_an_unknown_object_are_named(
        kube: FakeKube, kubeconfig: Path) -> None:
    with pytest.raises(ActionFailed, match="Context 'prod-eu' not found"):
        await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                         context="prod-eu")
    with pytest.raises(ActionFailed, match=r'reading Deployment ml-serving/fraud-serving: .* '
                                           r'answered 404 NotFound: deployments.apps '
                                           r'"fraud-serving" not found'):
        await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP)


@pytest.mark.parametrize(("field", "value", "says"), [
    ("namespace", "ML_Serving", "not a DNS-1123 label"),
    ("namespace", "a" * 64, "at most 63"),
    ("name", "fraud/../x", "not a DNS-1123 subdomain"),
    ("name", "-fraud", "not a DNS-1123 subdomain"),
    ("context", "prod eu; rm", "not a kubeconfig context name"),
])
def test_names_are_validated_as_kubernetes_does(field: str, value: str, says: str) -> None:
    params = {"namespace": NS, "name": APP, field: value}
    with pytest.raises(ValidationError, match=says):
        KubeParams.model_validate(params)


# -- kubernetes.rollout_status -----------------------------------------------------------------

async def test_status_of_a_rolled_out_deployment(kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    result = await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.summary == ("Deployment ml-serving/fraud-serving: deployment 'fraud-serving' "
                              "successfully rolled out")
    assert result.output["done"] is True and result.output["available"] == 3


async def test_status_waits_within_for_the_rollout_to_finish(kube: FakeKube,
                                                             kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    kube.set_status("deployments", NS, APP, updatedReplicas=1, availableReplicas=3, replicas=4)
    with pytest.raises(ActionFailed, match="has not rolled out: 1 out of 3 new replicas have "
                                           "been updated"):
        await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP)

    async def controller() -> None:
        await asyncio.sleep(0.3)
        kube.set_status("deployments", NS, APP, updatedReplicas=3, availableReplicas=3,
                        replicas=3)

    task = asyncio.create_task(controller())
    result = await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                              within="5s", interval="100ms")
    await task
    assert result.output["done"] is True
    reads = [c for c in kube.calls if c.method == "GET"]
    assert len(reads) >= 3


async def test_status_fails_at_once_past_the_progress_deadline(kube: FakeKube,
                                                              kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v1"])
    kube.set_status("deployments", NS, APP, updatedReplicas=1, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    with pytest.raises(ActionFailed, match="exceeded its progress deadline"):
        await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                         within="30s")


async def test_status_of_a_statefulset(kube: FakeKube, kubeconfig: Path) -> None:
    kube.add("statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "feature-store", "namespace": NS},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "fs"}},
                 "updateStrategy": {"type": "RollingUpdate"},
                 "template": {"metadata": {"labels": {"app": "fs"}},
                              "spec": {"containers": [{"name": "c", "image": "feast:1"}]}}},
        "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
                   "currentRevision": "fs-1",
                   "updateRevision": "fs-2", "updatedReplicas": 1}})
    with pytest.raises(ActionFailed, match="waiting for the rolling update to complete 1 pods "
                                           "at revision fs-2"):
        await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS, name="feature-store",
                         kind="StatefulSet")
    kube.set_status("statefulsets", NS, "feature-store", currentRevision="fs-2",
                    currentReplicas=3)
    result = await run_action(RolloutStatus(), ctx(kubeconfig), namespace=NS,
                              name="feature-store", kind="StatefulSet")
    assert "rolling update complete 3 pods at revision fs-2" in result.summary


# -- kubernetes.rollout_restart ----------------------------------------------------------------

async def test_restart_sets_restarted_at_on_the_template(kube: FakeKube,
                                                         kubeconfig: Path) -> None:
    before = add_deployment(kube, NS, APP, images=["fraud:v4", "fraud:v5"])
    made = await plan(RolloutRestart(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary == ("restart Deployment ml-serving/fraud-serving: replace its 3 pods "
                            "of fraud:v5 one by one")
    assert kube.writes() == []
    result = await run_action(RolloutRestart(), ctx(kubeconfig), namespace=NS, name=APP)
    after = kube.get("deployments", NS, APP)
    stamp = after["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
    assert stamp == result.output["restarted_at"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"] + 1
    assert image_of(after) == "fraud:v5"
    [write] = kube.writes()
    assert (write.method, write.content_type, write.status) == ("PATCH", STRATEGIC, 200)
    assert write.path == f"/apis/apps/v1/namespaces/{NS}/deployments/{APP}"
    again = await plan(RolloutRestart(), ctx(kubeconfig), namespace=NS, name=APP)
    assert again.summary.endswith(f"(last restart {stamp})")


async def test_restart_in_a_drill_or_of_a_paused_deployment_changes_nothing(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v5"])
    result = await run_action(RolloutRestart(), ctx(kubeconfig, dry_run=True), namespace=NS,
                              name=APP)
    assert result.summary.startswith("would restart Deployment ml-serving/fraud-serving")
    kube.objects[("deployments", NS, APP)]["spec"]["paused"] = True
    with pytest.raises(ActionFailed, match="is paused: resume it first"):
        await run_action(RolloutRestart(), ctx(kubeconfig), namespace=NS, name=APP)
    assert kube.writes() == []


# -- kubernetes.rollout_undo -------------------------------------------------------------------

async def test_undo_restores_the_previous_revisions_template(kube: FakeKube,
                                                             kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v3", "fraud:v4", "fraud:v5"])
    # Another Deployment's ReplicaSet with the same labels is not part of this history.
    stranger = dict(kube.get("replicasets", NS, next(
        n for (p, _, n) in kube.objects if p == "replicasets")))
    stranger["metadata"] = {**stranger["metadata"], "name": "impostor",
                            "annotations": {REVISION: "9"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "other", "uid": "someone-else",
                                                 "controller": True}]}
    kube.add("replicasets", stranger)
    made = await plan(RolloutUndo(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary == ("undo Deployment ml-serving/fraud-serving: revision 3 (fraud:v5) "
                            "→ revision 2 (fraud:v4)")
    assert made.resolved["to_revision"] == 2 and made.resolved["from_revision"] == 3
    assert kube.writes() == []

    result = await run_action(RolloutUndo(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.output["changed"] is True
    after = kube.get("deployments", NS, APP)
    assert image_of(after) == "fraud:v4"
    # The ReplicaSet's hash label stays out of the Deployment's template (kubectl drops it).
    assert after["spec"]["template"]["metadata"]["labels"] == {"app": APP}
    assert after["metadata"]["annotations"][REVISION] == "3"
    [write] = kube.writes()
    assert (write.method, write.content_type, write.status) == ("PATCH", JSON_PATCH, 200)


async def test_undo_to_a_revision_and_its_refusals(kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v3", "fraud:v4", "fraud:v5"])
    await run_action(RolloutUndo(), ctx(kubeconfig), namespace=NS, name=APP, to_revision=1)
    assert image_of(kube.get("deployments", NS, APP)) == "fraud:v3"
    again = await run_action(RolloutUndo(), ctx(kubeconfig), namespace=NS, name=APP,
                             to_revision=1)
    assert again.output["changed"] is False
    assert again.summary.endswith("already at the template of revision 1 (fraud:v3) "
                                  "(no change)")
    with pytest.raises(ActionFailed, match=r"has no revision 7 \(revisions: 3, 2, 1\)"):
        await run_action(RolloutUndo(), ctx(kubeconfig), namespace=NS, name=APP, to_revision=7)
    add_deployment(kube, NS, "fresh", images=["fresh:v1"])
    with pytest.raises(ActionFailed, match="no previous revision to go back to"):
        await run_action(RolloutUndo(), ctx(kubeconfig), namespace=NS, name="fresh")
    assert len(kube.writes()) == 1


async def test_undo_in_a_drill_changes_nothing(kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v4", "fraud:v5"])
    result = await run_action(RolloutUndo(), ctx(kubeconfig, dry_run=True), namespace=NS,
                              name=APP)
    assert result.summary == ("would undo Deployment ml-serving/fraud-serving: revision 2 "
                              "(fraud:v5) → revision 1 (fraud:v4)")
    assert kube.writes() == []


async def test_undo_of_a_deployment_changed_since_it_was_read_is_a_conflict(
        kube: FakeKube, kubeconfig: Path) -> None:
    deployment = add_deployment(kube, NS, APP, images=["fraud:v4", "fraud:v5"])
    [old] = [rs for (p, _, n), rs in kube.objects.items() if p == "replicasets"
             and rs["metadata"]["annotations"][REVISION] == "1"]
    kube.set_status("deployments", NS, APP, observedGeneration=2)  # someone wrote meanwhile
    params = KubeParams(namespace=NS, name=APP)
    async with Kube(ctx(kubeconfig), params) as client:
        with pytest.raises(KubeConflict, match=r"409 Conflict.*the object has been modified"):
            await client.patch(Deployment, APP, undo_patch(deployment, old),
                               patch_type=PatchType.JSON, doing="rolling back")
    assert image_of(kube.get("deployments", NS, APP)) == "fraud:v5"


# -- kubernetes.scale --------------------------------------------------------------------------

async def test_scale_through_the_scale_subresource(kube: FakeKube, kubeconfig: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v5"])
    made = await plan(Scale(), ctx(kubeconfig), namespace=NS, name=APP, replicas=6)
    assert made.summary == "scale Deployment ml-serving/fraud-serving: 3 → 6 replicas"
    dry = await run_action(Scale(), ctx(kubeconfig, dry_run=True), namespace=NS, name=APP,
                           replicas=6)
    assert dry.summary.startswith("would scale") and kube.writes() == []
    result = await run_action(Scale(), ctx(kubeconfig), namespace=NS, name=APP, replicas=6)
    assert result.output == {"kind": "Deployment", "namespace": NS, "name": APP, "from": 3,
                             "to": 6, "changed": True}
    stored = kube.get("deployments", NS, APP)
    assert stored["spec"]["replicas"] == 6 and stored["metadata"]["generation"] == 2
    [write] = kube.writes()
    assert (write.method, write.path) == ("PUT", f"/apis/apps/v1/namespaces/{NS}/deployments/"
                                                 f"{APP}/scale")
    same = await run_action(Scale(), ctx(kubeconfig), namespace=NS, name=APP, replicas=6)
    assert same.output["changed"] is False and len(kube.writes()) == 1


async def test_scale_a_statefulset(kube: FakeKube, kubeconfig: Path) -> None:
    kube.add("statefulsets", {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "feature-store", "namespace": NS},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "fs"}},
                 "template": {"metadata": {"labels": {"app": "fs"}},
                              "spec": {"containers": [{"name": "c", "image": "feast:1"}]}}}})
    await run_action(Scale(), ctx(kubeconfig), namespace=NS, name="feature-store",
                     kind="StatefulSet", replicas=1)
    assert kube.get("statefulsets", NS, "feature-store")["spec"]["replicas"] == 1


# -- argo.rollout_abort ------------------------------------------------------------------------

async def test_abort_a_canary_in_progress(kube: FakeKube, kubeconfig: Path) -> None:
    before = add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=2, weight=20, paused=True)
    made = await plan(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary == ("abort rollout ml-serving/fraud-serving (canary at step 2/5, 20% "
                            "traffic) → all traffic to stable 6b7f9c4d5")
    assert kube.writes() == []
    result = await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.output["changed"] is True
    after = kube.get("rollouts", NS, APP)
    assert after["status"]["abort"] is True
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    [write] = kube.writes()
    assert (write.method, write.content_type, write.status) == ("PATCH", MERGE, 200)
    assert write.path == f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/{APP}/status"


async def test_abort_with_no_rollout_in_progress_does_nothing(kube: FakeKube,
                                                              kubeconfig: Path) -> None:
    # argo-rollouts#1292: aborting a fully promoted canary scaled the stable ReplicaSet to 0.
    before = add_rollout(kube, NS, APP)
    made = await plan(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary == ("rollout ml-serving/fraud-serving has no update in progress "
                            "(stable 6b7f9c4d5): nothing to abort (no change)")
    result = await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.output["changed"] is False
    assert kube.writes() == []
    assert kube.get("rollouts", NS, APP) == before


async def test_abort_of_a_rollout_that_finished_meanwhile_does_nothing(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=4, weight=80)
    # Between the read and the patch the controller completes the update.
    kube.before_write.append(lambda: kube.set_status(
        "rollouts", NS, APP, stableRS="5d8e1a2b3", currentPodHash="5d8e1a2b3",
        phase="Healthy"))
    result = await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.output["changed"] is False
    assert "no update in progress" in result.summary
    assert [c.status for c in kube.writes()] == [409]
    assert "abort" not in kube.get("rollouts", NS, APP)["status"]


async def test_abort_twice_and_in_a_drill(kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=2, weight=20, paused=True)
    dry = await run_action(RolloutAbort(), ctx(kubeconfig, dry_run=True), namespace=NS,
                           name=APP)
    assert dry.summary.startswith("would abort rollout") and kube.writes() == []
    await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    again = await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert again.summary == ("rollout ml-serving/fraud-serving is already aborted (stable "
                             "6b7f9c4d5): nothing to abort")
    assert len(kube.writes()) == 1


async def test_abort_falls_back_to_the_resource_without_a_status_subresource(
        kube: FakeKube, kubeconfig: Path) -> None:
    kube.rollout_status_subresource = False
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=2, weight=20)
    await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    assert kube.get("rollouts", NS, APP)["status"]["abort"] is True
    assert [(c.path.endswith("/status"), c.status) for c in kube.writes()] == [(True, 404),
                                                                               (False, 200)]


# -- argo.rollout_promote ----------------------------------------------------------------------

async def test_promote_a_paused_canary_clears_its_pause(kube: FakeKube,
                                                       kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=1, weight=20, paused=True)
    made = await plan(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary == ("promote rollout ml-serving/fraud-serving (canary at step 1/5, 20% "
                            "traffic) → resume past the pause")
    await run_action(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP)
    status = kube.get("rollouts", NS, APP)["status"]
    assert "pauseConditions" not in status and status["currentStepIndex"] == 1
    assert [(c.path.endswith("/status"), c.content_type) for c in kube.writes()] == [
        (True, MERGE)]


async def test_promote_during_analysis_moves_to_the_next_step(kube: FakeKube,
                                                             kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=2, weight=50)
    made = await plan(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP)
    assert made.summary.endswith("(canary at step 2/5, 50% traffic) → step 3/5")
    await run_action(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP)
    assert kube.get("rollouts", NS, APP)["status"]["currentStepIndex"] == 3


async def test_full_promotion_sets_promote_full_and_unpauses_the_spec(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=1, weight=20, paused=True)
    kube.objects[("rollouts", NS, APP)]["spec"]["paused"] = True
    result = await run_action(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP,
                              full=True)
    assert "fully promote rollout ml-serving/fraud-serving" in result.summary
    after = kube.get("rollouts", NS, APP)
    assert after["status"]["promoteFull"] is True and after["spec"]["paused"] is False
    assert [c.path.endswith("/status") for c in kube.writes()] == [True, False]


async def test_promote_does_nothing_when_fully_promoted_and_refuses_an_aborted_rollout(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP)
    result = await run_action(RolloutPromote(), ctx(kubeconfig), namespace=NS, name=APP)
    assert result.output["changed"] is False and kube.writes() == []
    add_rollout(kube, NS, "aborted", canary="5d8e1a2b3", step=1)
    kube.set_status("rollouts", NS, "aborted", abort=True)
    with pytest.raises(ActionFailed, match="is aborted: promote does not resume it"):
        await run_action(RolloutPromote(), ctx(kubeconfig), namespace=NS, name="aborted")
    assert kube.writes() == []


# -- argo.rollout_status -----------------------------------------------------------------------

async def test_argo_status_passes_on_an_expected_phase_and_fails_on_degraded(
        kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=1, weight=20, paused=True)
    paused = await run_action(ArgoStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                              expect=["Paused"])
    assert paused.output["phase"] == "Paused" and paused.output["weight"] == 20
    await run_action(RolloutAbort(), ctx(kubeconfig), namespace=NS, name=APP)
    kube.set_status("rollouts", NS, APP, phase="Degraded",
                    message="RolloutAborted: Rollout aborted update to revision 2")
    with pytest.raises(ActionFailed, match=r"is Degraded \(RolloutAborted.*expected Healthy"):
        await run_action(ArgoStatus(), ctx(kubeconfig), namespace=NS, name=APP, within="30s")
    aborted = await run_action(ArgoStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                               expect=["Degraded"])
    assert aborted.output["aborted"] is True


async def test_argo_status_waits_for_healthy(kube: FakeKube, kubeconfig: Path) -> None:
    add_rollout(kube, NS, APP, canary="5d8e1a2b3", step=4, weight=80)

    async def controller() -> None:
        await asyncio.sleep(0.3)
        kube.set_status("rollouts", NS, APP, phase="Healthy", stableRS="5d8e1a2b3")

    task = asyncio.create_task(controller())
    result = await run_action(ArgoStatus(), ctx(kubeconfig), namespace=NS, name=APP,
                              within="5s", interval="100ms")
    await task
    assert result.output["phase"] == "Healthy"


# -- the token stays out of what runbookd records ----------------------------------------------

async def test_the_clusters_token_never_shows_in_plans_outputs_or_errors(
        kube: FakeKube, kubeconfig: Path, tmp_path: Path) -> None:
    add_deployment(kube, NS, APP, images=["fraud:v4", "fraud:v5"])
    add_rollout(kube, NS, "canary", canary="5d8e1a2b3", step=2, weight=20, paused=True)
    shown = []
    for action, params in [(RolloutRestart(), {}), (RolloutUndo(), {}),
                           (Scale(), {"replicas": 4}), (RolloutPromote(), {"name": "canary"}),
                           (RolloutAbort(), {"name": "canary"})]:
        values = {"namespace": NS, "name": APP, **params}
        shown.append((await plan(action, ctx(kubeconfig), **values)).as_dict())
        result = await run_action(action, ctx(kubeconfig), **values)
        shown += [result.summary, result.output]
    bad = kube.kubeconfig(tmp_path / "bad", token="wrong-token-should-not-show")
    with pytest.raises(ActionFailed) as failed:
        await run_action(Scale(), ctx(bad), namespace=NS, name=APP, replicas=2)
    shown.append(failed.value.message)
    assert kube.token not in repr(shown)
    assert "wrong-token-should-not-show" not in repr(shown)


# -- the fake checks what the real API server checks -------------------------------------------

async def test_the_fake_api_refuses_what_the_real_one_refuses(kube: FakeKube) -> None:
    import httpx

    add_deployment(kube, NS, APP, images=["fraud:v5"])
    add_rollout(kube, NS, "canary")
    auth = {"Authorization": f"Bearer {kube.token}"}
    deployment = f"/apis/apps/v1/namespaces/{NS}/deployments/{APP}"
    rollout = f"/apis/argoproj.io/v1alpha1/namespaces/{NS}/rollouts/canary"
    async with httpx.AsyncClient(base_url=kube.url) as http:
        assert (await http.get(deployment)).status_code == 401
        assert (await http.get(f"{deployment}x", headers=auth)).json()["reason"] == "NotFound"
        assert (await http.get(f"/api/v1/namespaces/{NS}/pods", headers=auth)).status_code == 404
        assert (await http.delete(deployment, headers=auth)).status_code == 405
        body = b'{"spec": {"replicas": 2}}'
        for content_type, where, code in [("application/json", deployment, 415),
                                          ("text/plain", deployment, 415),
                                          (STRATEGIC, rollout, 415), (STRATEGIC, deployment, 200)]:
            answer = await http.patch(where, content=body,
                                      headers={**auth, "Content-Type": content_type})
            assert answer.status_code == code, (content_type, where, answer.text)
        stored = kube.get("deployments", NS, APP)
        assert stored["metadata"]["generation"] == 2
        stale = {**stored, "metadata": {**stored["metadata"], "resourceVersion": "1"}}
        answer = await http.put(deployment, json=stale, headers=auth)
        assert (answer.status_code, answer.json()["reason"]) == (409, "Conflict")
        answer = await http.put(deployment, json={**stored, "metadata": {
            **stored["metadata"], "name": "other"}}, headers=auth)
        assert answer.status_code == 400
        no_version = kube.get("rollouts", NS, "canary")
        del no_version["metadata"]["resourceVersion"]
        assert (await http.put(rollout, json=no_version, headers=auth)).status_code == 422
        bad_patch = [{"op": "test", "path": "/spec/replicas", "value": 99}]
        answer = await http.patch(deployment, json=bad_patch,
                                  headers={**auth, "Content-Type": JSON_PATCH})
        assert answer.status_code == 422
        unchanged = kube.get("deployments", NS, APP)["metadata"]["resourceVersion"]
        same = await http.patch(deployment, content=body,
                                headers={**auth, "Content-Type": MERGE})
        assert same.json()["metadata"]["resourceVersion"] == unchanged
        selected = await http.get(f"/apis/apps/v1/namespaces/{NS}/replicasets", headers=auth,
                                  params={"labelSelector": f"app={APP},pod-template-hash"})
        assert len(selected.json()["items"]) == 1
