"""Small, complete runbooks built from the test actions (noop, sleep, fail), written to a
temporary catalog directory for engine tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def runbook(rid: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid,
        "title": f"Test runbook {rid}",
        "owner": "ml-platform",
        "reviewers": ["ml-oncall-leads"],
        "reviewed_at": "2026-11-01",
        "review_every": "90d",
        "severity": "critical",
        "summary": "A runbook for engine tests.",
        "triage": [{"question": "Is the test model drifting?", "check": steps[0]["id"]}],
        "rationale": "Exercises the executor with actions that touch nothing real.",
        "objectives": {"time_to_diagnose": "15m", "time_to_restore": "2h"},
        "params": {"model": {"from": "labels.model", "type": "str",
                             "pattern": "^[a-z0-9-]+$"}},
        "target": "model:{{ params.model }}",
        "steps": steps,
        "on_resolve": "cancel",
        "postmortem": "# Postmortem: {{ params.model }}\n",
    }
    body.update(extra)
    return body


def step(sid: str, action: str = "noop", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"id": sid, "title": f"Step {sid}", "action": action}
    body.update(extra)
    return body


def risky(sid: str, *, count: int = 1, **extra: Any) -> dict[str, Any]:
    return step(sid, risk="risky", approvals={"count": count, "roles": ["approver"]}, **extra)


def write_catalog(root: Path, runbooks: list[dict[str, Any]]) -> tuple[Path, Path]:
    """Write runbooks and one mapping per runbook (alertname == runbook id)."""
    remediations = root / "remediations"
    remediations.mkdir(parents=True, exist_ok=True)
    for book in runbooks:
        (remediations / f"{book['id']}.yaml").write_text(yaml.safe_dump(book, sort_keys=False))
    mappings = {"mappings": [
        {"name": f"to-{book['id']}", "matchers": [f'alertname="{book["id"]}"'],
         "runbook": book["id"]}
        for book in runbooks
    ]}
    mappings_path = root / "alert_mappings.yaml"
    mappings_path.write_text(yaml.safe_dump(mappings, sort_keys=False))
    return mappings_path, remediations
