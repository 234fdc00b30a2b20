"""`argo.*`: Argo Rollouts (`rollouts.argoproj.io`) through the Kubernetes API, doing what the
`kubectl argo rollouts` plugin does (pkg/kubectl-argo-rollouts/cmd/abort, promote, status).

- `rollout_abort` merge-patches `{"status": {"abort": true}}` on the status subresource (the
  resource itself on a CRD without one, as the plugin falls back). With no update in progress
  it does nothing: aborting a fully promoted rollout scaled the stable ReplicaSet to zero
  (argo-rollouts#1292) or sent the controller into a loop (#2982). The patch carries the
  resourceVersion it was decided on, so a rollout that finished meanwhile is read again, and
  is then left alone.
- `rollout_promote` clears the pause conditions (or moves to the next canary step), and with
  `full: true` sets `status.promoteFull`, exactly as the plugin's patches; `spec.paused` is
  cleared with a second patch on the resource. An aborted rollout is refused: promote does not
  resume it (`kubectl argo rollouts retry` does).
- `rollout_status` reads the phase the controller computes (Healthy, Progressing, Paused,
  Degraded), as `kubectl argo rollouts status`; `within` waits for an expected phase.

Plans say where the rollout is: "abort rollout ml-serving/fraud-serving (canary at step 2/5,
20% traffic) → all traffic to stable 6b7f9c".
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from app.actions.base import ActionContext, ActionFailed, ActionPlan, ActionResult
from app.actions.kube_params import KubeConflict, KubeNotFound, KubeParams, Polling
from app.durations import format_duration

# lightkube (about 20 MiB) loads on the first call to a cluster, not at start-up: each function
# that talks to one imports kube_client itself.
if TYPE_CHECKING:
    from app.actions.kube_client import Kube

Phase = Literal["Healthy", "Progressing", "Paused", "Degraded"]
# A rollout the controller changes between our read and our patch is read again this often.
ATTEMPTS = 3


# -- where a rollout is: pure, as the plugin computes it ---------------------------------------

def _status(ro: dict[str, Any]) -> dict[str, Any]:
    return ro.get("status") or {}


def _canary(ro: dict[str, Any]) -> dict[str, Any] | None:
    return (ro.get("spec") or {}).get("strategy", {}).get("canary")


def fully_promoted(ro: dict[str, Any]) -> bool:
    """No update in progress: the stable ReplicaSet is the desired one (or none exists yet)."""
    status = _status(ro)
    stable, current = status.get("stableRS"), status.get("currentPodHash")
    return not stable or not current or stable == current


def step_index(ro: dict[str, Any]) -> int | None:
    """The current canary step's index (0 when unset), None without canary steps."""
    canary = _canary(ro)
    if not canary or not canary.get("steps"):
        return None
    return int(_status(ro).get("currentStepIndex") or 0)


def set_weight(ro: dict[str, Any]) -> int:
    """The canary weight the current step asks for (GetCurrentSetWeight)."""
    canary = _canary(ro) or {}
    full = int((canary.get("trafficRouting") or {}).get("maxTrafficWeight") or 100)
    if _status(ro).get("abort"):
        return 0
    index, steps = step_index(ro), canary.get("steps") or []
    if index is None or index >= len(steps):
        return full
    for step in reversed(steps[:index + 1]):
        if step.get("setWeight") is not None:
            return int(step["setWeight"])
    return 0


def traffic_weight(ro: dict[str, Any]) -> int:
    """The weight the traffic router reports for the canary, else the one asked for."""
    weights = (_status(ro).get("canary") or {}).get("weights") or {}
    reported = (weights.get("canary") or {}).get("weight")
    return int(reported) if reported is not None else set_weight(ro)


def where(ro: dict[str, Any]) -> str:
    """`canary at step 2/5, 20% traffic`, or the blue-green equivalent."""
    status = _status(ro)
    if _canary(ro) is None:
        return (f"blue-green, preview {status.get('currentPodHash', '?')}, active "
                f"{status.get('stableRS', '?')}")
    index, steps = step_index(ro), (_canary(ro) or {}).get("steps") or []
    at = f" at step {index}/{len(steps)}" if index is not None else ""
    return f"canary{at}, {traffic_weight(ro)}% traffic"


def phase(ro: dict[str, Any]) -> tuple[str, str]:
    """The phase and message, as the plugin reads them (GetRolloutPhase)."""
    status = _status(ro)
    try:
        if int(status.get("observedGeneration", "")) < ro["metadata"].get("generation", 0):
            return "Progressing", "waiting for rollout spec update to be observed"
    except ValueError:
        pass  # a v0.9 hash, not a number: nothing to compare
    if status.get("controllerPause") and not status.get("pauseConditions"):
        return "Progressing", "waiting for rollout to unpause"
    if status.get("phase"):
        return str(status["phase"]), str(status.get("message", ""))
    return "Unknown", "the controller has set no status.phase (Argo Rollouts before 1.0?)"


def promote_patches(ro: dict[str, Any], *, full: bool,
                    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any]]:
    """The plugin's patches: (spec, status, unified for a CRD without a status subresource)."""
    spec, status = ro.get("spec") or {}, _status(ro)
    unpause = {"spec": {"paused": False}} if spec.get("paused") else None
    if full:
        promote = None if fully_promoted(ro) else {"status": {"promoteFull": True}}
        return unpause, promote, {"spec": {"paused": False}, "status": {"promoteFull": True}}
    unified: dict[str, Any] = {"spec": {"paused": False}, "status": {"pauseConditions": None}}
    index, steps = step_index(ro), (_canary(ro) or {}).get("steps") or []
    inconclusive = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}
                    ).get("status") == "Inconclusive"
    following = None if index is None else min(index + 1, len(steps))
    if inconclusive and status.get("pauseConditions") and status.get("controllerPause"):
        step_patch = {"pauseConditions": None, "controllerPause": False}
        if following is not None:
            step_patch["currentStepIndex"] = following
        return unpause, {"status": step_patch}, unified
    if status.get("pauseConditions"):
        return unpause, {"status": {"pauseConditions": None}}, unified
    if following is not None:
        moved = {"pauseConditions": None, "currentStepIndex": following}
        return unpause, {"status": moved}, {"spec": {"paused": False}, "status": moved}
    return unpause, None, unified


# -- the actions -------------------------------------------------------------------------------

class RolloutParams(KubeParams):
    pass


def _what(params: KubeParams) -> str:
    return f"rollout {params.namespace}/{params.name}"


async def _read(kube: Kube, params: KubeParams) -> dict[str, Any]:
    from app.actions.kube_client import Rollout
    return await kube.get(Rollout, params.name, doing=f"reading {_what(params)}")


async def _patch_status(kube: Kube, params: KubeParams, ro: dict[str, Any],
                        change: dict[str, Any], *, doing: str,
                        fallback: dict[str, Any] | None = None) -> bool:
    """Merge-patch the status subresource, on the resourceVersion that was read; on a CRD
    without one (404), patch the resource with `fallback` (or the same change). Returns False
    when the rollout changed meanwhile (409): the caller reads and decides again."""
    from app.actions.kube_client import PatchType, Rollout
    body = {**change, "metadata": {"resourceVersion": ro["metadata"]["resourceVersion"]}}
    try:
        await kube.patch(Rollout.Status, params.name, body, patch_type=PatchType.MERGE,
                         doing=doing)
    except KubeConflict:
        return False
    except KubeNotFound:
        whole = {**(fallback or change),
                 "metadata": {"resourceVersion": ro["metadata"]["resourceVersion"]}}
        try:
            await kube.patch(Rollout, params.name, whole, patch_type=PatchType.MERGE,
                             doing=doing)
        except KubeConflict:
            return False
    return True


def _abort_change(ro: dict[str, Any], what: str) -> str | None:
    """Why an abort would change nothing, or None when it would abort."""
    stable = _status(ro).get("stableRS")
    if _status(ro).get("abort"):
        return f"{what} is already aborted (stable {stable}): nothing to abort"
    if fully_promoted(ro):
        kept = f"stable {stable}" if stable else "no stable ReplicaSet yet"
        return f"{what} has no update in progress ({kept}): nothing to abort"
    return None


class RolloutAbort:
    name: ClassVar[str] = "argo.rollout_abort"
    Params = RolloutParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Aborts an Argo Rollouts update in progress (all traffic back to stable), as `kubectl "
        "argo rollouts abort`; does nothing when no update is in progress."
    )

    async def plan(self, ctx: ActionContext, params: RolloutParams) -> ActionPlan:
        """Where the rollout is, and that all traffic would go to stable; or no change."""
        from app.actions.kube_client import Kube
        async with Kube(ctx, params) as kube:
            ro = await _read(kube, params)
        stable = _status(ro).get("stableRS")
        resolved = {"cluster": kube.host, "namespace": params.namespace, "name": params.name,
                    "stable": stable, "canary": _status(ro).get("currentPodHash")}
        unchanged = _abort_change(ro, f"rollout {params.namespace}/{params.name}")
        if unchanged:
            return ActionPlan(summary=f"{unchanged} (no change)",
                              resolved={**resolved, "abort": False})
        return ActionPlan(summary=f"abort {_what(params)} ({where(ro)}) → all traffic to "
                                  f"stable {stable}", resolved={**resolved, "abort": True})

    async def run(self, ctx: ActionContext, params: RolloutParams) -> ActionResult:
        from app.actions.kube_client import Kube
        async with Kube(ctx, params) as kube:
            for _ in range(ATTEMPTS):
                ro = await _read(kube, params)
                output = {"namespace": params.namespace, "name": params.name,
                          "stable": _status(ro).get("stableRS"),
                          "canary": _status(ro).get("currentPodHash"), "was": where(ro)}
                unchanged = _abort_change(ro, _what(params))
                if unchanged:
                    return ActionResult(unchanged, {**output, "changed": False})
                change = (f"{_what(params)} ({where(ro)}) → all traffic to stable "
                          f"{output['stable']}")
                if ctx.dry_run:
                    return ActionResult(f"would abort {change}", {**output, "changed": False})
                if await _patch_status(kube, params, ro, {"status": {"abort": True}},
                                       doing=f"aborting {_what(params)}"):
                    return ActionResult(f"aborted {change}", {**output, "changed": True})
        raise ActionFailed(f"{_what(params)} kept changing while being aborted ({ATTEMPTS} "
                           "tries): run the step again")


class PromoteParams(RolloutParams):
    # Skip the remaining steps, pauses and analysis (the plugin's --full).
    full: bool = False


def _promote_change(ro: dict[str, Any], params: PromoteParams) -> str | None:
    """What a promotion would do, or None when there is nothing to promote."""
    spec_patch, status_patch, _ = promote_patches(ro, full=params.full)
    if _status(ro).get("abort"):
        raise ActionFailed(f"{_what(params)} is aborted: promote does not resume it; after the "
                           f"fix, `kubectl argo rollouts retry rollout {params.name} -n "
                           f"{params.namespace}` does")
    if fully_promoted(ro) and not (ro.get("spec") or {}).get("paused"):
        return None
    if spec_patch is None and status_patch is None:
        return None
    now = where(ro)
    if params.full:
        return (f"fully promote {_what(params)} ({now}) → 100% to the new version, skipping "
                "the remaining steps, pauses and analysis")
    moved = (status_patch or {}).get("status", {}).get("currentStepIndex")
    steps = (_canary(ro) or {}).get("steps") or []
    if moved is not None:
        return f"promote {_what(params)} ({now}) → step {moved}/{len(steps)}"
    return f"promote {_what(params)} ({now}) → resume past the pause"


class RolloutPromote:
    name: ClassVar[str] = "argo.rollout_promote"
    Params = PromoteParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Promotes a paused Argo Rollouts update to its next step, or fully with `full: true`, "
        "as `kubectl argo rollouts promote [--full]`."
    )

    async def plan(self, ctx: ActionContext, params: PromoteParams) -> ActionPlan:
        """The step the rollout is at and the one it would move to; or no change."""
        from app.actions.kube_client import Kube
        async with Kube(ctx, params) as kube:
            ro = await _read(kube, params)
        change = _promote_change(ro, params)
        resolved = {"cluster": kube.host, "namespace": params.namespace, "name": params.name,
                    "full": params.full, "step": step_index(ro),
                    "canary": _status(ro).get("currentPodHash")}
        if change is None:
            return ActionPlan(summary=f"{_what(params)} is fully promoted: nothing to promote "
                                      "(no change)", resolved={**resolved, "promote": False})
        return ActionPlan(summary=change, resolved={**resolved, "promote": True})

    async def run(self, ctx: ActionContext, params: PromoteParams) -> ActionResult:
        from app.actions.kube_client import Kube, PatchType, Rollout
        async with Kube(ctx, params) as kube:
            for _ in range(ATTEMPTS):
                ro = await _read(kube, params)
                change = _promote_change(ro, params)
                output = {"namespace": params.namespace, "name": params.name,
                          "full": params.full, "was": where(ro)}
                if change is None:
                    return ActionResult(f"{_what(params)} is fully promoted: nothing to promote",
                                        {**output, "changed": False})
                if ctx.dry_run:
                    return ActionResult(f"would {change}", {**output, "changed": False})
                spec_patch, status_patch, unified = promote_patches(ro, full=params.full)
                doing = f"promoting {_what(params)}"
                if status_patch is not None and not await _patch_status(
                        kube, params, ro, status_patch, doing=doing, fallback=unified):
                    continue
                if spec_patch is not None:
                    await kube.patch(Rollout, params.name, spec_patch,
                                     patch_type=PatchType.MERGE, doing=doing)
                return ActionResult(f"done: {change}", {**output, "changed": True})
        raise ActionFailed(f"{_what(params)} kept changing while being promoted ({ATTEMPTS} "
                           "tries): run the step again")


class ArgoStatusParams(RolloutParams, Polling):
    # The phases that pass; Degraded fails at once unless it is expected (after an abort).
    expect: list[Phase] = Field(default_factory=lambda: ["Healthy"], min_length=1)


class RolloutStatus:
    name: ClassVar[str] = "argo.rollout_status"
    Params = ArgoStatusParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Reads an Argo Rollouts phase (Healthy, Progressing, Paused, Degraded) and where the "
        "canary is; passes when the phase is expected, waiting up to `within`."
    )

    async def run(self, ctx: ActionContext, params: ArgoStatusParams) -> ActionResult:
        from app.actions.kube_client import Kube
        deadline = time.monotonic() + (0 if ctx.dry_run else params.within.total_seconds())
        prefix = "dry run (read-only, ran for real): " if ctx.dry_run else ""
        async with Kube(ctx, params) as kube:
            while True:
                ro = await _read(kube, params)
                now, message = phase(ro)
                output = {"namespace": params.namespace, "name": params.name, "phase": now,
                          "message": message, "where": where(ro), "step": step_index(ro),
                          "weight": traffic_weight(ro),
                          "aborted": bool(_status(ro).get("abort")),
                          "stable": _status(ro).get("stableRS"),
                          "canary": _status(ro).get("currentPodHash")}
                said = f"{_what(params)} is {now}{f' ({message})' if message else ''}, " \
                       f"{where(ro)}"
                if now in params.expect or ctx.dry_run:
                    # A drill reads once and reports; it does not wait.
                    return ActionResult(f"{prefix}{said}", output)
                if now == "Degraded":
                    raise ActionFailed(f"{said}; expected {' or '.join(params.expect)}",
                                       output=output)
                if time.monotonic() + params.interval.total_seconds() > deadline:
                    waited = f" after {format_duration(params.within)}" if params.within else ""
                    raise ActionFailed(f"{said}{waited}; expected {' or '.join(params.expect)}",
                                       output=output)
                await asyncio.sleep(params.interval.total_seconds())


def argo_actions() -> list[Any]:
    """The argo.* actions."""
    return [RolloutAbort(), RolloutPromote(), RolloutStatus()]
