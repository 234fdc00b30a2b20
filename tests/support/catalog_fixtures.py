"""A small catalog written as YAML text (so tests can point at exact lines), the test-only
actions, and the hostile label values every catalog test throws at the parsers."""

from __future__ import annotations

from pathlib import Path

from app.actions.testing import FailParams, NoopParams, SleepParams

# Only the test actions, whose Params are stable, so lint tests do not depend on built-ins.
ACTIONS = {"noop": NoopParams, "sleep": SleepParams, "fail": FailParams}

# Line numbers matter: tests point at them. `RBID` is replaced by the runbook id.
RUNBOOK = """\
id: RBID
title: Test runbook RBID
owner: ml-platform
reviewers: [ml-oncall-leads]
reviewed_at: 2026-11-01
review_every: 90d
severity: critical
summary: A small runbook for catalog tests.
triage:
  - question: Is the model drifting?
    check: check
rationale: Tests the loader, lint and simulate.
objectives: {time_to_diagnose: 15m, time_to_restore: 2h}
params:
  model: {from: labels.model, type: str, pattern: '^[a-z0-9-]{1,40}$'}
  env: {from: labels.env, type: str, allowed: [staging, production], default: production}
target: "model:{{ params.model }}"
limits: {rate: [{count: 1, per: 6h}], concurrent: 1}
steps:
  - id: check
    title: Check the drift
    action: noop
    idempotent: true
    with: {message: "checking {{ params.model }} in {{ params.env }}", output: {version: "7"}}
  - id: change
    title: Roll back the model
    action: noop
    risk: risky
    approvals: {count: 2, roles: [approver], identities: [alice]}
    approval_timeout: 2h
    with: {message: "rolling back from {{ steps.check.output.version }}"}
    verify: {action: noop, with: {message: "verify {{ params.model }}"}, within: 10m}
    on_failure: rollback
    rollback: {title: Undo, action: noop, with: {message: "undo {{ params.model }}"}}
escalation:
  - {after: 15m, notify: ["slack:ml-oncall"]}
  - {after: 45m, notify: ["pagerduty:ml-platform"]}
on_resolve: cancel
postmortem: |
  # Postmortem: {{ params.model }}
  {% for step in steps %}- {{ step.title }}: {{ step.status }}
  {% endfor %}
"""

MAPPINGS = """\
mappings:
  - name: to-drift
    matchers: ['alertname="Drift"', 'severity=~"warning|critical"']
    runbook: drift
"""

DRIFT_LABELS = {"alertname": "Drift", "severity": "critical", "model": "fraud-v3",
                "env": "production"}

# Alert data is hostile: each of these must come out inert (refused, or shown as text).
INJECTIONS = ["$(rm -rf /)", "{{ 7*7 }}", "'; DROP TABLE x; --", "{% raw %}", "A" * 100_000]


def runbook_text(rid: str = "drift", *, replace: dict[str, str] | None = None) -> str:
    """The test runbook, with each `old: new` replacement applied exactly once."""
    text = RUNBOOK.replace("RBID", rid)
    for old, new in (replace or {}).items():
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        text = text.replace(old, new)
    return text


def write_catalog(root: Path, runbooks: dict[str, str] | None = None,
                  mappings: str = MAPPINGS) -> tuple[Path, Path]:
    """Write `{file stem: YAML text}` runbooks and a mappings file; returns both paths."""
    remediations = root / "remediations"
    remediations.mkdir(parents=True, exist_ok=True)
    for stem, text in (runbooks if runbooks is not None else {"drift": runbook_text()}).items():
        (remediations / f"{stem}.yaml").write_text(text)
    mappings_path = root / "alert_mappings.yaml"
    mappings_path.write_text(mappings)
    return mappings_path, remediations


def line_of(text: str, needle: str) -> int:
    """The 1-based line on which `needle` first appears."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")
