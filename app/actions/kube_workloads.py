"""Deployments and StatefulSets as kubectl reads them: rollout progress, revision history and
the undo patch. Pure functions over objects as the API returns them (plain dicts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.actions.base import ActionFailed

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
# Deployment annotations an undo keeps rather than copying from the ReplicaSet (kubectl's list).
KEPT_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", REVISION,
    "deployment.kubernetes.io/revision-history", "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas", "deprecated.deployment.rollback.to"})


def images(template: dict[str, Any]) -> list[str]:
    """The container images of a pod template, in order."""
    return [str(c.get("image", "?")) for c in template.get("spec", {}).get("containers", [])]


@dataclass(frozen=True)
class Progress:
    done: bool
    message: str
    failed: bool = False


def deployment_progress(deployment: dict[str, Any]) -> Progress:
    """`kubectl rollout status` for a Deployment."""
    name = deployment["metadata"]["name"]
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return Progress(False, "waiting for the deployment spec update to be observed")
    for condition in status.get("conditions", []):
        if (condition.get("type") == "Progressing"
                and condition.get("reason") == "ProgressDeadlineExceeded"):
            return Progress(False, f"deployment {name!r} exceeded its progress deadline",
                            failed=True)
    wanted, updated = spec.get("replicas", 1), status.get("updatedReplicas", 0)
    total, available = status.get("replicas", 0), status.get("availableReplicas", 0)
    if updated < wanted:
        return Progress(False, f"{updated} out of {wanted} new replicas have been updated")
    if total > updated:
        return Progress(False, f"{total - updated} old replicas are pending termination")
    if available < updated:
        return Progress(False, f"{available} of {updated} updated replicas are available")
    return Progress(True, f"deployment {name!r} successfully rolled out")


def statefulset_progress(sts: dict[str, Any]) -> Progress:
    """`kubectl rollout status` for a StatefulSet (RollingUpdate only, as kubectl)."""
    spec, status = sts.get("spec", {}), sts.get("status", {})
    strategy = spec.get("updateStrategy", {})
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return Progress(False, "rollout status is only available for the RollingUpdate "
                               "strategy", failed=True)
    observed = status.get("observedGeneration", 0)
    if observed == 0 or sts["metadata"].get("generation", 0) > observed:
        return Progress(False, "waiting for the statefulset spec update to be observed")
    wanted = spec.get("replicas", 1)
    if status.get("readyReplicas", 0) < wanted:
        return Progress(False, f"waiting for {wanted - status.get('readyReplicas', 0)} pods "
                               "to be ready")
    partition = (strategy.get("rollingUpdate") or {}).get("partition")
    if partition is not None:
        if status.get("updatedReplicas", 0) < wanted - partition:
            return Progress(False, f"partitioned roll out: {status.get('updatedReplicas', 0)} "
                                   f"out of {wanted - partition} new pods have been updated")
        return Progress(True, "partitioned roll out complete")
    if status.get("updateRevision") != status.get("currentRevision"):
        return Progress(False, f"waiting for the rolling update to complete "
                               f"{status.get('updatedReplicas', 0)} pods at revision "
                               f"{status.get('updateRevision')}")
    return Progress(True, f"statefulset rolling update complete {status.get('currentReplicas', 0)}"
                          f" pods at revision {status.get('currentRevision')}")


def revision_of(obj: dict[str, Any]) -> int | None:
    """The deployment.kubernetes.io/revision annotation as a number (None: absent or bad)."""
    try:
        return int(obj.get("metadata", {}).get("annotations", {}).get(REVISION, ""))
    except ValueError:
        return None


def owned_by(deployment: dict[str, Any], replica_sets: list[dict[str, Any]],
             ) -> list[dict[str, Any]]:
    """The ReplicaSets whose controller is this Deployment (by uid, as kubectl checks)."""
    uid = deployment["metadata"].get("uid")
    return [rs for rs in replica_sets
            if any(ref.get("controller") and ref.get("uid") == uid
                   for ref in rs["metadata"].get("ownerReferences", []))]


def undo_target(deployment: dict[str, Any], replica_sets: list[dict[str, Any]],
                to_revision: int | None) -> tuple[dict[str, Any], int]:
    """The ReplicaSet to go back to and its revision: `to_revision`, or the second newest."""
    name = deployment["metadata"]["name"]
    revisions = sorted(((rev, rs) for rs in owned_by(deployment, replica_sets)
                        if (rev := revision_of(rs)) is not None),
                       key=lambda pair: pair[0], reverse=True)
    if to_revision is not None:
        for rev, rs in revisions:
            if rev == to_revision:
                return rs, rev
        known = ", ".join(str(rev) for rev, _ in revisions) or "none"
        raise ActionFailed(f"deployment {name!r} has no revision {to_revision} (revisions: "
                           f"{known})")
    if len(revisions) < 2:
        raise ActionFailed(f"deployment {name!r} has no previous revision to go back to "
                           "(no rollout history found)")
    return revisions[1][1], revisions[1][0]


def without_hash(template: dict[str, Any]) -> dict[str, Any]:
    """A pod template without the pod-template-hash label its ReplicaSet adds."""
    metadata = dict(template.get("metadata", {}))
    labels = {k: v for k, v in metadata.get("labels", {}).items() if k != HASH_LABEL}
    return {**template, "metadata": {**metadata, "labels": labels}}


def undo_patch(deployment: dict[str, Any], rs: dict[str, Any]) -> list[dict[str, Any]]:
    """kubectl's undo: the ReplicaSet's template and annotations, guarded by resourceVersion."""
    current = deployment["metadata"].get("annotations", {})
    annotations = {k: v for k, v in current.items() if k in KEPT_ANNOTATIONS}
    annotations.update({k: v for k, v in rs["metadata"].get("annotations", {}).items()
                        if k not in KEPT_ANNOTATIONS})
    return [
        # The API applies the patch to the stored object: a resourceVersion other than the
        # one read makes it a 409, so a Deployment changed meanwhile is not rolled back blind.
        {"op": "replace", "path": "/metadata/resourceVersion",
         "value": deployment["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/spec/template", "value": without_hash(rs["spec"]["template"])},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
