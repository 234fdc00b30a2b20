"""Invariant 6: alert data reaches an action only through typed, validated params.

An action's template context (its `with`, its verification, its rollback, the runbook's
preconditions, and the target, which actions see as `execution.target`) has no `alert` at
all, and lint reports every reference to it at its file:line:col. A stored runbook version
that predates the rule cannot smuggle a label through either: the name is undefined.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from app.catalog.lint import lint
from app.catalog.loader import Catalog, LoadedRunbook
from app.catalog.matcher import CompiledMapping, parse_matchers
from app.catalog.params import render_target
from app.catalog.schema import Runbook
from app.catalog.simulate import simulate
from app.catalog.templating import RenderError, make_context, render_value
from app.db import make_engine, make_session_factory
from app.engine.context import step_context
from app.engine.models import Execution, ExecutionAlert
from app.intake.models import Alert
from tests.support.catalog_fixtures import (
    ACTIONS,
    DRIFT_LABELS,
    MAPPINGS,
    runbook_text,
    write_catalog,
)

TODAY = dt.date(2026, 11, 26)
HOSTILE = "--exec=$(id) ; rm -rf /"

# Every way to read the alert that once passed lint, and the obvious ones.
READS = [
    "{{ alert.get('labels').x }}",
    "{% for k, v in alert.items() %}{{ v }}{% endfor %}",
    "{{ alert.generator_url }}",
    "{{ alert.status }}",
    "{{ alert }}",
    "{{ alert['labels']['x'] }}",
    "{{ alert.labels.x }}",
    "{{ alert.annotations | list | first }}",
    "{% set a = alert %}{{ a.labels.x }}",
]

# Where an action template lives: (replace old -> new with EXPR, the text that opens the value).
PLACES = {
    "step with": ({'{message: "checking {{ params.model }}': '{message: "checking EXPR'},
                  '"checking EXPR'),
    "verify": ({'"verify {{ params.model }}"': '"verify EXPR"'}, '"verify EXPR'),
    "rollback": ({'"undo {{ params.model }}"': '"undo EXPR"'}, '"undo EXPR'),
    "precondition": ({"\nsteps:\n": '\npreconditions:\n  - {action: noop, with: '
                                     '{message: "pre EXPR"}}\nsteps:\n'}, '"pre EXPR'),
    "target": ({'target: "model:{{ params.model }}"': 'target: "model:EXPR"'}, '"model:EXPR'),
}


def _position(text: str, needle: str) -> tuple[int, int]:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number, line.index(needle) + 1
    raise AssertionError(needle)


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("expr", READS)
def test_lint_reports_every_alert_reference_in_an_action_template(tmp_path, place, expr):
    replace, opening = PLACES[place]
    text = runbook_text(replace={old: new.replace("EXPR", expr) for old, new in replace.items()})
    mappings_path, remediations = write_catalog(tmp_path, {"drift": text}, MAPPINGS)
    issues = lint(mappings_path, remediations, actions=ACTIONS, today=TODAY)
    errors = [i for i in issues if i.severity == "error" and "alert" in i.message]
    assert errors, "\n".join(map(str, issues)) or "no issue at all"
    line, col = _position(text, opening.replace("EXPR", expr))
    assert (errors[0].line, errors[0].col) == (line, col), str(errors[0])
    assert str(errors[0]).startswith(f"{errors[0].file}:{line}:{col}: error: ")
    assert errors[0].file.endswith("drift.yaml")
    assert "params" in errors[0].message  # it says what to do instead


def test_the_postmortem_may_still_read_the_alerts(tmp_path):
    text = runbook_text(replace={
        "  # Postmortem: {{ params.model }}":
        "  # Postmortem: {{ params.model }}\n"
        "  {% for alert in alerts %}{{ alert.labels.alertname }}{% endfor %}"})
    mappings_path, remediations = write_catalog(tmp_path, {"drift": text}, MAPPINGS)
    assert lint(mappings_path, remediations, actions=ACTIONS, today=TODAY) == []


def test_an_action_context_has_no_alert():
    context = make_context(params={"model": "m"}, steps={"check": {"output": {}}},
                           execution={"id": 1, "target": "model:m"})
    assert set(context) == {"params", "steps", "execution"}
    for expr in READS:
        with pytest.raises(RenderError, match="alert"):
            render_value({"argv": ["tool", expr]}, context)


def test_the_target_is_rendered_from_params_only():
    # A runbook stored before lint knew the rule: it never passes lint today.
    rb = Runbook.model_validate(yaml.safe_load(runbook_text(replace={
        'target: "model:{{ params.model }}"': 'target: "model:{{ alert.labels.x }}"'})))
    with pytest.raises(RenderError, match="alert"):
        render_target(rb, {"model": "m", "env": "production"})


def _unlinted_catalog(step_text: str) -> Catalog:
    """A catalog holding a runbook that reads the alert in a step, as a version stored before
    lint knew the rule would (the loader refuses it now)."""
    rb = Runbook.model_validate(yaml.safe_load(runbook_text(
        replace={'{message: "checking {{ params.model }}': '{message: "' + step_text})))
    content = rb.model_dump(mode="json", by_alias=True)
    mapping = CompiledMapping(0, "to-drift", "drift", False, {},
                              tuple(parse_matchers(['alertname="Drift"'])))
    return Catalog(runbooks={"drift": LoadedRunbook(rb, "v0", content, "drift.yaml")},
                   mappings=(mapping,), loaded_at=dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("expr", READS)
def test_simulate_never_renders_alert_data_into_a_step(expr):
    catalog = _unlinted_catalog(expr)
    labels = {**DRIFT_LABELS, "x": HOSTILE}
    (plan,) = simulate(catalog, labels=labels, annotations={"x": HOSTILE}).runbooks
    check = plan.steps[0]
    assert HOSTILE not in repr(check.with_)
    assert any("alert" in e for e in check.errors), check.errors


async def test_a_step_context_from_the_database_has_no_alert(db_url):
    engine = make_engine(db_url)
    now = dt.datetime.now(dt.UTC)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            alert = Alert(source="alertmanager", fingerprint="f" * 16, starts_at=now,
                          status="firing", status_at=now, alertname="Drift",
                          labels={**DRIFT_LABELS, "x": HOSTILE}, annotations={"x": HOSTILE},
                          generator_url=HOSTILE, received_at=now, updated_at=now)
            execution = Execution(runbook_id="drift", runbook_version="v0",
                                  target="model:fraud-v3", status="running",
                                  params={"model": "fraud-v3"}, dry_run=False, trigger="alert",
                                  created_at=now, updated_at=now)
            session.add_all([alert, execution])
            await session.flush()
            session.add(ExecutionAlert(execution_id=execution.id, alert_id=alert.id,
                                       attached_at=now, role="trigger"))
            await session.flush()
            context = await step_context(session, execution)
    finally:
        await engine.dispose()
    assert "alert" not in context
    assert HOSTILE not in repr(context)
    assert render_value({"argv": ["tool", "{{ params.model }}", "{{ execution.target }}"]},
                        context) == {"argv": ["tool", "fraud-v3", "model:fraud-v3"]}
    for expr in READS:
        with pytest.raises(RenderError, match="alert"):
            render_value({"argv": ["tool", expr]}, context)
