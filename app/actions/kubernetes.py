"""`kubernetes.*`: Deployments and StatefulSets through the Kubernetes API, as kubectl does it.

- `rollout_status` compares observedGeneration, updatedReplicas and availableReplicas the way
  `kubectl rollout status` does (and fails at once on ProgressDeadlineExceeded); `within`
  waits until the rollout is done.
- `rollout_restart` sets `kubectl.kubernetes.io/restartedAt` on the pod template (a strategic
  merge patch), so the controller replaces every pod; a paused Deployment is refused, as
  kubectl refuses it.
- `rollout_undo` (Deployments) finds the previous ReplicaSet by its
  `deployment.kubernetes.io/revision` (or `to_revision`) and patches the Deployment's template
  and annotations with it, as kubectl does: apps/v1 has no undo call. The JSON patch carries
  the resourceVersion it was computed from, so a Deployment changed since gets a 409, not a
  rollback to the wrong template.
- `scale` reads the scale subresource and replaces it with that resourceVersion.

Each change has a read-only plan ("undo Deployment ml-serving/fraud-serving: revision 5
(fraud:v5) → revision 4 (fraud:v4)") and, in a drill, reads and says what it would do.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionPlan,
    ActionResult,
)
from app.actions.kube_params import KubeParams, Polling, described
from app.actions.kube_workloads import (
    RESTARTED_AT,
    deployment_progress,
    images,
    revision_of,
    statefulset_progress,
    undo_patch,
    undo_target,
    without_hash,
)
from app.durations import format_duration

# lightkube (about 20 MiB) loads on the first call to a cluster, not at start-up: each function
# that talks to one imports kube_client itself.
if TYPE_CHECKING:
    from app.actions.kube_client import Kube



def _read_only(ctx: ActionContext) -> str:
    return "dry run (read-only, ran for real): " if ctx.dry_run else ""


class WorkloadParams(KubeParams):
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"


class StatusParams(WorkloadParams, Polling):
    """`within` waits until the rollout is done, reading every `interval`."""


class RolloutStatus:
    name: ClassVar[str] = "kubernetes.rollout_status"
    Params = StatusParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Checks that a Deployment or StatefulSet has rolled out, as `kubectl rollout status` "
        "does; `within` waits for it."
    )

    async def run(self, ctx: ActionContext, params: StatusParams) -> ActionResult:
        from app.actions.kube_client import WORKLOADS, Kube
        what = described(params.kind, params.namespace, params.name)
        progress_of = deployment_progress if params.kind == "Deployment" else statefulset_progress
        deadline = time.monotonic() + (0 if ctx.dry_run else params.within.total_seconds())
        async with Kube(ctx, params) as kube:
            while True:
                found = await kube.get(WORKLOADS[params.kind], params.name,
                                       doing=f"reading {what}")
                progress = progress_of(found)
                output = {"kind": params.kind, "namespace": params.namespace,
                          "name": params.name, "done": progress.done,
                          "message": progress.message, **_counts(found)}
                if progress.failed:
                    raise ActionFailed(f"{what}: {progress.message}", output=output)
                if progress.done or ctx.dry_run:
                    return ActionResult(f"{_read_only(ctx)}{what}: {progress.message}", output)
                if time.monotonic() + params.interval.total_seconds() > deadline:
                    waited = (f" after {format_duration(params.within)}"
                              if params.within else "")
                    raise ActionFailed(f"{what} has not rolled out{waited}: {progress.message}",
                                       output=output)
                await asyncio.sleep(params.interval.total_seconds())


def _counts(found: dict[str, Any]) -> dict[str, Any]:
    status = found.get("status", {})
    return {"replicas": found.get("spec", {}).get("replicas", 1),
            "updated": status.get("updatedReplicas", 0),
            "available": status.get("availableReplicas", 0),
            "ready": status.get("readyReplicas", 0)}


# -- restart -----------------------------------------------------------------------------------

class RolloutRestart:
    name: ClassVar[str] = "kubernetes.rollout_restart"
    Params = WorkloadParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Restarts every pod of a Deployment or StatefulSet, as `kubectl rollout restart` does "
        "(a new restartedAt annotation on the pod template)."
    )

    async def _read(self, kube: Kube, params: WorkloadParams) -> tuple[dict[str, Any], str]:
        from app.actions.kube_client import WORKLOADS
        what = described(params.kind, params.namespace, params.name)
        found = await kube.get(WORKLOADS[params.kind], params.name, doing=f"reading {what}")
        if found.get("spec", {}).get("paused"):
            raise ActionFailed(f"{what} is paused: resume it first (kubectl rollout resume "
                               f"{params.kind.lower()}/{params.name} -n {params.namespace})")
        return found, what

    async def plan(self, ctx: ActionContext, params: WorkloadParams) -> ActionPlan:
        """Which pods would be replaced: the replicas and images of the template now."""
        from app.actions.kube_client import Kube
        async with Kube(ctx, params) as kube:
            found, what = await self._read(kube, params)
        template = found["spec"]["template"]
        replicas = found["spec"].get("replicas", 1)
        last = template.get("metadata", {}).get("annotations", {}).get(RESTARTED_AT)
        summary = (f"restart {what}: replace its {replicas} pods of {', '.join(images(template))}"
                   f" one by one{f' (last restart {last})' if last else ''}")
        return ActionPlan(summary=summary, resolved={
            "cluster": kube.host, "kind": params.kind, "namespace": params.namespace,
            "name": params.name, "replicas": replicas, "images": images(template),
            "last_restart": last})

    async def run(self, ctx: ActionContext, params: WorkloadParams) -> ActionResult:
        from app.actions.kube_client import WORKLOADS, Kube, PatchType
        async with Kube(ctx, params) as kube:
            found, what = await self._read(kube, params)
            output = {"kind": params.kind, "namespace": params.namespace, "name": params.name,
                      "images": images(found["spec"]["template"])}
            if ctx.dry_run:
                return ActionResult(f"would restart {what} (a new {RESTARTED_AT} on its pod "
                                    "template)", {**output, "changed": False})
            now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}
            await kube.patch(WORKLOADS[params.kind], params.name, body,
                             patch_type=PatchType.STRATEGIC, doing=f"restarting {what}")
        return ActionResult(f"restarted {what} ({RESTARTED_AT}={now})",
                            {**output, "restarted_at": now, "changed": True})


# -- undo --------------------------------------------------------------------------------------

class UndoParams(KubeParams):
    kind: Literal["Deployment"] = "Deployment"
    # The revision to go back to; none: the previous one.
    to_revision: int | None = Field(default=None, ge=1)


@dataclass(frozen=True)
class _Undo:
    deployment: dict[str, Any]
    target: dict[str, Any]
    current_revision: int | None
    to_revision: int

    @property
    def no_change(self) -> bool:
        return (without_hash(self.target["spec"]["template"])
                == without_hash(self.deployment["spec"]["template"]))


class RolloutUndo:
    name: ClassVar[str] = "kubernetes.rollout_undo"
    Params = UndoParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Rolls a Deployment back to its previous revision (or `to_revision`), as `kubectl "
        "rollout undo` does: the old ReplicaSet's pod template goes back into the Deployment."
    )

    async def _resolve(self, kube: Kube, params: UndoParams) -> _Undo:
        from app.actions.kube_client import Deployment, ReplicaSet
        what = described("Deployment", params.namespace, params.name)
        deployment = await kube.get(Deployment, params.name, doing=f"reading {what}")
        if deployment.get("spec", {}).get("paused"):
            raise ActionFailed(f"{what} is paused: resume it first (kubectl rollout resume "
                               f"deployment/{params.name} -n {params.namespace})")
        labels = deployment["spec"].get("selector", {}).get("matchLabels", {})
        replica_sets = await kube.list(ReplicaSet, labels=labels,
                                       doing=f"listing the ReplicaSets of {what}")
        target, revision = undo_target(deployment, replica_sets, params.to_revision)
        return _Undo(deployment, target, revision_of(deployment), revision)

    @staticmethod
    def _change(undo: _Undo, what: str) -> str:
        source = (f"revision {undo.current_revision} "
                  f"({', '.join(images(undo.deployment['spec']['template']))})")
        target = (f"revision {undo.to_revision} "
                  f"({', '.join(images(undo.target['spec']['template']))})")
        if undo.no_change:
            return f"{what}: already at the template of {target} (no change)"
        return f"{what}: {source} → {target}"

    async def plan(self, ctx: ActionContext, params: UndoParams) -> ActionPlan:
        """The revision the Deployment would go back to, and the images on each side."""
        from app.actions.kube_client import Kube
        what = described("Deployment", params.namespace, params.name)
        async with Kube(ctx, params) as kube:
            undo = await self._resolve(kube, params)
        return ActionPlan(summary=f"undo {self._change(undo, what)}", resolved={
            "cluster": kube.host, "namespace": params.namespace, "name": params.name,
            "from_revision": undo.current_revision, "to_revision": undo.to_revision,
            "to_images": images(undo.target["spec"]["template"]),
            "to_replica_set": undo.target["metadata"]["name"]})

    async def run(self, ctx: ActionContext, params: UndoParams) -> ActionResult:
        from app.actions.kube_client import Deployment, Kube, PatchType
        what = described("Deployment", params.namespace, params.name)
        async with Kube(ctx, params) as kube:
            undo = await self._resolve(kube, params)
            output = {"namespace": params.namespace, "name": params.name,
                      "from_revision": undo.current_revision, "to_revision": undo.to_revision,
                      "images": images(undo.target["spec"]["template"])}
            if undo.no_change:
                return ActionResult(self._change(undo, what), {**output, "changed": False})
            if ctx.dry_run:
                return ActionResult(f"would undo {self._change(undo, what)}",
                                    {**output, "changed": False})
            await kube.patch(Deployment, params.name, undo_patch(undo.deployment, undo.target),
                             patch_type=PatchType.JSON, doing=f"rolling back {what}")
        return ActionResult(f"rolled back {self._change(undo, what)}",
                            {**output, "changed": True})


# -- scale -------------------------------------------------------------------------------------

class ScaleParams(WorkloadParams):
    replicas: int = Field(ge=0, le=10_000)


class Scale:
    name: ClassVar[str] = "kubernetes.scale"
    Params = ScaleParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Sets the replicas of a Deployment or StatefulSet through its scale subresource "
        "(a no-op when it already has them)."
    )

    async def _current(self, kube: Kube, params: ScaleParams) -> dict[str, Any]:
        from app.actions.kube_client import WORKLOADS
        what = described(params.kind, params.namespace, params.name)
        return await kube.get(WORKLOADS[params.kind].Scale, params.name,
                              doing=f"reading the scale of {what}")

    @staticmethod
    def _change(what: str, current: int, wanted: int) -> str:
        if current == wanted:
            return f"{what}: already {wanted} replicas (no change)"
        return f"{what}: {current} → {wanted} replicas"

    async def plan(self, ctx: ActionContext, params: ScaleParams) -> ActionPlan:
        """The replica count now and after."""
        from app.actions.kube_client import Kube
        what = described(params.kind, params.namespace, params.name)
        async with Kube(ctx, params) as kube:
            scale = await self._current(kube, params)
        current = scale.get("spec", {}).get("replicas", 0)
        return ActionPlan(summary=f"scale {self._change(what, current, params.replicas)}",
                          resolved={"cluster": kube.host, "kind": params.kind,
                                    "namespace": params.namespace, "name": params.name,
                                    "from": current, "to": params.replicas})

    async def run(self, ctx: ActionContext, params: ScaleParams) -> ActionResult:
        from app.actions.kube_client import WORKLOADS, Kube
        what = described(params.kind, params.namespace, params.name)
        async with Kube(ctx, params) as kube:
            scale = await self._current(kube, params)
            current = scale.get("spec", {}).get("replicas", 0)
            output = {"kind": params.kind, "namespace": params.namespace, "name": params.name,
                      "from": current, "to": params.replicas}
            if current == params.replicas:
                return ActionResult(self._change(what, current, params.replicas),
                                    {**output, "changed": False})
            if ctx.dry_run:
                return ActionResult(f"would scale {self._change(what, current, params.replicas)}",
                                    {**output, "changed": False})
            # The resourceVersion read is a precondition: a scale changed meanwhile is a 409.
            body = WORKLOADS[params.kind].Scale.from_dict({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": params.name, "namespace": params.namespace,
                             "resourceVersion": scale["metadata"]["resourceVersion"]},
                "spec": {"replicas": params.replicas}})
            await kube.replace(body, params.name, doing=f"scaling {what}")
        return ActionResult(f"scaled {self._change(what, current, params.replicas)}",
                            {**output, "changed": True})


def kubernetes_actions() -> list[Any]:
    """The kubernetes.* actions."""
    return [RolloutStatus(), RolloutRestart(), RolloutUndo(), Scale()]

