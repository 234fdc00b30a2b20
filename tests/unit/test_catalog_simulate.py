"""Simulate: what the catalog would do with an alert, from labels or whole webhook bodies."""

from __future__ import annotations

import datetime as dt

import pytest

from app.catalog.loader import load_catalog
from app.catalog.simulate import alerts_from_body, simulate, simulate_alerts
from app.engine.guards import GuardState
from app.errors import Invalid
from tests.support.catalog_fixtures import ACTIONS, DRIFT_LABELS, INJECTIONS, write_catalog
from tests.support.payloads import am_alert, am_body, pd_event


@pytest.fixture
def catalog(tmp_path):
    mappings_path, remediations = write_catalog(tmp_path)
    return load_catalog(mappings_path, remediations, action_names=ACTIONS,
                        today=dt.date(2026, 11, 26))


def test_the_plan_of_a_matching_alert(catalog):
    result = simulate(catalog, labels=DRIFT_LABELS, annotations={}, actions=ACTIONS)
    assert result.matched
    (plan,) = result.runbooks
    assert (plan.mapping, plan.runbook, plan.would_execute) == ("to-drift", "drift", True)
    assert plan.version == catalog.runbooks["drift"].version
    assert plan.params == {"model": "fraud-v3", "env": "production"}
    assert plan.target == "model:fraud-v3"
    assert plan.limits.model_dump() == {
        "rate": [{"count": 1, "per": "6h", "spent": None, "next_allowed_at": None}],
        "concurrent": 1, "concurrent_scope": "target", "active": None, "breaker": None,
        "verdict": None}
    check, change = plan.steps
    assert (check.decision, check.with_["message"]) == ("run", "checking fraud-v3 in production")
    assert change.decision == "needs_approval"
    assert change.approvals.model_dump() == {"count": 2, "roles": ["approver"],
                                             "identities": ["alice"]}
    assert "2 of: approver, alice" in change.reason
    assert change.on_failure == "rollback"
    assert change.verify.within == "10m"
    assert change.rollback.with_ == {"message": "undo fraud-v3"}


def test_outputs_of_earlier_steps_render_as_placeholders(catalog):
    (plan,) = simulate(catalog, labels=DRIFT_LABELS).runbooks
    change = plan.steps[1]
    assert change.with_ == {"message": "rolling back from <output.version of step check>"}
    assert change.errors == []
    dumped = plan.model_dump(by_alias=True)
    assert dumped["steps"][1]["with"] == change.with_


@pytest.mark.parametrize(("guards", "reason"), [
    (GuardState(kill_switch=True, kill_reason="incident 42"), "kill switch engaged: incident 42"),
    (GuardState(paused={"drift": "breaker"}), "runbook paused: breaker"),
])
def test_guards_hold_every_step(catalog, guards, reason):
    (plan,) = simulate(catalog, labels=DRIFT_LABELS, guards=guards).runbooks
    assert plan.held_by == reason
    assert [s.decision for s in plan.steps] == ["held", "held"]
    assert plan.would_execute and "held by a guard" in plan.reason


def test_no_match(catalog):
    result = simulate(catalog, labels={"alertname": "Other"})
    assert (result.matched, result.runbooks) == (False, [])


def test_invalid_params_mean_no_execution(catalog):
    (plan,) = simulate(catalog, labels={**DRIFT_LABELS, "model": "Bad Model",
                                        "env": "qa"}).runbooks
    assert not plan.would_execute and plan.reason.startswith("no execution: invalid parameters")
    assert {p.name for p in plan.param_errors} == {"model", "env"}
    assert plan.params is None and plan.target is None
    # Nothing rendered: the steps show their templates as written.
    assert plan.steps[0].with_["message"] == "checking {{ params.model }} in {{ params.env }}"


@pytest.mark.parametrize("hostile", INJECTIONS)
def test_injection_attempts_come_out_inert(catalog, hostile):
    result = simulate(catalog, labels={**DRIFT_LABELS, "model": hostile},
                      annotations={"summary": hostile})
    (plan,) = result.runbooks
    assert not plan.would_execute and plan.param_errors[0].name == "model"
    text = result.model_dump_json()
    assert "49" not in text.replace(plan.version, "")  # {{ 7*7 }} was never evaluated
    assert len(text) < 20_000  # a 100 KB label is never echoed in full
    if len(hostile) > 1000:
        assert result.alert.labels["model"].endswith("(100000 characters)")


def test_a_resolved_alert_starts_nothing(catalog):
    (plan,) = simulate(catalog, labels=DRIFT_LABELS, status="resolved").runbooks
    assert not plan.would_execute and plan.reason == "no execution: the alert is resolved"


def test_rendered_params_are_checked_against_the_action(tmp_path):
    from tests.support.catalog_fixtures import runbook_text

    text = runbook_text(replace={
        '    with: {message: "checking {{ params.model }} in {{ params.env }}", '
        'output: {version: "7"}}':
        '    with: {message: "checking", output: "{{ params.model }}"}'})
    mappings_path, remediations = write_catalog(tmp_path, {"drift": text})
    catalog = load_catalog(mappings_path, remediations, action_names=ACTIONS)
    (plan,) = simulate(catalog, labels=DRIFT_LABELS, actions=ACTIONS).runbooks
    assert plan.steps[0].errors == ["noop: output: Input should be a valid dictionary"]


def test_every_alert_of_an_alertmanager_body(catalog):
    body = am_body(am_alert("a" * 16, labels=DRIFT_LABELS),
                   am_alert("b" * 16, labels={"alertname": "Other"}))
    alerts = alerts_from_body(body)
    assert [(a.source, a.labels["alertname"]) for a in alerts] == [
        ("alertmanager", "Drift"), ("alertmanager", "Other")]
    report = simulate_alerts(catalog, alerts)
    assert [r.matched for r in report.results] == [True, False]


def test_a_pagerduty_body(catalog):
    (alert,) = alerts_from_body(pd_event(title="Model fraud-v3 drifting"))
    assert alert.source == "pagerduty" and alert.status == "firing"
    assert alert.labels["alertname"] == "Model fraud-v3 drifting"
    assert alert.labels["service"] == "ml-serving"
    assert alerts_from_body(pd_event("incident.annotated")) == []
    assert simulate_alerts(catalog, []).notes


def test_plain_alerts_as_alertmanagers_api_takes_them():
    (alert,) = alerts_from_body([{"labels": {"a": "b"}, "annotations": {"c": "d"}}])
    assert (alert.labels, alert.annotations, alert.source) == ({"a": "b"}, {"c": "d"}, "manual")


@pytest.mark.parametrize("body", [
    {"hello": "world"},
    {"alerts": [{"labels": "not a dict"}]},
    {"event": {"id": ""}},
    "a string",
    [{"labels": {"a": 1}}],
])
def test_bodies_that_are_not_alerts(body):
    with pytest.raises(Invalid):
        alerts_from_body(body)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    from app.cli.catalog import app
    from app.config import get_settings

    mappings_path, remediations = write_catalog(tmp_path / "catalog")
    monkeypatch.setenv("RUNBOOKD_MAPPINGS", str(mappings_path))
    monkeypatch.setenv("RUNBOOKD_REMEDIATIONS_DIR", str(remediations))
    monkeypatch.setenv("RUNBOOKD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/none.db")
    get_settings.cache_clear()
    yield app
    get_settings.cache_clear()


def test_the_simulate_command_with_labels(cli):
    from typer.testing import CliRunner

    args = ["simulate", *[f"--label={k}={v}" for k, v in DRIFT_LABELS.items()]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "mapping 'to-drift' -> runbook drift" in out
    assert "[RUNS ON ITS OWN]" in out and "[NEEDS APPROVAL]" in out
    assert "message: rolling back from <output.version of step check>" in out
    assert "note: guards and limits not read: no database at" in out


def test_the_simulate_command_with_a_body_as_json(cli, tmp_path):
    import json

    from typer.testing import CliRunner

    body = tmp_path / "alert.json"
    body.write_text(json.dumps(am_body(am_alert(labels=DRIFT_LABELS))))
    result = CliRunner().invoke(cli, ["simulate", str(body), "--json", "--no-guards"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["results"][0]["runbooks"][0]["steps"][1]["decision"] == "needs_approval"


def test_the_simulate_command_refuses_bad_input(cli, tmp_path):
    from typer.testing import CliRunner

    (tmp_path / "bad.json").write_text('{"hello": 1}')
    assert CliRunner().invoke(cli, ["simulate"]).exit_code == 2
    assert CliRunner().invoke(cli, ["simulate", "--label", "novalue"]).exit_code == 2
    assert CliRunner().invoke(cli, ["simulate", str(tmp_path / "bad.json")]).exit_code == 2


LIMITED = {
    "limits: {rate: [{count: 1, per: 6h}], concurrent: 1}":
    "limits: {rate: [{count: 1, per: 6h}, {count: 3, per: 7d}], concurrent: 2, "
    "concurrent_scope: runbook, breaker: {failures: 2, within: 30m}}",
    "    approval_timeout: 2h\n":
    "    approval_timeout: 2h\n"
    "    rate: [{count: 1, per: 6h}]\n"
    "    rate_key: \"retrain:{{ params.model }}:{{ params.env }}\"\n",
    "    idempotent: true\n":
    "    idempotent: true\n    rate: [{count: 10, per: 1d}]\n",
}


def limited_catalog(tmp_path, replace=None):
    from tests.support.catalog_fixtures import runbook_text

    mappings_path, remediations = write_catalog(
        tmp_path, {"drift": runbook_text(replace={**LIMITED, **(replace or {})})})
    return load_catalog(mappings_path, remediations, action_names=ACTIONS)


def test_the_limits_that_would_apply(tmp_path):
    (plan,) = simulate(limited_catalog(tmp_path), labels=DRIFT_LABELS, actions=ACTIONS).runbooks
    limits = plan.limits
    assert [(b.count, b.per) for b in limits.rate] == [(1, "6h"), (3, "7d")]
    assert (limits.concurrent, limits.concurrent_scope) == (2, "runbook")
    assert (limits.breaker.failures, limits.breaker.within) == (2, "30m")
    check, change = plan.steps
    # A shared key is rendered over the params, as the engine renders it.
    assert change.rate.model_dump() == {
        "key": "retrain:fraud-v3:production", "shared": True, "note": None,
        "budgets": [{"count": 1, "per": "6h", "spent": None, "next_allowed_at": None}]}
    # Without rate_key the budget is the step's own, per target.
    assert (check.rate.key, check.rate.shared) == ("drift:check:model:fraud-v3", False)
    # Nothing was read from a database: no counts, no verdict.
    assert limits.verdict is None and change.rate.budgets[0].spent is None


def test_a_key_without_valid_params_is_not_rendered(tmp_path):
    (plan,) = simulate(limited_catalog(tmp_path), labels={**DRIFT_LABELS,
                                                          "model": "Bad"}).runbooks
    assert plan.steps[1].rate.key is None
    assert plan.steps[1].rate.note == "the key needs valid parameters and a target"


def test_the_terminal_shows_the_limits(tmp_path):
    from app.cli.catalog import format_report

    report = simulate_alerts(limited_catalog(tmp_path), alerts_from_body(
        {"labels": DRIFT_LABELS}), actions=ACTIONS)
    text = format_report(report)
    assert "    limits:  rate per target: 1 per 6h; 3 per 7d\n" in text
    assert "             concurrent: 2 across the runbook\n" in text
    assert "             breaker: 2 failures within 30m\n" in text
    assert ("         rate: 1 per 6h for shared budget retrain:fraud-v3:production\n"
            in text)
    report.results[0].runbooks[0].limits.rate[0].spent = 1
    report.results[0].runbooks[0].limits.verdict = "rate limited: (as the engine says)"
    text = format_report(report)
    assert "rate per target: 1 per 6h: 1 spent; 3 per 7d\n" in text
    assert "             now: rate limited: (as the engine says)\n" in text


def test_simulate_shows_where_a_step_goes_on_success() -> None:
    """The staged-promotion runbook's watch goes to `promote` on success: simulate says so."""
    from pathlib import Path

    from app.actions.registry import default_registry

    repo = Path(__file__).resolve().parents[2]
    specs = default_registry().specs()
    shipped = load_catalog(repo / "alert_mappings.yaml", repo / "remediations",
                           action_names=specs)
    result = simulate(shipped, labels={"alertname": "ModelPromotionRequested",
                                       "model": "fraud-v3", "version": "2"}, actions=specs)
    steps = {s.id: s for s in result.runbooks[0].steps}
    assert steps["watch-challenger"].on_success == "goto promote"
    assert steps["watch-challenger"].on_failure == "goto retire-challenger"
    assert steps["promote"].on_success == "end"
