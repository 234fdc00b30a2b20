"""A Markdown postmortem draft: the runbook's own template, filled from the execution, then
the facts appended: timeline, alerts, steps, approvals, durations and objective compliance.

The template sees `runbook`, `execution`, `params`, `alerts`, `steps`, `timeline`,
`objectives` and `durations`. It renders in the sandbox; a template that fails to render
does not lose the draft: the error is noted and the facts still follow. Every value printed
into the Markdown is escaped for it: an alert label cannot add a link, an image, a heading
or HTML to the document people paste into their tracker.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from jinja2 import ChainableUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy.ext.asyncio import AsyncSession

from app.durations import format_duration, parse_duration
from app.engine import states
from app.engine.feedback_models import Feedback
from app.history.feedback import VERDICT_WORDS, verdicts_of
from app.history.queries import execution_detail
from app.history.schemas import ExecutionDetail
from app.history.timeline import TimelineLine, describe, step_refs

# Characters that start Markdown syntax: backslash-escaped; < > & become entities, and a
# newline a space, so a value can neither open HTML nor start a new block.
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]()#+!|{}~"} | {
    "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "})


def markdown_text(value: Any) -> str:
    """`value` as literal text inside Markdown."""
    if value is None or isinstance(value, ChainableUndefined):
        return ""
    return str(value).translate(_MARKDOWN_SPECIAL)


_ENV = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False,
                                     finalize=markdown_text)


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return format_duration(dt.timedelta(seconds=round(seconds)))


def _objectives(detail: ExecutionDetail,
                durations: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """Each objective: its target, what was measured, and whether it was met."""
    declared = (detail.runbook_content or {}).get("objectives") or {}
    out: dict[str, dict[str, Any]] = {}
    for name, measured_key in (("time_to_diagnose", "diagnose"), ("time_to_restore", "restore")):
        target = parse_duration(declared[name]).total_seconds() if declared.get(name) else None
        measured = durations.get(measured_key)
        out[name] = {"objective": _fmt(target), "measured": _fmt(measured),
                     "met": None if target is None or measured is None else measured <= target}
    return out


def _durations(detail: ExecutionDetail) -> dict[str, float | None]:
    origin = detail.alert_fired_at or detail.created_at
    steps = [s for s in detail.steps if s.kind == "step"]
    started = [s.started_at for s in steps if s.started_at]
    finished = [s.finished_at for s in steps if s.finished_at]
    restored = [t for t in (detail.finished_at if detail.status == states.SUCCEEDED else None,
                            detail.alerts_resolved_at) if t]
    total = ((detail.finished_at - detail.created_at).total_seconds()
             if detail.finished_at else None)
    return {
        "acknowledge": (min(started) - origin).total_seconds() if started else None,
        "diagnose": (min(finished) - origin).total_seconds() if finished else None,
        "restore": ((min(restored) - detail.alert_fired_at).total_seconds()
                    if restored and detail.alert_fired_at else None),
        "total": total,
    }


def build_context(detail: ExecutionDetail) -> dict[str, Any]:
    """What the runbook's postmortem template can use (documented in remediations/)."""
    durations = _durations(detail)
    compliance = _objectives(detail, durations)
    content = detail.runbook_content or {}
    return {
        "runbook": {"id": detail.runbook_id, "title": content.get("title", detail.runbook_id),
                    "version": detail.runbook_version},
        "execution": detail.model_dump(mode="json", include={
            "id", "status", "status_reason", "target", "dry_run", "created_at",
            "finished_at", "started_by", "trigger"}),
        "params": detail.params,
        "alerts": [a.model_dump(mode="json") for a in detail.alerts],
        # In a template a step's `id` is its id in the runbook, as everywhere else.
        "steps": [{**s.model_dump(mode="json"), "id": s.step_id, "row_id": s.id}
                  for s in detail.steps],
        "timeline": [e.model_dump(mode="json") for e in detail.timeline],
        "objectives": {
            "time_to_diagnose": (content.get("objectives") or {}).get("time_to_diagnose"),
            "time_to_restore": (content.get("objectives") or {}).get("time_to_restore"),
            "diagnose_met": compliance["time_to_diagnose"]["met"],
            "restore_met": compliance["time_to_restore"]["met"],
        },
        # None where the moment was never reached, so `{{ x or "not restored" }}` reads well.
        "durations": {f"time_to_{k}" if k != "total" else k: (_fmt(v) if v is not None else None)
                      for k, v in durations.items()},
        "_compliance": compliance,
    }


def render(detail: ExecutionDetail, feedback: Sequence[Feedback] = ()) -> str:
    """The whole draft as Markdown, with the responders' feedback when there is some."""
    context = build_context(detail)
    template = (detail.runbook_content or {}).get("postmortem") or ""
    try:
        head = _ENV.from_string(template).render(**context) if template else ""
    except TemplateError as exc:
        head = (f"# Postmortem: execution {detail.id}\n\n"
                f"> The runbook's postmortem template failed to render: {exc}\n")
    return head.rstrip() + "\n\n" + _facts(detail, context) + _feedback(feedback)


def _feedback(feedback: Sequence[Feedback]) -> str:
    """Did the runbook help, in the words of the people who took part."""
    lines = ["", "### Responder feedback", ""]
    lines += [f"- **{markdown_text(f.identity)}**: {VERDICT_WORDS.get(f.verdict, f.verdict)}"
              f" (via {f.channel}, {f.updated_at.isoformat(timespec='seconds')})"
              + (f": \"{markdown_text(f.note)}\"" if f.note else "")
              for f in feedback] or ["- none given yet"]
    return "\n".join(lines) + "\n"


def _facts(detail: ExecutionDetail, context: dict[str, Any]) -> str:
    d = {k: v or "n/a" for k, v in context["durations"].items()}
    obj = context["_compliance"]
    lines = [
        "---", "", f"## Facts recorded by runbookd (execution {detail.id})", "",
        f"- Runbook: `{detail.runbook_id}` version `{detail.runbook_version[:12]}`",
        f"- Target: `{detail.target}`; outcome: **{detail.status}**"
        + (f" ({detail.status_reason})" if detail.status_reason else ""),
        f"- Drill: {'yes' if detail.dry_run else 'no'}; started by: "
        f"{detail.started_by or 'an alert'}",
        f"- Time to acknowledge {d['time_to_acknowledge']}, to diagnose "
        f"{d['time_to_diagnose']}, to restore {d['time_to_restore']}; total {d['total']}",
        "", "### Objectives", "", "| objective | target | measured | met |", "|---|---|---|---|",
    ]
    for name, row in obj.items():
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(f"| {name} | {row['objective']} | {row['measured']} | {met} |")
    lines += ["", "### Alerts", ""]
    lines += [f"- {markdown_text(a.alertname or a.fingerprint)} ({a.source}, {a.status}) from "
              f"{a.starts_at.isoformat(timespec='seconds')}"
              + (f" to {a.ends_at.isoformat(timespec='seconds')}" if a.ends_at else "")
              for a in detail.alerts] or ["- none (started by hand)"]
    lines += ["", "### Steps", "", "| step | action | status | duration | summary |",
              "|---|---|---|---|---|"]
    for s in detail.steps:
        duration = f"{s.duration_ms} ms" if s.duration_ms is not None else ""
        summary = (s.summary or s.error or "").replace("|", "\\|").replace("\n", " ")[:200]
        lines.append(f"| {s.kind}:{s.step_id} | `{s.action}` | {s.status} | {duration} | "
                     f"{summary} |")
    lines += ["", "### Approvals", ""]
    lines += [f"- {a.created_at.isoformat(timespec='seconds')}: **{a.identity}** {a.decision}d "
              f"via {a.channel}" + (f": \"{a.comment}\"" if a.comment else "")
              + (" (voided: the step changed)" if a.voided_at else "")
              for a in detail.approvals] or ["- none needed"]
    lines += ["", "### Timeline", ""]
    refs = step_refs(detail.steps)
    lines += [f"- {_timeline_line(describe(e, refs))}" for e in detail.timeline]
    return "\n".join(lines) + "\n"


def _timeline_line(line: TimelineLine) -> str:
    """The page's timeline line, its free text (actors, reasons) escaped for Markdown."""
    who = f"({markdown_text(line.actor)})" if line.is_move else f"by {markdown_text(line.actor)}"
    text = f"{line.at} {markdown_text(line.subject)}: {markdown_text(line.what)} {who}"
    return f"{text} — {markdown_text(line.reason)}" if line.reason else text


async def postmortem_markdown(session: AsyncSession, execution_id: int) -> str:
    detail = await execution_detail(session, execution_id)
    return render(detail, await verdicts_of(session, execution_id))
