"""What the pages put first, computed from the record: the approval card of a waiting step,
the banner after a decision, the list's reason column, the runbook's triage tree and the
diffs between its versions. Pure functions; the routes pass them what they read."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from typing import Any

import yaml

from app.catalog.schema import ApprovalSpec, Runbook
from app.engine import states
from app.history.schemas import ExecutionDetail, ExecutionOut, StepOut
from app.history.triage import LastRun
from app.web.charts import readable

# A diff longer than this is cut: a page is not the place to review a rewrite.
MAX_DIFF_LINES = 400


@dataclass(frozen=True)
class Deadline:
    at: dt.datetime
    left: str      # "12m 30s", or "overdue"
    what: str      # "escalates to slack:#ml-oncall", "expires"


@dataclass(frozen=True)
class ApprovalCard:
    """Everything an approver needs to decide one waiting step, at the top of the page."""

    run: StepOut
    is_rollback: bool
    risk: str
    spec: ApprovalSpec
    approvers: list[str]
    still_needed: int
    deadlines: list[Deadline]
    can_decide: bool
    why_not: str

    @property
    def who_may(self) -> str:
        roles = [f"any {r}" for r in self.spec.roles] + self.spec.identities
        return ", ".join(roles) or "nobody (the runbook names no approver)"


def _left(at: dt.datetime, now: dt.datetime) -> str:
    seconds = (at - now).total_seconds()
    return readable(seconds) if seconds > 0 else "overdue"


def deadlines(run: StepOut, runbook: Runbook | None, now: dt.datetime) -> list[Deadline]:
    """The next escalation tier still to fire, then the expiry of the approval."""
    out = []
    if runbook is not None and run.awaiting_since is not None:
        for tier in runbook.escalation:
            at = run.awaiting_since + tier.after
            if at > now:
                out.append(Deadline(at, _left(at, now),
                                    f"escalates to {', '.join(tier.notify)}"))
                break
    if run.approval_expires_at is not None:
        out.append(Deadline(run.approval_expires_at, _left(run.approval_expires_at, now),
                            "expires, and the execution ends"))
    return out


def why_risky(run: StepOut, runbook: Runbook | None) -> str:
    """The runbook's own words for why a step is risky, as the card says it."""
    step = None
    if runbook is not None:
        try:
            step = runbook.step(run.step_id)
        except KeyError:
            step = None
    if run.kind == "rollback":
        undone = f"“{step.title}”" if step else f"step {run.step_id}"
        return (f"It undoes {undone}: undoing a risky change is a risky change too. "
                + (step.description if step and step.description else ""))
    if step is not None and step.description:
        return step.description
    return (f"The runbook marks this step risky: its action {run.action} changes something "
            "outside runbookd.")


def approval_cards(detail: ExecutionDetail, views: list[Any], runbook: Runbook | None,
                   now: dt.datetime) -> list[ApprovalCard]:
    """One card per step waiting for a decision (`views` are the page's StepViews)."""
    if detail.status != states.AWAITING_APPROVAL:
        return []
    cards = []
    for v in views:
        run = v.run
        if run.status != states.STEP_AWAITING_APPROVAL:
            continue
        spec = v.spec or ApprovalSpec()
        cards.append(ApprovalCard(
            run=run, is_rollback=run.kind == "rollback", risk=why_risky(run, runbook),
            spec=spec, approvers=v.approvers,
            still_needed=max(spec.count - len(v.approvers), 0),
            deadlines=deadlines(run, runbook, now), can_decide=v.can_decide,
            why_not=v.why_not))
    return cards


@dataclass(frozen=True)
class Banner:
    decision: str
    step_title: str
    at: dt.datetime
    next: str


def decision_banner(detail: ExecutionDetail, ref: str | None, me: str | None) -> Banner | None:
    """After a decision: what was recorded, read back from the record (not from the URL)."""
    if not ref or me is None:
        return None
    run = next((s for s in detail.steps if s.ref == ref), None)
    if run is None:
        return None
    mine = [a for a in run.approvals if a.identity == me and a.voided_at is None]
    if not mine:
        return None
    last = mine[-1]
    if last.decision == "reject":
        follow = "The step will not run, and the execution stops."
    elif run.status == states.STEP_AWAITING_APPROVAL:
        counted = len({a.identity for a in run.approvals if a.decision == "approve"
                       and a.voided_at is None and a.step_hash == run.step_hash})
        follow = f"{counted} approval{'s' if counted != 1 else ''} so far; it waits for more."
    else:
        follow = "The step runs now; this page follows it."
    return Banner(last.decision, run.title, last.created_at, follow)


def reason(ex: ExecutionOut, wake_at: dt.datetime | None, now: dt.datetime) -> str:
    """The list's reason column: why this execution is where it is, in a few words."""
    if ex.status == states.RATE_LIMITED and wake_at is not None:
        at = wake_at.astimezone(dt.UTC)
        day = "" if at.date() == now.astimezone(dt.UTC).date() else f"{at:%Y-%m-%d} "
        return f"rate limited until {day}{at:%H:%M} UTC"
    text = ex.status_reason or ""
    return text if len(text) <= 120 else text[:119] + "…"


@dataclass(frozen=True)
class TriageNode:
    question: str
    check: str
    check_is_step: bool
    check_is_link: bool
    check_title: str
    points_to: str | None
    then: str
    last: LastRun | None


def triage_tree(runbook: Runbook, last: dict[str, LastRun]) -> list[TriageNode]:
    """The triage questions in order, each with its check resolved to a step or a link."""
    titles = {s.id: s.title for s in runbook.steps}
    nodes = []
    for item in runbook.triage:
        is_step = item.check in titles
        nodes.append(TriageNode(
            question=item.question, check=item.check, check_is_step=is_step,
            check_is_link=item.check.startswith(("https://", "http://")),
            check_title=titles.get(item.check, item.check), points_to=item.points_to,
            then=item.then, last=last.get(item.check) if is_step else None))
    return nodes


@dataclass(frozen=True)
class VersionDiff:
    version: str
    loaded_at: dt.datetime
    previous: str | None
    lines: list[tuple[str, str]]   # (kind: add | del | hunk | same, text)
    added: int
    removed: int
    cut: bool


def _as_yaml(content: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(content, sort_keys=False, allow_unicode=True,
                          width=100).splitlines()


def version_diffs(versions: list[Any]) -> list[VersionDiff]:
    """Each stored version (newest first) against the one loaded before it."""
    out = []
    for i, v in enumerate(versions):
        older = versions[i + 1] if i + 1 < len(versions) else None
        if older is None:
            out.append(VersionDiff(v.version, v.loaded_at, None, [], 0, 0, False))
            continue
        lines, added, removed = [], 0, 0
        for text in difflib.unified_diff(_as_yaml(older.content), _as_yaml(v.content),
                                         lineterm="", n=2):
            if text.startswith(("---", "+++")):
                continue
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(text[:1], "same")
            added += kind == "add"
            removed += kind == "del"
            lines.append((kind, text))
        out.append(VersionDiff(v.version, v.loaded_at, older.version,
                               lines[:MAX_DIFF_LINES], added, removed,
                               len(lines) > MAX_DIFF_LINES))
    return out
