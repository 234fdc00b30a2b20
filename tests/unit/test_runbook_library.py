"""The shipped runbook library: it lints clean, every runbook has a mapping, and each one's
alert simulates to the plan a tired engineer expects (what runs alone, what needs approval)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.actions.registry import default_registry
from app.catalog.lint import lint
from app.catalog.loader import Catalog, load_catalog
from app.catalog.parser import registry_specs
from app.catalog.schema import Goto
from app.catalog.simulate import simulate

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "alert_mappings.yaml"
REMEDIATIONS = ROOT / "remediations"
TODAY = dt.date(2026, 11, 26)
RUN, ASK = "run", "needs_approval"

# runbook id -> (the alert's labels, the mapping that takes it, [(step id, decision)])
PLANS = {
    "registry-quick-rollback": (
        {"alertname": "ModelRollbackRequested", "model": "demo-model"},
        "registry-quick-rollback",
        [("read-alias", RUN), ("verify-current", RUN), ("verify-previous", RUN),
         ("rollback", ASK)],
    ),
    "registry-quick-rollback-mlflow": (
        {"alertname": "ModelRollbackRequested", "model": "fraud-v3", "registry": "mlflow"},
        "registry-quick-rollback-mlflow",
        [("read-alias", RUN), ("verify-current", RUN), ("rollback", ASK)],
    ),
    "model-artifact-corrupt-mlflow": (
        {"alertname": "ModelArtifactCorrupt", "team": "ml-platform", "model": "fraud-v3",
         "alias": "champion", "severity": "critical", "registry": "mlflow"},
        "model-artifact-corrupt-mlflow",
        [("verify-artifact", RUN), ("check-storage", RUN), ("read-alias", RUN),
         ("rollback-alias", ASK), ("check-serving-errors", RUN)],
    ),
    "model-drift": (
        {"alertname": "ModelDrift", "severity": "critical", "team": "ml-platform",
         "model": "demo-model", "env": "production"},
        "model-drift",
        [("check-freshness", RUN), ("check-inputs", RUN), ("check-serving", RUN),
         ("read-champion", RUN), ("list-versions", RUN), ("rollback-champion", ASK),
         ("queue-retraining", ASK)],
    ),
    "model-drift-mlflow": (
        {"alertname": "ModelDrift", "severity": "critical", "team": "ml-platform",
         "registry": "mlflow", "model": "fraud-v3", "env": "production"},
        "model-drift-mlflow",
        [("check-freshness", RUN), ("check-inputs", RUN), ("check-serving", RUN),
         ("read-champion", RUN), ("rollback-champion", ASK), ("queue-retraining", ASK)],
    ),
    "model-drift-recalibrate": (
        {"alertname": "ModelDrift", "severity": "warning", "team": "ml-platform",
         "model": "fraud-v3", "env": "staging"},
        "model-drift-mild",
        [("check-freshness", RUN), ("check-labels", RUN), ("read-champion", RUN),
         ("recalibrate", ASK), ("wait-recalibration", RUN)],
    ),
    "model-artifact-corrupt": (
        {"alertname": "ModelArtifactCorrupt", "team": "ml-platform", "model": "fraud-v3",
         "alias": "champion", "severity": "critical"},
        "model-artifact-corrupt",
        [("verify-artifact", RUN), ("check-storage", RUN), ("list-versions", RUN),
         ("rollback-alias", ASK), ("check-serving-errors", RUN)],
    ),
    "training-pipeline-failed": (
        {"alertname": "TrainingRunFailed", "team": "ml-training", "dag_id": "retrain_fraud",
         "run_id": "scheduled__2026-11-26T06:00:00+00:00", "severity": "warning"},
        "training-run-failed",
        [("check-oom", RUN), ("check-input", RUN), ("check-repeat", RUN),
         ("rerun-failed-tasks", ASK), ("wait-for-rerun", RUN)],
    ),
    "stale-feature-store": (
        {"alertname": "FeatureViewStale", "severity": "warning",
         "feature_view": "user_transactions_7d", "retrain_dag": "retrain_fraud"},
        "stale-feature-store",
        [("check-materializer", RUN), ("pause-retraining", ASK), ("check-source", RUN),
         ("backfill", ASK), ("wait-for-backfill", RUN), ("resume-retraining", ASK)],
    ),
    "serving-latency-regression": (
        {"alertname": "ModelServingLatencyHigh", "severity": "critical", "env": "production",
         "model": "ranker"},
        "serving-latency-regression",
        [("check-recent-deploy", RUN), ("check-load", RUN), ("check-throttling", RUN),
         ("check-feature-latency", RUN), ("read-serving", RUN), ("rollback-serving", ASK)],
    ),
    "input-data-quality": (
        {"alertname": "DatasetValidationFailed", "team": "data-platform",
         "dataset": "transactions_daily", "partition": "2026-11-26"},
        "input-data-quality",
        [("read-failed-checks", RUN), ("check-schema", RUN), ("check-ingest", RUN),
         ("quarantine-partition", ASK), ("block-retraining", ASK)],
    ),
    "prediction-skew": (
        {"alertname": "PredictionSkew", "severity": "warning", "model": "fraud-v3"},
        "prediction-skew",
        [("check-input-drift", RUN), ("check-fallbacks", RUN), ("read-champion", RUN),
         ("shadow-champion", ASK), ("rollback-champion", ASK)],
    ),
    "canary-promotion-failed": (
        {"alertname": "CanaryPromotionFailed", "namespace": "ml-serving", "model": "fraud-v3",
         "rollout": "fraud-v3-serving", "env": "production"},
        "canary-promotion-failed",
        [("check-canary-pods", RUN), ("check-canary-features", RUN), ("read-rollout", RUN),
         ("read-champion", RUN), ("abort-promotion", ASK), ("verify-champion", RUN)],
    ),
    "model-staged-promotion": (
        {"alertname": "ModelPromotionRequested", "model": "fraud-v3", "version": "7"},
        "model-staged-promotion",
        [("read-champion", RUN), ("verify-candidate", RUN), ("set-challenger", ASK),
         ("watch-challenger", RUN), ("promote", ASK), ("retire-challenger", RUN)],
    ),
}


@pytest.fixture(scope="module")
def specs() -> dict:
    return registry_specs(default_registry())


@pytest.fixture(scope="module")
def catalog(specs) -> Catalog:
    return load_catalog(MAPPINGS, REMEDIATIONS, action_names=specs, today=TODAY)


def test_the_library_lints_clean(specs):
    assert [str(i) for i in lint(MAPPINGS, REMEDIATIONS, actions=specs, today=TODAY)] == []


def test_the_library_has_no_lint_error_today(specs):
    issues = lint(MAPPINGS, REMEDIATIONS, actions=specs)
    assert [str(i) for i in issues if i.severity == "error"] == []


def test_every_runbook_has_a_plan_here_and_a_mapping(catalog):
    assert set(catalog.runbooks) == set(PLANS)
    assert {m.runbook for m in catalog.mappings} == set(PLANS)


@pytest.mark.parametrize("runbook_id", sorted(PLANS))
def test_the_alert_simulates_to_the_expected_plan(catalog, specs, runbook_id):
    labels, mapping, expected = PLANS[runbook_id]
    result = simulate(catalog, labels=labels, annotations={"summary": "test"}, actions=specs)
    assert [(p.mapping, p.runbook) for p in result.runbooks] == [(mapping, runbook_id)]
    (plan,) = result.runbooks
    assert plan.would_execute, plan.reason
    assert [(s.id, s.decision) for s in plan.steps] == expected
    # Every rendered `with:` that is fully known validates against the real action's model.
    checks = [*plan.preconditions, *(c for s in plan.steps for c in (s.verify, s.rollback) if c)]
    assert [e for s in plan.steps for e in s.errors] == []
    assert [e for c in checks for e in c.errors] == []
    for step in plan.steps:
        if step.decision == ASK:
            assert step.approvals is not None and step.approvals.count >= 1


@pytest.mark.parametrize("runbook_id", sorted(PLANS))
def test_hostile_labels_never_start_an_execution(catalog, runbook_id):
    labels, _, _ = PLANS[runbook_id]
    runbook = catalog.runbooks[runbook_id].runbook
    sources = {spec.from_.removeprefix("labels.") for spec in runbook.params.values()}
    for hostile in ("{{ 7*7 }}", "$(rm -rf /)", "'; DROP TABLE x; --", "x" * 100_000):
        poisoned = {k: hostile if k in sources else v for k, v in labels.items()}
        for plan in simulate(catalog, labels=poisoned).runbooks:
            assert not plan.would_execute
            assert plan.param_errors


def test_the_drift_runbook_is_what_the_end_to_end_test_needs(catalog, specs):
    labels, _, _ = PLANS["model-drift"]
    (plan,) = simulate(catalog, labels=labels, actions=specs).runbooks
    assert plan.preconditions[0].action == "prometheus.query"
    rollback = next(s for s in plan.steps if s.id == "rollback-champion")
    assert (rollback.action, rollback.risk) == ("registry.set_alias", "risky")
    assert rollback.with_["model"] == "demo-model"
    assert (rollback.with_["alias"], rollback.with_["version"]) == ("champion", "previous")
    assert rollback.verify.action == "prometheus.query" and rollback.verify.within == "20m"
    assert rollback.verify.with_["expect"] == "< 0.1"
    assert rollback.rollback.with_["version"] == "<output.version of step read-champion>"


@pytest.mark.parametrize("runbook_id", ["model-drift", "model-drift-mlflow"])
def test_the_drift_runbooks_queue_retraining_in_airflow_on_a_shared_budget(catalog, specs,
                                                                          runbook_id):
    labels, _, _ = PLANS[runbook_id]
    (plan,) = simulate(catalog, labels=labels, actions=specs).runbooks
    queued = next(s for s in plan.steps if s.id == "queue-retraining")
    assert (queued.action, queued.with_["dag_id"]) == ("airflow.trigger", "retrain_model")
    # Named after the execution and the step: a repeat of the step attaches to its run.
    assert queued.with_["dag_run_id"] == "runbookd-<execution id>-queue-retraining"
    assert queued.with_["conf"].items() >= {"model": labels["model"], "env": labels["env"],
                                            "window": "30d", "reason": "drift"}.items()
    step = catalog.runbooks[runbook_id].runbook.step("queue-retraining")
    assert (step.on_resolve, step.rate_key) == ("continue", "retrain:{{ params.model }}")


def test_recalibration_is_waited_for_before_it_is_verified(catalog, specs):
    labels, _, _ = PLANS["model-drift-recalibrate"]
    (plan,) = simulate(catalog, labels=labels, actions=specs).runbooks
    steps = {s.id: s for s in plan.steps}
    trigger, wait = steps["recalibrate"], steps["wait-recalibration"]
    assert (trigger.action, trigger.with_["dag_id"]) == ("airflow.trigger", "recalibrate_model")
    assert trigger.rollback.action == "registry.set_alias"
    assert (wait.action, wait.with_["dag_id"]) == ("airflow.wait", "recalibrate_model")
    assert wait.with_["dag_run_id"] == "<output.dag_run_id of step recalibrate>"
    assert wait.verify.with_["expect"] == "< 0.05"


def test_the_staged_promotion_promotes_on_a_held_watch_or_retires_the_challenger(catalog,
                                                                                specs):
    runbook = catalog.runbooks["model-staged-promotion"].runbook
    watch, promote, retire = (runbook.step(s) for s in ("watch-challenger", "promote",
                                                         "retire-challenger"))
    assert (watch.on_success, watch.on_failure) == (Goto(goto="promote"),
                                                    Goto(goto="retire-challenger"))
    # A promotion ends there: the challenger is retired only after a failed watch.
    assert promote.on_success == "end"
    assert promote.rollback.auto and promote.on_failure == "rollback"
    # Retiring points the challenger back at what already serves everyone: no approval.
    assert retire.risk == "safe"
    labels, _, _ = PLANS["model-staged-promotion"]
    (plan,) = simulate(catalog, labels=labels, actions=specs).runbooks
    steps = {s.id: s for s in plan.steps}
    held = steps["watch-challenger"].with_
    assert (held["within"], held["stable_for"]) == ("15m", "15m")  # the default soak
    assert 'variant="challenger", version="7"' in held["query"]
    assert (steps["set-challenger"].with_["alias"], steps["promote"].with_["alias"]) == (
        "challenger", "champion")
    assert steps["retire-challenger"].with_ == {
        "model": "fraud-v3", "alias": "challenger",
        "version": "<output.version of step read-champion>"}


def test_the_pipeline_runbooks_drive_airflow_and_undo_what_they_pause(catalog, specs):
    labels, _, _ = PLANS["training-pipeline-failed"]
    steps = {s.id: s for s in simulate(catalog, labels=labels, actions=specs).runbooks[0].steps}
    # The rerun clears and waits on the alert's own run, and a failed rerun fails the step.
    for step_id, action in (("rerun-failed-tasks", "airflow.clear_failed"),
                            ("wait-for-rerun", "airflow.wait")):
        assert (steps[step_id].action, steps[step_id].with_["dag_run_id"]) == (
            action, labels["run_id"])
    training = catalog.runbooks["training-pipeline-failed"].runbook
    assert training.step("rerun-failed-tasks").retries == 0
    assert training.on_failure_notify == ["pagerduty:ml-training"]

    labels, _, _ = PLANS["stale-feature-store"]
    steps = {s.id: s for s in simulate(catalog, labels=labels, actions=specs).runbooks[0].steps}
    assert (steps["backfill"].action, steps["backfill"].with_["dag_run_id"]) == (
        "airflow.trigger", "runbookd-<execution id>-backfill")
    assert steps["wait-for-backfill"].with_["dag_run_id"] == "<output.dag_run_id of step backfill>"
    for runbook_id, pause in (("stale-feature-store", "pause-retraining"),
                              ("input-data-quality", "block-retraining")):
        step = catalog.runbooks[runbook_id].runbook.step(pause)
        assert (step.action, step.rollback.action) == ("airflow.pause", "airflow.unpause")
        # Resuming retraining asks the pause's approvers.
        assert step.risk == "risky" and not step.rollback.auto
    quarantine = catalog.runbooks["input-data-quality"].runbook.step("quarantine-partition")
    # Named bare, found on runbookd's PATH: an allow-list entry may name it or its path.
    assert quarantine.with_["argv"][0] == quarantine.rollback.with_["argv"][0] == \
        "dataset-quarantine"


@pytest.mark.parametrize("runbook_id", sorted(PLANS))
def test_every_runbook_is_complete(catalog, runbook_id):
    rb = catalog.runbooks[runbook_id].runbook
    assert rb.summary and rb.rationale and rb.triage and rb.escalation and rb.postmortem
    assert {t.points_to for t in rb.triage} >= {"compute", "data", "model"}
    assert any(s.verify for s in rb.steps), "no step verifies its effect"
    assert all(s.approvals for s in rb.steps if s.risk == "risky")
    assert all(s.risk == "safe" for s in rb.steps
               if s.action.split(".")[-1].startswith(("get", "list", "query", "verify")))
    assert all(s.timeout for s in rb.steps), "every step bounds its time"
    assert all(spec.pattern or spec.allowed for spec in rb.params.values())
    if rb.severity == "critical":
        assert any(c.startswith("pagerduty:") for c in rb.on_failure_notify), \
            "a critical runbook that fails must page (on_failure_notify)"


def postmortem_scope(params: dict) -> dict:
    """Exactly the placeholders documented in remediations/model-drift.yaml."""
    step = {"id": "s", "title": "Step", "status": "succeeded", "summary": "done",
            "duration_ms": 12, "approvals": [{"identity": "alice", "decision": "approve",
                                              "comment": "", "created_at": "t"}]}
    return {
        "runbook": {"id": "rb", "title": "Runbook", "version": "a" * 64},
        "execution": {"id": 1, "status": "succeeded", "target": "t", "dry_run": False,
                      "created_at": "t0", "finished_at": "t1", "started_by": None},
        "params": params,
        "alerts": [{"labels": {"alertname": "A"}, "annotations": {}, "starts_at": "t0",
                    "ends_at": None}],
        "steps": [step],
        "timeline": [{"created_at": "t0", "kind": "execution.created", "actor": "system",
                      "reason": "alert"}],
        "objectives": {"time_to_diagnose": "15m", "time_to_restore": "1h",
                       "diagnose_met": True, "restore_met": None},
        "durations": {"time_to_diagnose": "3m", "time_to_restore": None, "total": "40m"},
    }


@pytest.mark.parametrize("runbook_id", sorted(PLANS))
def test_the_postmortem_renders_from_the_documented_placeholders(catalog, runbook_id):
    labels, _, _ = PLANS[runbook_id]
    (plan,) = simulate(catalog, labels=labels).runbooks
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    text = env.from_string(catalog.runbooks[runbook_id].runbook.postmortem).render(
        **postmortem_scope(plan.params))
    assert text.startswith("# Postmortem: ")
    assert "Step" in text and "{{" not in text
