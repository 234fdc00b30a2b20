"""What "previous" means for `mlflow.rollback_alias`: one resolver for its `plan` and its `run`.

MLflow keeps no history of an alias (mlflow#2169, #6180), and in most teams CI moves aliases,
not runbookd. So the runbook chooses where a rollback goes (`previous:`):

  history             the last version that held the alias before the current one, from the
                      history runbookd records in the tag runbookd.alias_history.<alias>.
  newest_older_ready  the newest version numbered below the current one whose status is READY.
  tag                 the newest version below the current one carrying a version tag that CI
                      sets, e.g. `tag: {key: validated, value: "true"}`.
  auto (default)      runbookd's history when it knows the current version (its last entry is
                      the version the alias holds), else newest_older_ready: a history that CI
                      outran says nothing about what held the alias just before.

Every policy skips versions that are gone, not READY, or (with `verify: true`) fail the check
that `manifest:` names; the plan says which policy found the version, and what it skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.actions.base import ActionContext, ActionFailed
from app.actions.checksums import MANIFEST_NAME
from app.actions.mlflow_artifacts import ManifestPolicy, Unverifiable, verify_files
from app.actions.mlflow_client import HISTORY_TAG, AliasParams, Mlflow, version_number

# Each skipped candidate may have streamed a whole model: stop looking after this many.
MAX_SKIPPED = 10


class VersionTag(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=250)
    value: str = Field(max_length=5000)


class RollbackParams(AliasParams):
    previous: Literal["auto", "history", "newest_older_ready", "tag"] = "auto"
    tag: VersionTag | None = None
    # Skip candidates whose files fail the check that `manifest` names.
    verify: bool = False
    manifest: ManifestPolicy = "require"
    manifest_file: str = Field(default=MANIFEST_NAME, min_length=1, max_length=512)

    @model_validator(mode="after")
    def _coherent(self) -> RollbackParams:
        if self.previous == "tag" and self.tag is None:
            raise ValueError("previous: tag needs `tag: {key: ..., value: ...}`, the version "
                             "tag that marks a version fit to roll back to")
        if self.previous != "tag" and self.tag is not None:
            raise ValueError("`tag` applies only with previous: tag")
        if not self.verify and {"manifest", "manifest_file"} & self.model_fields_set:
            raise ValueError("`manifest` applies only with verify: true (add verify: true, or "
                             "remove manifest)")
        return self


@dataclass(frozen=True, kw_only=True)
class Rollback:
    """Where a rollback would take the alias, why, and what it skipped on the way."""

    current: str
    target: str
    history: list[dict[str, Any]]
    skipped: list[str]
    # The policy that found `target`, and the plan's words for why it is `previous`.
    policy: str = "history"
    why: str = ""
    # This very step already recorded its rollback to `target` (a retry or a resume).
    resumed: bool = False


async def resolve_rollback(ctx: ActionContext, api: Mlflow, params: RollbackParams) -> Rollback:
    """Resolve `previous` as the policy says. Reads only."""
    current = await api.get_alias(params.model, params.alias)
    if current is None:
        raise ActionFailed(f"alias {params.alias!r} of MLflow model {params.model!r} is not "
                           "set, so there is nothing to roll back")
    history = await api.history(params.model, params.alias)
    last = history[-1] if history else {}
    if (ctx.execution_id is not None and ctx.step_id is not None
            and (last.get("x"), last.get("s"), last.get("k")) == (ctx.execution_id,
                                                                    ctx.step_id, "rollback")):
        return Rollback(current=current, target=str(last["v"]), history=history, skipped=[],
                        policy="history", resumed=True)
    search = _Search(api, params, current=current, history=history)
    if params.previous == "history":
        return await search.history_walk()
    if params.previous == "auto" and history and str(last.get("v")) == current:
        return await search.history_walk()
    if params.previous == "tag":
        assert params.tag is not None
        return await search.newest_older(
            policy="tag", why=f"newest older version tagged {params.tag.key}="
                              f"{params.tag.value!r}", tag=params.tag)
    why = "newest older READY version"
    if params.previous == "auto":
        why += ("; the alias moved outside runbookd after its history ends at version "
                f"{last.get('v')}" if history else "; no runbookd history")
    return await search.newest_older(policy="newest_older_ready", why=why)


@dataclass
class _Search:
    api: Mlflow
    params: RollbackParams
    current: str
    history: list[dict[str, Any]]

    def _found(self, target: str, skipped: list[str], *, policy: str, why: str) -> Rollback:
        return Rollback(current=self.current, target=target, history=self.history,
                        skipped=skipped, policy=policy, why=why)

    def _none(self, explanation: str, skipped: list[str]) -> ActionFailed:
        detail = f"; skipped {'; '.join(skipped)}" if skipped else ""
        return ActionFailed(
            f"alias {self.params.alias!r} of MLflow model {self.params.model!r} has no "
            f"previous version to roll back to (current {self.current}; {explanation}{detail})")

    async def history_walk(self) -> Rollback:
        skipped: list[str] = []
        seen = {self.current}
        for entry in reversed(self.history):
            candidate = str(entry["v"])
            if candidate in seen:
                continue
            seen.add(candidate)
            found = await self.api.get_version(self.params.model, candidate)
            reason = "deleted" if found is None else await self._unusable(found)
            if reason is None:
                return self._found(candidate, skipped, policy="history",
                                   why="the last version that held it")
            skipped.append(f"version {candidate}: {reason}")
            if len(skipped) >= MAX_SKIPPED:
                break
        raise self._none(f"history in tag {HISTORY_TAG}{self.params.alias} has "
                         f"{len(self.history)} entries", skipped)

    async def newest_older(self, *, policy: str, why: str,
                           tag: VersionTag | None = None) -> Rollback:
        below = version_number(self.current)
        if below is None:
            raise ActionFailed(f"alias {self.params.alias!r} of MLflow model "
                               f"{self.params.model!r} holds version {self.current!r}, which is "
                               "not a version number, so no version is older: use "
                               "previous: history")
        skipped: list[str] = []
        async for found in self.api.older_versions(self.params.model, below):
            if tag is not None and not _tagged(found, tag):
                continue
            reason = await self._unusable(found)
            if reason is None:
                return self._found(str(found["version"]), skipped, policy=policy, why=why)
            skipped.append(f"version {found['version']}: {reason}")
            if len(skipped) >= MAX_SKIPPED:
                break
        if tag is not None:
            explanation = (f"no version older than {self.current} carries the tag "
                           f"{tag.key}={tag.value!r}")
        else:
            explanation = f"no version older than {self.current} is READY"
        if skipped:
            explanation += " and usable"
        raise self._none(explanation, skipped)

    async def _unusable(self, found: dict[str, Any]) -> str | None:
        """Why a version cannot be rolled back to, or None when it can."""
        if found.get("status", "READY") != "READY":
            return f"status {found['status']}"
        if not self.params.verify:
            return None
        try:
            checked = await verify_files(self.api, self.params.model, found,
                                         policy=self.params.manifest,
                                         manifest_file=self.params.manifest_file)
        except Unverifiable as exc:
            return exc.reason.removeprefix("has ")
        if checked.problems:
            return "fails verification: " + "; ".join(p.describe() for p in checked.problems[:3])
        return None


def _tagged(found: dict[str, Any], tag: VersionTag) -> bool:
    return any(t.get("key") == tag.key and str(t.get("value")) == tag.value
               for t in found.get("tags", []))
