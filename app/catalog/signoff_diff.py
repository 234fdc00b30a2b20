"""Which risky steps a new runbook version changed: the pure core of change sign-off.

A risky step is one that says `risk: risky` in either version. Its change is a change to
its action, its `with`, its approvals or its rollback; a risky step added, removed, or a
safe step made risky (or risky made safe) is a change too. Everything else (prose, triage,
safe steps, limits) is not a risky change, and such a version is signed off automatically.

Works on the stored, normalised content (dicts keyed by alias, as `RunbookVersion.content`
holds it), so it compares any two versions ever loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The fields of a risky step whose change needs a reviewer's sign-off.
WATCHED = ("action", "with", "approvals", "rollback")


@dataclass(frozen=True)
class RiskyChange:
    """One risky step that differs between two versions, and what changed in it."""

    step_id: str
    change: str  # added | removed | made_risky | made_safe | changed
    fields: tuple[str, ...] = ()

    def describe(self) -> str:
        """One human line, e.g. `step rollback-alias: with, approvals changed`."""
        if self.change == "changed":
            return f"step {self.step_id}: {', '.join(self.fields)} changed"
        words = {"added": "risky step added", "removed": "risky step removed",
                 "made_risky": "made risky", "made_safe": "no longer risky"}
        return f"step {self.step_id}: {words[self.change]}"


def _steps(content: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    if not content:
        return {}
    return {str(s.get("id")): s for s in content.get("steps") or [] if isinstance(s, Mapping)}


def _risky(step: Mapping[str, Any] | None) -> bool:
    return step is not None and step.get("risk") == "risky"


def risky_changes(before: Mapping[str, Any] | None,
                  after: Mapping[str, Any]) -> list[RiskyChange]:
    """The risky steps that changed from `before` (None: nothing signed yet) to `after`, in
    the order of `after`'s steps, then the removed ones."""
    old, new = _steps(before), _steps(after)
    out: list[RiskyChange] = []
    for step_id, step in new.items():
        prior = old.get(step_id)
        if not _risky(step) and not _risky(prior):
            continue
        if prior is None:
            out.append(RiskyChange(step_id, "added"))
        elif _risky(step) and not _risky(prior):
            out.append(RiskyChange(step_id, "made_risky"))
        elif _risky(prior) and not _risky(step):
            out.append(RiskyChange(step_id, "made_safe"))
        else:
            fields = tuple(f for f in WATCHED if step.get(f) != prior.get(f))
            if fields:
                out.append(RiskyChange(step_id, "changed", fields))
    out += [RiskyChange(step_id, "removed") for step_id, step in old.items()
            if step_id not in new and _risky(step)]
    return out
