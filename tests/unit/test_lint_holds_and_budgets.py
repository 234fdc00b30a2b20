"""Issue 14: lint reports a check that can never pass (a hold longer than the check may run,
which would roll a good fix back) and a step budget keyed by anything but params."""

from __future__ import annotations

import datetime as dt

from app.actions.registry import default_registry
from app.catalog.lint import lint
from tests.support.catalog_fixtures import line_of, runbook_text, write_catalog

VERIFY = '    verify: {action: noop, with: {message: "verify {{ params.model }}"}, within: 10m}'


def held(hold: str, within: str) -> str:
    return ("    verify: {action: prometheus.query, within: " + within + ", with: "
            "{query: 'p99{model=\"{{ params.model }}\"}', expect: '< 0.25', stable_for: "
            + hold + "}}")


def issues_for(tmp_path, verify: str):
    text = runbook_text(replace={VERIFY: verify})
    mappings, remediations = write_catalog(tmp_path, {"drift": text})
    found = lint(mappings, remediations, actions=default_registry().specs(),
                 today=dt.date(2026, 11, 26))
    return text, [i for i in found if i.severity == "error"]


def test_a_hold_longer_than_the_check_may_run_is_an_error(tmp_path) -> None:
    text, [issue] = issues_for(tmp_path, held("5m", "2m"))
    assert "this check can never pass: its action must hold for 5m" in issue.message
    assert "`within` ends the check after 2m" in issue.message
    assert issue.line == line_of(text, "stable_for: 5m")


def test_a_hold_that_fits_is_clean(tmp_path) -> None:
    _, issues = issues_for(tmp_path, held("5m", "15m"))
    assert issues == []


def test_a_templated_hold_is_not_guessed(tmp_path) -> None:
    _, issues = issues_for(tmp_path, held("'{{ params.model }}'", "2m"))
    assert all("never pass" not in i.message for i in issues)


def test_a_rate_key_may_use_params_only(tmp_path) -> None:
    text = runbook_text(replace={
        "    on_failure: rollback": "    on_failure: rollback\n    rate: [{count: 1, per: 6h}]\n"
                                   "    rate_key: 'retrain:{{ steps.check.output.version }}'"})
    mappings, remediations = write_catalog(tmp_path, {"drift": text})
    found = lint(mappings, remediations, actions=default_registry().specs(),
                 today=dt.date(2026, 11, 26))
    assert any("steps" in i.message and i.line == line_of(text, "rate_key:")
               for i in found if i.severity == "error"), found


def test_on_success_goto_must_point_forward(tmp_path) -> None:
    text = runbook_text(replace={"    on_failure: rollback": "    on_failure: rollback\n"
                                                           "    on_success: {goto: check}"})
    mappings, remediations = write_catalog(tmp_path, {"drift": text})
    found = lint(mappings, remediations, actions=default_registry().specs(),
                 today=dt.date(2026, 11, 26))
    assert any("goto 'check' points back" in i.message and "on_success" in i.message
               for i in found), found


def test_a_hand_off_names_a_runbook_of_the_catalog_and_its_params(tmp_path) -> None:
    hand_off = ("  - id: hand-off\n    title: Follow the other runbook\n"
                "    action: runbook.start\n    timeout: 1m\n"
                "    with: {runbook: RUNBOOK, params: {PARAM: x}}\n")
    def issues(runbook: str, param: str) -> list[str]:
        text = runbook_text(replace={"escalation:": hand_off.replace("RUNBOOK", runbook)
                                     .replace("PARAM", param) + "escalation:"})
        mappings, remediations = write_catalog(tmp_path, {"drift": text})
        return [i.message for i in lint(mappings, remediations,
                                        actions=default_registry().specs(),
                                        today=dt.date(2026, 11, 26)) if i.severity == "error"]
    assert any("names runbook 'nowhere', which is not in this catalog" in m
               for m in issues("nowhere", "model"))
    assert any("takes no parameter 'colour'; it takes: env, model" in m
               for m in issues("drift", "colour"))
    assert issues("drift", "model") == []
