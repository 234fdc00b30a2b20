"""`mlflow.*`: the MLflow Model Registry over its REST API, through the allow-listed client.

Alias history. MLflow keeps only where an alias points now, so runbookd records where it
pointed before in a registered-model tag that these actions write:

    key:   runbookd.alias_history.<alias>
    value: JSON list, oldest first, at most 20 entries:
           [{"v": "6", "t": "2026-11-26T06:00:00Z", "x": 42, "s": "rollback", "k": "rollback"}]
           (version, time, execution id, step id, kind: set | rollback | seen)

`mlflow.set_alias` and `mlflow.rollback_alias` append to it. When the alias was moved outside
runbookd (the UI, a training job), the version found there is appended first, so the history
still ends with the version the alias held. Where `mlflow.rollback_alias` goes is the runbook's
`previous:` policy (runbookd's history, the newest older READY version, or the newest older
version carrying a tag CI sets; see `app.actions.mlflow_previous`), and with `verify: true` it
skips versions whose files fail the `manifest:` policy (`app.actions.mlflow_artifacts`, which
reads files only through MLflow, whatever store holds them). A rollback whose newest history
entry is a rollback written by the same execution and step is already done and changes
nothing, so a retried or resumed step never goes back twice: the tag is written before the
alias moves, so after a crash in between the retry finds its own entry and completes that same
move. Concurrent rollbacks of one model are kept apart by the engine's per-target lock.

Auth: `auth_secret` names a secret in settings.secrets; it is sent as a Bearer token, or as
HTTP basic auth (`user:password`) with `auth_scheme: Basic`. It never appears in outputs.

Plans (read-only): `set_alias`, `rollback_alias` and `set_tag` resolve the change against the
server as `run` would, with the same code, e.g. "champion of fraud-v3 (MLflow): version 7 →
version 6 (newest older READY version; no runbookd history)"; `resolved` holds the server's
host, the model, and the values before and after.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from app.actions._support import VersionStr
from app.actions.base import ActionContext, ActionFailed, ActionPlan, ActionResult
from app.actions.checksums import MANIFEST_NAME
from app.actions.mlflow_artifacts import ManifestPolicy, verify_files
from app.actions.mlflow_client import HISTORY_TAG, AliasParams, Mlflow, MlflowParams
from app.actions.mlflow_previous import RollbackParams, resolve_rollback

__all__ = ["HISTORY_TAG", "MlflowGetAlias", "MlflowRollbackAlias", "MlflowSetAlias",
           "MlflowSetTag", "MlflowVerifyVersion", "RollbackParams", "mlflow_actions"]


def _read_only(ctx: ActionContext) -> str:
    return "dry run (read-only, ran for real): " if ctx.dry_run else ""


def _alias_plan(api: Mlflow, params: AliasParams, *, current: str | None, target: str,
                why: str = "") -> ActionPlan:
    """The plan of an alias move: one line, and the values the move will use."""
    described = f"{params.alias} of {params.model} (MLflow)"
    if current == target:
        summary = f"{described}: already version {target} (no change)"
    else:
        source = f"version {current}" if current else "(unset)"
        summary = f"{described}: {source} → version {target}{why}"
    return ActionPlan(summary=summary, resolved={
        "mlflow": api.host, "model": params.model, "alias": params.alias, "from": current,
        "to": target})


class MlflowGetAlias:
    name: ClassVar[str] = "mlflow.get_alias"
    Params = AliasParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = "Reads the version an MLflow registered-model alias points at."

    async def run(self, ctx: ActionContext, params: AliasParams) -> ActionResult:
        api = Mlflow(ctx, params)
        version = await api.get_alias(params.model, params.alias)
        if version is None:
            raise ActionFailed(f"alias {params.alias!r} of MLflow model {params.model!r} is "
                               f"not set (at {api.host})")
        return ActionResult(f"{_read_only(ctx)}alias {params.alias} of {params.model} is "
                            f"version {version}",
                            {"model": params.model, "alias": params.alias, "version": version})


class SetAliasParams(AliasParams):
    version: VersionStr


async def _set_alias_from(api: Mlflow, params: SetAliasParams) -> str | None:
    """Check that the version exists; the version the alias holds now (None: unset)."""
    await api.require_version(params.model, params.version)
    return await api.get_alias(params.model, params.alias)


async def _move_alias(ctx: ActionContext, api: Mlflow, params: AliasParams, *, target: str,
                      current: str | None, history: list[dict[str, Any]], verb: str,
                      kind: str) -> ActionResult:
    described = f"alias {params.alias} of MLflow model {params.model}"
    output = {"model": params.model, "alias": params.alias, "from": current, "to": target}
    source = f"from version {current}" if current else "(unset)"
    if current == target:
        if not ctx.dry_run:
            await api.record(params.model, params.alias, history, None, target, kind="seen")
        return ActionResult(f"{described} already points at version {target}",
                            {**output, "changed": False})
    if ctx.dry_run:
        return ActionResult(f"would {verb} {described} {source} to version {target}",
                            {**output, "changed": False})
    await api.record(params.model, params.alias, history, current, target, kind=kind)
    await api.set_alias(params.model, params.alias, target)
    return ActionResult(f"{verb} {described} {source} to version {target}",
                        {**output, "changed": True})


class MlflowSetAlias:
    name: ClassVar[str] = "mlflow.set_alias"
    Params = SetAliasParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Points an MLflow alias at a version (a no-op when it already does) and records the "
        "alias history that mlflow.rollback_alias uses."
    )

    async def plan(self, ctx: ActionContext, params: SetAliasParams) -> ActionPlan:
        """The move as it would happen now: from the version the alias holds."""
        api = Mlflow(ctx, params)
        current = await _set_alias_from(api, params)
        return _alias_plan(api, params, current=current, target=params.version)

    async def run(self, ctx: ActionContext, params: SetAliasParams) -> ActionResult:
        api = Mlflow(ctx, params)
        current = await _set_alias_from(api, params)
        history = await api.history(params.model, params.alias)
        return await _move_alias(ctx, api, params, target=params.version, current=current,
                                 history=history, verb="set", kind="set")


class MlflowRollbackAlias:
    name: ClassVar[str] = "mlflow.rollback_alias"
    Params = RollbackParams
    # A second run by the same step finds its own history entry and changes nothing.
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Moves an MLflow alias back to the previous version: from runbookd's alias history, "
        "the newest older READY version, or the newest older version carrying a tag CI sets "
        "(`previous:`); with `verify: true`, skips versions whose files fail `manifest:`."
    )

    async def plan(self, ctx: ActionContext, params: RollbackParams) -> ActionPlan:
        """The rollback as it would happen now, with `previous` resolved as `run` does."""
        api = Mlflow(ctx, params)
        found = await resolve_rollback(ctx, api, params)
        if found.resumed:
            why = " (finishing this step's own rollback)"
        else:
            why = f" ({found.why}" + (f"; {_checked(params)}" if params.verify else "") + ")"
        plan = _alias_plan(api, params, current=found.current, target=found.target, why=why)
        if found.skipped:
            return ActionPlan(summary=f"{plan.summary}; skipped {', '.join(found.skipped)}",
                              resolved=plan.resolved)
        return plan

    async def run(self, ctx: ActionContext, params: RollbackParams) -> ActionResult:
        api = Mlflow(ctx, params)
        found = await resolve_rollback(ctx, api, params)
        if found.resumed:
            return await _resume(ctx, api, params, current=found.current, target=found.target)
        result = await _move_alias(ctx, api, params, target=found.target, current=found.current,
                                   history=found.history, verb="roll back", kind="rollback")
        result.output.update(skipped=found.skipped, previous=found.policy, why=found.why)
        return result


def _checked(params: RollbackParams) -> str:
    """How the target's files were checked, in a few words for the plan."""
    if params.manifest == "run_artifacts":
        return "its artifacts read back as MLflow lists them"
    if params.manifest == "if_present":
        return f"its artifacts verify where it has a {params.manifest_file}"
    return "its artifacts verify"


async def _resume(ctx: ActionContext, api: Mlflow, params: RollbackParams, *, current: str,
                  target: str) -> ActionResult:
    """This step already recorded its rollback to `target`: finish it, never go back again."""
    output = {"model": params.model, "alias": params.alias, "from": current, "to": target,
              "resumed": True}
    described = f"alias {params.alias} of MLflow model {params.model}"
    if current == target:
        return ActionResult(f"{described} was already rolled back to version {target} by this "
                            "step", {**output, "changed": False})
    if ctx.dry_run:
        return ActionResult(f"would finish rolling back {described} from version {current} to "
                            f"version {target}", {**output, "changed": False})
    await api.set_alias(params.model, params.alias, target)
    return ActionResult(f"finished rolling back {described} from version {current} to version "
                        f"{target}", {**output, "changed": True})


class SetTagParams(MlflowParams):
    version: VersionStr
    key: str = Field(min_length=1, max_length=250)
    value: str = Field(max_length=5000)


class MlflowSetTag:
    name: ClassVar[str] = "mlflow.set_tag"
    Params = SetTagParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Sets a tag on an MLflow model version."

    async def plan(self, ctx: ActionContext, params: SetTagParams) -> ActionPlan:
        """The tag's value now and after; the version must exist."""
        api = Mlflow(ctx, params)
        found = await api.require_version(params.model, params.version)
        current = next((str(t.get("value")) for t in found.get("tags", [])
                        if t.get("key") == params.key), None)
        described = f"tag {params.key} of {params.model} version {params.version} (MLflow)"
        if current == params.value:
            summary = f"{described}: already {_shown(current)} (no change)"
        else:
            summary = f"{described}: {_shown(current)} → {_shown(params.value)}"
        return ActionPlan(summary=summary, resolved={
            "mlflow": api.host, "model": params.model, "version": params.version,
            "key": params.key, "from": current, "to": params.value})

    async def run(self, ctx: ActionContext, params: SetTagParams) -> ActionResult:
        api = Mlflow(ctx, params)
        await api.require_version(params.model, params.version)
        label = f"tag {params.key}={params.value!r} on {params.model} version {params.version}"
        output = {"model": params.model, "version": params.version, "key": params.key,
                  "value": params.value}
        if ctx.dry_run:
            return ActionResult(f"would set {label}", output)
        await api.call("POST", "model-versions/set-tag",
                       body={"name": params.model, "version": params.version,
                             "key": params.key, "value": params.value},
                       doing=f"setting {label}")
        return ActionResult(f"set {label}", output)


def _shown(value: str | None) -> str:
    """A tag value for a one-line plan: quoted, at most 80 characters."""
    if value is None:
        return "(unset)"
    return repr(value if len(value) <= 80 else value[:80] + "…")


class VerifyParams(MlflowParams):
    version: VersionStr | None = None
    alias: str | None = Field(default=None, max_length=255)
    manifest: ManifestPolicy = "require"
    manifest_file: str = Field(default=MANIFEST_NAME, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _one_target(self) -> VerifyParams:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of `version` or `alias`")
        return self


class MlflowVerifyVersion:
    name: ClassVar[str] = "mlflow.verify_version"
    Params = VerifyParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Streams an MLflow model version's files through MLflow and checks them against its "
        "manifest, or against MLflow's own listing (`manifest: run_artifacts`); names each "
        "file that fails."
    )

    async def run(self, ctx: ActionContext, params: VerifyParams) -> ActionResult:
        api = Mlflow(ctx, params)
        version = params.version
        if params.alias is not None:
            version = await api.get_alias(params.model, params.alias)
            if version is None:
                raise ActionFailed(f"alias {params.alias!r} of MLflow model {params.model!r} "
                                   f"is not set (at {api.host})")
        assert version is not None
        found = await api.require_version(params.model, version)
        checked = await verify_files(api, params.model, found, policy=params.manifest,
                                     manifest_file=params.manifest_file)
        problems = checked.problems
        output = {"model": params.model, "version": version, "files_checked": checked.checked,
                  "failed": [p.as_dict() for p in problems[:20]], "ok": not problems}
        if checked.checksum is not None:
            output["checksum"] = checked.checksum
        label = f"{_read_only(ctx)}MLflow model {params.model} version {version}"
        if problems:
            listed = "; ".join(p.describe() for p in problems[:5])
            raise ActionFailed(f"{label} fails verification ({len(problems)} of "
                               f"{checked.checked} file(s)): {listed}", output=output)
        if not checked.checked:
            return ActionResult(f"{label} has {checked.basis}", output)
        return ActionResult(f"{label}: all {checked.checked} file(s) {checked.basis}", output)


def mlflow_actions() -> list[Any]:
    """Every `mlflow.*` action."""
    return [MlflowGetAlias(), MlflowSetAlias(), MlflowRollbackAlias(), MlflowSetTag(),
            MlflowVerifyVersion()]
