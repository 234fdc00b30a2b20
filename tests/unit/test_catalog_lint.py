"""Lint: every check, each as a one-line change to a clean catalog, with the line it names."""

from __future__ import annotations

import datetime as dt

import pytest

from app.catalog.lint import lint
from tests.support.catalog_fixtures import (
    ACTIONS,
    MAPPINGS,
    line_of,
    runbook_text,
    write_catalog,
)

TODAY = dt.date(2026, 11, 26)


def run(tmp_path, runbooks=None, mappings=MAPPINGS, today=TODAY):
    mappings_path, remediations = write_catalog(tmp_path, runbooks, mappings)
    return lint(mappings_path, remediations, actions=ACTIONS, today=today)


def test_the_fixture_catalog_is_clean(tmp_path):
    assert run(tmp_path) == []


RUNBOOK_CASES = [
    # (replace old -> new, the line to look for in the result (a fragment of it), message)
    ({"    with: {message: \"checking": "    whith: {message: \"checking"},
     "whith:", "unknown key 'whith'"),
    ({"severity: critical": "severity: urgent"}, "severity: urgent",
     "Input should be 'critical', 'high', 'warning' or 'info'"),
    ({"  - id: change": "  - id: check"}, 25, "duplicate step id 'check'"),
    ({"    action: noop\n    risk: risky": "    action: noop.v2\n    risk: risky"},
     "noop.v2", "unknown action 'noop.v2'; did you mean 'noop'?"),
    ({"{message: \"rolling back": "{mesage: \"rolling back"}, "mesage",
     "action 'noop' takes no parameter 'mesage'; did you mean 'message'?"),
    ({"verify {{ params.model }}": "verify {{ params.model"}, "verify {{ params.model",
     "does not compile"),
    ({"undo {{ params.model }}": "undo {{ params.modle }}"}, "params.modle",
     "params.modle is not a declared parameter"),
    ({"checking {{ params.model }}": "checking {{ steps.change.output }}"},
     "steps.change.output", "steps.change is not an earlier step"),
    ({"checking {{ params.model }}": "checking {{ alert.labels.model }}"},
     "alert.labels.model", "uses alert labels or annotations directly"),
    ({"checking {{ params.model }}": "checking {{ secrets.token }}"},
     "secrets.token", "unknown name 'secrets'"),
    ({"    on_failure: rollback": "    on_failure: {goto: nowhere}"}, "goto: nowhere",
     "goto 'nowhere': no step has that id"),
    ({"    on_failure: rollback": "    on_failure: {goto: check}"}, "goto: check",
     "goto 'check' points back"),
    ({"    rollback: {title: Undo, action: noop, with: {message: \"undo {{ params.model }}\"}}":
      "    description: no rollback here"}, "on_failure: rollback",
     "neither this step nor an earlier one has a rollback"),
    ({"    approvals: {count: 2, roles: [approver], identities: [alice]}\n": ""},
     "risk: risky", "step 'change' is risky but names no approvers"),
    ({"    approval_timeout: 2h": "    approval_timeout: 30m"}, "approval_timeout: 30m",
     "approval_timeout 30m is shorter than the last escalation tier (45m)"),
    ({"  model: {from: labels.model, type: str, pattern: '^[a-z0-9-]{1,40}$'}":
      "  model: {from: labels.model, type: str, pattern: '^[a-z0-9-{1,40}$'}"},
     "pattern: '^[a-z0-9-{1,40}$'", "is not a valid regex"),
    ({"  model: {from: labels.model, type: str, pattern: '^[a-z0-9-]{1,40}$'}":
      "  model: {from: labels.model, type: str}"}, "  model: {from",
     "a str parameter needs a `pattern` or an `allowed` list"),
    ({"allowed: [staging, production], default: production":
      "allowed: [staging, production], default: qa"}, "default: qa",
     "params.env: default value 'qa' is not one of"),
    ({"    check: check\n": "    check: nowhere\n"}, "check: nowhere",
     "triage check 'nowhere' is neither a step id"),
    ({"  # Postmortem: {{ params.model }}": "  # Postmortem: {{ params.model }} {{ secret }}"},
     "postmortem: |", "unknown name 'secret'"),
    ({"reviewers: [ml-oncall-leads]": "reviewers: [ml-oncall-leads]\nreviewers: [x]"},
     "reviewers: [x]", "duplicate key 'reviewers'"),
    ({"title: Test runbook drift": "title: Test runbook: drift"}, "title: Test runbook",
     "YAML syntax error"),
]


@pytest.mark.parametrize(("replace", "where", "message"), RUNBOOK_CASES)
def test_runbook_errors_name_their_line(tmp_path, replace, where, message):
    text = runbook_text(replace=replace)
    issues = run(tmp_path, {"drift": text})
    errors = [i for i in issues if i.severity == "error"]
    assert any(message in i.message for i in errors), "\n".join(map(str, issues))
    found = next(i for i in errors if message in i.message)
    assert found.file.endswith("drift.yaml")
    line = where if isinstance(where, int) else line_of(text, where)
    assert found.line == line, str(found)


def test_a_yaml_syntax_error_has_its_line_and_column(tmp_path):
    text = runbook_text(replace={"  - id: change": "  - id: [change"})
    (issue,) = [i for i in run(tmp_path, {"drift": text}) if i.severity == "error"]
    assert issue.line >= line_of(text, "id: [change")
    assert str(issue).startswith(f"{issue.file}:{issue.line}:{issue.col}: error: YAML syntax")


def test_every_error_is_reported_not_just_the_first(tmp_path):
    text = runbook_text(replace={
        "severity: critical": "severity: urgent",
        "    title: Check the drift\n": "    title: Check\n    bogus: 1\n",
    })
    broken_mappings = MAPPINGS.replace("runbook: drift", "runbook: drfit")
    issues = run(tmp_path, {"drift": text, "other": "id: [oops"}, broken_mappings)
    messages = [i.message for i in issues if i.severity == "error"]
    assert len(messages) >= 4, messages
    assert any("unknown key 'bogus'" in m for m in messages)
    assert any("urgent" in m or "severity" in m for m in messages)
    assert any("YAML syntax error" in m for m in messages)
    assert any("names runbook 'drfit', which does not exist" in m for m in messages)


def test_duplicate_runbook_ids_across_files(tmp_path):
    issues = run(tmp_path, {"drift": runbook_text(), "zz-drift": runbook_text()})
    (dup,) = [i for i in issues if "duplicate runbook id" in i.message]
    assert dup.file.endswith("zz-drift.yaml") and dup.line == 1
    assert "/drift.yaml has it too" in dup.message


def test_an_overdue_review_is_a_warning(tmp_path):
    issues = run(tmp_path, today=dt.date(2027, 3, 1))
    assert [(i.severity, i.line) for i in issues] == [("warning", 5)]
    assert "review overdue" in issues[0].message and "due on 2027-01-30" in issues[0].message


MAPPING_CASES = [
    ("    runbook: drift", "    runbook: drfit",
     "names runbook 'drfit', which does not exist; did you mean 'drift'?"),
    ("'severity=~\"warning|critical\"'", "'severity=~\"warning|(critical\"'", "bad regex"),
    ("'alertname=\"Drift\"'", "'alertname=\"Drift'", "unterminated double quote"),
    ("    runbook: drift", "    runbook: drift\n    params: {colour: red}",
     "runbook 'drift' declares no parameter 'colour'"),
    ("    runbook: drift", "    runbook: drift\n    params: {env: qa}",
     "params.env: value 'qa' is not one of"),
    ("    runbook: drift", "    runbook: drift\n    continue: maybe", "valid boolean"),
]


@pytest.mark.parametrize(("old", "new", "message"), MAPPING_CASES)
def test_mapping_errors(tmp_path, old, new, message):
    issues = run(tmp_path, mappings=MAPPINGS.replace(old, new))
    assert any(message in i.message and i.severity == "error" for i in issues), \
        "\n".join(map(str, issues))
    found = next(i for i in issues if message in i.message)
    assert found.file.endswith("alert_mappings.yaml") and found.line >= 3


SHADOWED = """\
mappings:
  - name: all-drift
    matchers: ['alertname="Drift"']
    runbook: drift
  - name: critical-drift
    matchers: '{alertname="Drift", severity="critical"}'
    runbook: drift
"""


def test_a_shadowed_mapping_is_an_error(tmp_path):
    issues = run(tmp_path, mappings=SHADOWED)
    (issue,) = issues
    assert issue.line == 6
    assert "mapping 'critical-drift' can never match" in issue.message
    assert "'all-drift' (line 2)" in issue.message


def test_continue_lifts_the_shadow(tmp_path):
    text = SHADOWED.replace("    runbook: drift\n  - name: critical",
                            "    runbook: drift\n    continue: true\n  - name: critical")
    assert run(tmp_path, mappings=text) == []


def test_warnings_for_risky_regexes_and_unused_params(tmp_path):
    text = runbook_text(replace={
        "pattern: '^[a-z0-9-]{1,40}$'": "pattern: '^([a-z]+)+$'",
        "  env: {from: labels.env,": "  zone: {from: labels.zone, type: str, allowed: [a]}\n"
                                     "  env: {from: labels.env,",
    })
    warnings = [i.message for i in run(tmp_path, {"drift": text}) if i.severity == "warning"]
    assert any("nests quantifiers" in w for w in warnings)
    assert any("parameter 'zone' is never used" in w for w in warnings)


def test_lint_without_action_models_still_checks_names(tmp_path):
    mappings_path, remediations = write_catalog(tmp_path)
    assert lint(mappings_path, remediations, actions=["noop"], today=TODAY) == []
    issues = lint(mappings_path, remediations, actions=["sleep"], today=TODAY)
    assert {i.message.split(";")[0] for i in issues} == {"unknown action 'noop'"}


def test_a_file_given_alone_is_classified_by_its_content(tmp_path):
    mappings_path, remediations = write_catalog(tmp_path)
    # The mappings file alone: runbook names cannot be checked, so they are not.
    assert lint(mappings_path, actions=ACTIONS, today=TODAY) == []
    assert lint(remediations / "drift.yaml", actions=ACTIONS, today=TODAY) == []


def cli_app():
    from app.cli.catalog import app

    return app


def test_the_lint_command_prints_positions_and_exits_1_on_errors(tmp_path):
    from typer.testing import CliRunner

    mappings_path, remediations = write_catalog(
        tmp_path, {"drift": runbook_text(replace={"severity: critical": "severity: urgent"})})
    result = CliRunner().invoke(cli_app(), ["lint", str(mappings_path), str(remediations)])
    assert result.exit_code == 1, result.output
    assert f"{remediations / 'drift.yaml'}:7:11: error: severity: Input should be" in \
        result.stdout


def test_the_lint_command_exits_0_with_warnings_only(tmp_path):
    from typer.testing import CliRunner

    text = runbook_text(replace={"reviewed_at: 2026-11-01": "reviewed_at: 2020-01-01"})
    mappings_path, remediations = write_catalog(tmp_path, {"drift": text})
    result = CliRunner().invoke(cli_app(), ["lint", str(mappings_path), str(remediations)])
    assert result.exit_code == 0, result.output
    assert ":5:14: warning: review overdue" in result.stdout


def test_a_storm_brake_needs_a_window_and_one_the_global_brake_beats_is_a_warning(tmp_path):
    global_brake = MAPPINGS + "brake: {targets: 5, within: 10m}\n"
    limits = "limits: {rate: [{count: 1, per: 6h}], concurrent: 1}"
    zero = run(tmp_path / "zero", runbooks={"drift": runbook_text().replace(
        limits, limits[:-1] + ", brake: {targets: 3, within: 0s}}")})
    shadowed = run(tmp_path / "shadowed", mappings=global_brake, runbooks={
        "drift": runbook_text().replace(limits, limits[:-1] +
                                        ", brake: {targets: 8, within: 5m}}")})
    tighter = run(tmp_path / "tighter", mappings=global_brake, runbooks={
        "drift": runbook_text().replace(limits, limits[:-1] +
                                        ", brake: {targets: 2, within: 5m}}")})
    assert [i.severity for i in zero] == ["error"]
    assert "give it a duration above zero" in zero[0].message
    assert [i.severity for i in shadowed] == ["warning"]
    assert "never engages" in shadowed[0].message and "global brake (5 within 10m)" in \
        shadowed[0].message
    assert tighter == []
