"""The `registry.*` actions over the embedded model registry (see `model_registry`).

`registry.set_alias` takes a version or `previous`: the last version that held the alias
before the current one and still passes manifest verification, the usual rollback target.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from app.actions._support import VersionStr
from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionParams,
    ActionPlan,
    ActionResult,
)
from app.actions.embedded_registry import ModelRegistry, RegistryError

ModelName = Annotated[str, Field(min_length=1, max_length=128,
                                 pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
AliasName = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_-]*$")]


def _registry(ctx: ActionContext) -> ModelRegistry:
    return ModelRegistry(ctx.settings.registry_dir)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking registry call in a thread; RegistryError becomes ActionFailed."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except RegistryError as exc:
        raise ActionFailed(str(exc)) from None


async def _hashing_call(fn: Any, *args: Any) -> Any:
    """Like `_call`, passing a stop event that a cancellation sets, so hashing stops early."""
    stop = threading.Event()
    try:
        return await _call(fn, *args, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _brief(reason: str, limit: int = 60) -> str:
    """A reason short enough for a plan line (the step output keeps it whole)."""
    return reason if len(reason) <= limit else reason[:limit].rstrip() + "…"


def _read_only(ctx: ActionContext) -> str:
    return "dry run (read-only, ran for real): " if ctx.dry_run else ""


class GetAliasParams(ActionParams):
    model: ModelName
    alias: AliasName


class RegistryGetAlias:
    name: ClassVar[str] = "registry.get_alias"
    Params = GetAliasParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = "Reads which version of a model an alias points at."

    async def run(self, ctx: ActionContext, params: GetAliasParams) -> ActionResult:
        state = await _call(_registry(ctx).get_alias, params.model, params.alias)
        if state is None:
            raise ActionFailed(f"alias {params.alias!r} of model {params.model!r} is not set")
        return ActionResult(
            f"{_read_only(ctx)}alias {params.alias} of {params.model} is version {state.version}",
            {"model": params.model, "alias": params.alias, "version": state.version,
             "set_at": state.set_at, "reason": state.reason})


class SetAliasParams(ActionParams):
    model: ModelName
    alias: AliasName
    # A version name, or `previous` for the rollback target.
    version: VersionStr
    reason: str | None = Field(default=None, max_length=500)


async def _rolled_back_by_this_step(ctx: ActionContext, registry: ModelRegistry,
                                    params: SetAliasParams) -> str | None:
    """The version this very step already rolled the alias back to, if it did: a retried or
    resumed `previous` completes that move and never rolls back a second time."""
    if ctx.execution_id is None or ctx.step_id is None:
        return None
    history = await _call(registry.history, params.model, params.alias)
    last = history[-1] if history else None
    if last and (last.execution_id, last.step_id, last.kind) == (ctx.execution_id, ctx.step_id,
                                                                 "rollback"):
        return last.to_version
    return None


class RegistrySetAlias:
    name: ClassVar[str] = "registry.set_alias"
    Params = SetAliasParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Points an alias at a version, or at `previous` (the last verified version that held "
        "it); setting the current version is a no-op. Every change is appended to the history."
    )

    async def plan(self, ctx: ActionContext, params: SetAliasParams) -> ActionPlan:
        """The move as it would happen now, with `previous` resolved and verified."""
        before, target, output = await self._resolve(ctx, _registry(ctx), params)
        described = f"{params.alias} of {params.model}"
        if before == target:
            summary = f"{described}: already version {target} (no change)"
        else:
            source = f"version {before}" if before else "(unset)"
            summary = f"{described}: {source} → version {target}"
            if params.version == "previous":
                summary += " (the last version that held it; its manifest verifies)"
        if output.get("skipped"):
            summary += "; skipped " + ", ".join(
                f"version {s['version']} ({_brief(s['reason'])})" for s in output["skipped"])
        return ActionPlan(summary=summary, resolved={
            "model": params.model, "alias": params.alias, "from": before, "to": target})

    async def _resolve(self, ctx: ActionContext, registry: ModelRegistry,
                       params: SetAliasParams) -> tuple[str | None, str, dict[str, Any]]:
        """(the version the alias holds now, the version it would move to, output facts)."""
        current = await _call(registry.get_alias, params.model, params.alias)
        before = current.version if current else None
        output: dict[str, Any] = {"model": params.model, "alias": params.alias, "from": before}
        target = params.version
        if target == "previous":
            resumed = await _rolled_back_by_this_step(ctx, registry, params)
            if resumed is not None:
                target = resumed
                output["resumed"] = True
            else:
                rollback = await _hashing_call(registry.resolve_previous, params.model,
                                               params.alias)
                target = rollback.version
                if rollback.skipped:
                    output["skipped"] = [{"version": v, "reason": r}
                                         for v, r in rollback.skipped]
        else:
            versions = await _call(registry.list_versions, params.model)
            if target not in versions:
                raise ActionFailed(f"model {params.model!r} has no version {target} "
                                   f"(versions: {', '.join(versions) or 'none'})")
        output["to"] = target
        return before, target, output

    async def run(self, ctx: ActionContext, params: SetAliasParams) -> ActionResult:
        registry = _registry(ctx)
        before, target, output = await self._resolve(ctx, registry, params)
        described = f"alias {params.alias} of {params.model}"
        if before == target:
            output["changed"] = False
            return ActionResult(f"{described} already points at version {target}", output)
        if ctx.dry_run:
            output["changed"] = False
            source = f"from version {before}" if before else "(unset)"
            return ActionResult(f"would set {described} {source} to version {target}", output)
        reason = params.reason or f"runbookd execution {ctx.execution_id} step {ctx.step_id}"
        kind = "rollback" if params.version == "previous" else "set"
        change = await _call(registry.set_alias, params.model, params.alias, target,
                             reason=reason, execution_id=ctx.execution_id, step_id=ctx.step_id,
                             kind=kind)
        # Another writer may have moved the alias between the read above and the lock.
        output["from"] = change.previous
        output["changed"] = change.changed
        source = f"from version {change.previous}" if change.previous else "(was unset)"
        return ActionResult(f"set {described} {source} to version {target}", output)


class ListVersionsParams(ActionParams):
    model: ModelName


class RegistryListVersions:
    name: ClassVar[str] = "registry.list_versions"
    Params = ListVersionsParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = "Lists a model's versions and its aliases."

    async def run(self, ctx: ActionContext, params: ListVersionsParams) -> ActionResult:
        registry = _registry(ctx)
        versions = await _call(registry.list_versions, params.model)
        aliases = await _call(registry.aliases, params.model)
        shown = ", ".join(f"{a}={v}" for a, v in aliases.items()) or "no aliases"
        return ActionResult(
            f"{_read_only(ctx)}{params.model} has {len(versions)} version(s) ({shown})",
            {"model": params.model, "versions": versions, "aliases": aliases})


class VerifyVersionParams(ActionParams):
    model: ModelName
    version: VersionStr | None = None
    alias: AliasName | None = None

    @model_validator(mode="after")
    def _one_target(self) -> VerifyVersionParams:
        if (self.version is None) == (self.alias is None):
            raise ValueError("give exactly one of `version` or `alias`")
        return self


class RegistryVerify:
    name: ClassVar[str] = "registry.verify"
    Params = VerifyVersionParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Checks a version's files (or the aliased version's) against its manifest."
    )

    async def run(self, ctx: ActionContext, params: VerifyVersionParams) -> ActionResult:
        registry = _registry(ctx)
        version = params.version
        if params.alias is not None:
            state = await _call(registry.get_alias, params.model, params.alias)
            if state is None:
                raise ActionFailed(f"alias {params.alias!r} of model {params.model!r} is not set")
            version = state.version
        assert version is not None
        problems = await _hashing_call(registry.verify, params.model, version)
        manifest = await _call(registry.read_manifest, params.model, version)
        output: dict[str, Any] = {"model": params.model, "version": version,
                                  "files_checked": len(manifest),
                                  "failed": [p.as_dict() for p in problems[:20]],
                                  "ok": not problems}
        label = f"{params.model} version {version}"
        if problems:
            listed = "; ".join(p.describe() for p in problems[:5])
            raise ActionFailed(f"{_read_only(ctx)}{label} fails verification "
                               f"({len(problems)} of {len(manifest)} file(s)): {listed}",
                               output=output)
        return ActionResult(f"{_read_only(ctx)}{label}: all {len(manifest)} file(s) match "
                            "its manifest", output)


def registry_actions() -> list[Any]:
    """Every `registry.*` action."""
    return [RegistryGetAlias(), RegistrySetAlias(), RegistryListVersions(), RegistryVerify()]
