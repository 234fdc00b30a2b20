"""What a drill found, step by step: ok, or a problem with its reason. Pure.

Rot is what breaks on the real systems while nobody looks: a query that returns no series,
an alias or a model that is gone, a DAG that was deleted, a host that left the allow-list, a
secret that is not set, a plan that cannot be made, a template that no longer renders. Each
shows here as a failed read or a failed plan; a query that answers with nothing is rot too,
unless the runbook says `empty: pass` (nothing is the normal answer of that query).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

# How a drilled item was exercised: a read that ran for real, a change that was only
# planned, a precondition (read), or a step the drill never reached.
Kind = Literal["ran", "planned", "check", "unreached"]
PLANNED: Kind = "planned"  # written in a planned step's output by the engine's guard


@dataclass(frozen=True)
class Verdict:
    step: str
    title: str
    action: str
    kind: Kind
    ok: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def no_series(action: str, output: Mapping[str, Any] | None,
              params: Mapping[str, Any] | None) -> bool:
    """A Prometheus read that answered with no sample, where the runbook expects one."""
    return (action == "prometheus.query" and (output or {}).get("count") == 0
            and (params or {}).get("empty", "fail") != "pass")


def step_verdict(*, step: str, title: str, action: str, status: str, summary: str | None,
                 error: str | None, output: Mapping[str, Any] | None,
                 params: Mapping[str, Any] | None) -> Verdict:
    """The verdict on one drilled step from its step run."""
    kind: Kind = PLANNED if (output or {}).get("drill") == PLANNED else "ran"
    said = summary or ""
    if status == "skipped":
        return Verdict(step, title, action, kind, True, f"skipped: {said}".rstrip(": "))
    if status != "succeeded":
        return Verdict(step, title, action, kind, False, error or said or status)
    if no_series(action, output, params):
        return Verdict(step, title, action, kind, False,
                       f"the query {(params or {}).get('query', '')!r} returns no series: a "
                       "metric or label was renamed, or its exporter is gone")
    return Verdict(step, title, action, kind, True, said)


def check_verdict(*, index: int, title: str, action: str, ok: bool, summary: str,
                  error: str | None, output: Mapping[str, Any] | None,
                  params: Mapping[str, Any] | None) -> Verdict:
    """The verdict on one precondition, read once. Whether it holds now does not matter
    (outside an incident it should not); whether it can be read does."""
    name = f"precondition-{index + 1}"
    if not ok:
        return Verdict(name, title, action, "check", False, error or summary)
    if no_series(action, output, params):
        return Verdict(name, title, action, "check", False,
                       f"the query {(params or {}).get('query', '')!r} returns no series: a "
                       "metric or label was renamed, or its exporter is gone")
    return Verdict(name, title, action, "check", True, summary)


def unreached(step: str, title: str, action: str, why: str) -> Verdict:
    """A step the drill did not get to (its execution was cancelled or held)."""
    return Verdict(step, title, action, "unreached", False, f"not reached: {why}")


def problems(verdicts: Iterable[Verdict | Mapping[str, Any]]) -> int:
    """How many verdicts are problems."""
    return sum(not (v.ok if isinstance(v, Verdict) else v.get("ok")) for v in verdicts)


def headline(problem_count: int) -> str:
    """`no problems`, `1 problem`, `3 problems`."""
    if problem_count == 0:
        return "no problems"
    return f"{problem_count} problem{'s' if problem_count != 1 else ''}"
