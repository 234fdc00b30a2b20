"""Drills, the pure parts: cron parsing and firing times, due-time maths, the `drill:` schema
and lint, and how a drilled step's outcome becomes a verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from app.catalog.cron import CronError, parse_cron
from app.catalog.lint import lint
from app.catalog.schema import DrillSpec
from app.engine.drills_scheduler import EPOCH, latest_due, next_due, spread
from app.engine.drills_verdicts import check_verdict, headline, problems, step_verdict
from tests.support.engine_catalog import runbook, step, write_catalog

UTC = dt.UTC
# Tuesday 1 December 2026, 22:17:30 UTC.
NOW = dt.datetime(2026, 12, 1, 22, 17, 30, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0, month: int = 12) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("expr", "previous", "following"), [
    ("0 6 * * 1", at(30, 6, month=11), at(7, 6)),  # Mondays 06:00
    ("*/15 * * * *", at(1, 22, 15), at(1, 22, 30)),
    ("0 0 * * *", at(1, 0), at(2, 0)),
    ("30 22 * * *", at(30, 22, 30, month=11), at(1, 22, 30)),
    ("0 9-17/4 * * 1-5", at(1, 17), at(2, 9)),  # 9, 13, 17 on weekdays
    ("0 0 1 * *", at(1, 0), dt.datetime(2027, 1, 1, tzinfo=UTC)),
    ("0 0 * * 0", at(29, 0, month=11), at(6, 0)),  # Sunday as 0
    ("0 0 * * 7", at(29, 0, month=11), at(6, 0)),  # and as 7
    ("0 12 15 * 5", at(27, 12, month=11), at(4, 12)),  # day 15 OR Friday (Vixie cron)
    ("5,10 1 * * *", at(1, 1, 10), at(2, 1, 5)),
])
def test_cron_previous_and_next(expr, previous, following):
    cron = parse_cron(expr)
    assert cron.previous(NOW) == previous
    assert cron.next_after(NOW) == following


def test_a_firing_time_is_its_own_previous():
    assert parse_cron("0 6 * * 1").previous(at(30, 6, month=11)) == at(30, 6, month=11)


@pytest.mark.parametrize(("expr", "says"), [
    ("0 6 * *", "has 4 fields"),
    ("61 * * * *", "minute 61 is outside 0-59"),
    ("0 6 * * mon", "names like 'mon' are not supported"),
    ("0 20-6 * * *", "runs backwards"),
    ("0 6 * 13 *", "month 13 is outside 1-12"),
    ("*/0 * * * *", "outside"),
    ("@weekly", "has 1 fields"),
])
def test_bad_cron_says_what_to_fix(expr, says):
    with pytest.raises(CronError, match=says):
        parse_cron(expr)


def test_every_is_anchored_to_the_epoch_so_replicas_agree():
    spec = DrillSpec(every="7d")
    due = latest_due(spec, NOW)
    assert due <= NOW < due + dt.timedelta(days=7)
    assert due.timestamp() % (7 * 86400) == 0
    assert latest_due(spec, NOW + dt.timedelta(days=1)) == due  # same slot a day later
    assert next_due(spec, NOW) == due + dt.timedelta(days=7)
    hourly = DrillSpec(every="1h")
    assert latest_due(hourly, NOW) == at(1, 22) and next_due(hourly, NOW) == at(1, 23)


def test_each_runbook_drills_at_its_own_time_in_the_period_every_replica_agrees_on():
    spec = DrillSpec(every="7d")
    week = dt.timedelta(days=7)
    dues = {rid: latest_due(spec, NOW, rid) for rid in ("model-drift", "prediction-skew",
                                                        "stale-feature-store")}
    assert len(set(dues.values())) == 3  # not all at the same instant
    for rid, due in dues.items():
        assert due <= NOW < due + week
        assert latest_due(spec, NOW, rid) == due  # a pure function: replicas agree
        assert (due - EPOCH).total_seconds() % week.total_seconds() == spread(
            rid, week).total_seconds()
        assert next_due(spec, NOW, rid) == due + week
        assert latest_due(spec, due + week, rid) == due + week  # due exactly on time


def test_cron_due_times():
    spec = DrillSpec(cron="0 6 * * 1")
    assert latest_due(spec, NOW) == at(30, 6, month=11)
    assert next_due(spec, NOW) == at(7, 6)


@pytest.mark.parametrize(("body", "says"), [
    ({}, "exactly one of `every`"),
    ({"every": "7d", "cron": "0 6 * * 1"}, "exactly one of `every`"),
    ({"every": "10s"}, "at least 1m"),
    ({"cron": "0 6 * * funday"}, "is not a number"),
    ({"every": "7d", "when": "never"}, "Extra inputs"),
])
def test_drill_spec_refuses_what_cannot_be_scheduled(body, says):
    with pytest.raises(ValidationError, match=says):
        DrillSpec.model_validate(body)


def _lint(tmp_path: Path, **drill: object) -> list[str]:
    book = runbook("drilled", [step("only")], drill=drill)
    mappings, remediations = write_catalog(tmp_path, [book])
    return [f"{i.severity}: {i.message}" for i in lint(mappings, *remediations.glob("*.yaml"))]


def test_lint_a_drill_without_the_params_it_needs(tmp_path):
    found = _lint(tmp_path, every="7d")
    assert any(m.startswith("error: the drill has no value for required parameter model")
               and "add `params: {model: ...}` to `drill:`" in m for m in found), found


def test_lint_drill_params_are_checked_like_a_mapping(tmp_path):
    found = _lint(tmp_path, every="7d", params={"model": "Bad Name", "colour": "red"})
    assert any("params.model" in m and m.startswith("error") for m in found), found
    assert any("declares no parameter 'colour'" in m for m in found), found
    assert not [m for m in _lint(tmp_path / "ok", every="7d", params={"model": "fraud"})
                if m.startswith("error")]


def test_shipped_runbooks_each_have_a_drill_that_lints(tmp_path):
    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "remediations").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        assert body.get("drill"), f"{path.name} has no drill:"
    errors = [i for i in lint(root / "alert_mappings.yaml",
                              *(root / "remediations").glob("*.yaml")) if i.severity == "error"]
    assert errors == []


def _step(**kw):
    base = {"step": "s", "title": "S", "action": "prometheus.query", "status": "succeeded",
            "summary": "dry run (read-only, queried once): ...", "error": None,
            "output": {"count": 3}, "params": {"query": "up"}}
    return step_verdict(**{**base, **kw})


def test_verdicts_of_drilled_steps():
    assert _step().ok and _step().kind == "ran"
    empty = _step(output={"count": 0}, params={"query": "model_psi{model='gone'}"})
    assert not empty.ok and "returns no series" in empty.reason
    assert _step(output={"count": 0}, params={"query": "x", "empty": "pass"}).ok
    failed = _step(status="failed", error="host elsewhere is not on the allow-list")
    assert not failed.ok and failed.reason == "host elsewhere is not on the allow-list"
    planned = _step(action="registry.set_alias", output={"drill": "planned"},
                    summary="drill, planned only: champion: version 2 -> version 1")
    assert planned.ok and planned.kind == "planned"
    unplannable = _step(action="airflow.trigger", status="failed", output={"drill": "planned"},
                        error="cannot plan airflow.trigger: DAG retrain does not exist")
    assert not unplannable.ok and unplannable.kind == "planned"
    assert _step(status="skipped", summary="rate").ok
    assert _step(status="timed_out", error=None, summary="").reason == "timed_out"


def test_verdicts_of_preconditions_and_counts():
    ok = check_verdict(index=0, title="PSI high", action="prometheus.query", ok=True,
                       summary="now: 0.1 (does not hold)", error=None,
                       output={"count": 1}, params={"query": "psi"})
    none = check_verdict(index=1, title="", action="prometheus.query", ok=True, summary="",
                         error=None, output={"count": 0}, params={"query": "psi"})
    broken = check_verdict(index=2, title="", action="prometheus.query", ok=False,
                           summary="rejected", error="Prometheus rejected the query", output={},
                           params={})
    assert ok.ok and ok.kind == "check" and ok.step == "precondition-1"
    assert not none.ok and not broken.ok
    assert problems([ok, none, broken]) == 2
    assert problems([ok.as_dict(), none.as_dict()]) == 1
    assert [headline(n) for n in (0, 1, 3)] == ["no problems", "1 problem", "3 problems"]
