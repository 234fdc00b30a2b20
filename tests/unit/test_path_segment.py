"""A param in a URL path stays one path segment: the `path_segment` filter percent-encodes
everything outside the unreserved characters (`/` included) and refuses `.`, `..` and the
empty string; lint warns when a URL path takes a param that could be `/`, `.` or `..` without
it; the shipped runbooks use it and their patterns keep dot segments out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import yaml
from pydantic import ValidationError

from app.actions.airflow_client import RunParams
from app.actions.http import RequestParams
from app.actions.registry import default_registry
from app.catalog.lint import lint
from app.catalog.loader import load_catalog
from app.catalog.params import ParamError, resolve_params
from app.catalog.parser import registry_specs
from app.catalog.schema import Runbook
from app.catalog.simulate import simulate
from app.catalog.templating import RenderError, make_context, render_string, render_value
from tests.support.catalog_fixtures import ACTIONS, MAPPINGS, line_of, runbook_text, write_catalog

ROOT = Path(__file__).resolve().parents[2]
TODAY = dt.date(2026, 11, 26)
HTTP_ACTIONS = {**ACTIONS, "http.request": RequestParams}


def seg(value):
    return render_string("{{ v | path_segment }}", {"v": value})


@pytest.mark.parametrize(("value", "expected"), [
    ("retrain_model", "retrain_model"),
    ("a-b.c_d~e", "a-b.c_d~e"),
    ("a/b", "a%2Fb"),
    ("../../etc", "..%2F..%2Fetc"),
    ("scheduled__2026-11-26T06:00:00+00:00", "scheduled__2026-11-26T06%3A00%3A00%2B00%3A00"),
    ("a b?c#d%e&f=g;h", "a%20b%3Fc%23d%25e%26f%3Dg%3Bh"),
    ("%2E%2E", "%252E%252E"),
    ("ü", "%C3%BC"),
    ("...", "..."),
    (42, "42"),
])
def test_path_segment_encodes_a_whole_segment(value, expected):
    assert seg(value) == expected


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_path_segment_refuses_dot_segments(value):
    with pytest.raises(RenderError, match="path segment"):
        seg(value)


def _shipped(runbook_id: str) -> Runbook:
    return Runbook.model_validate(yaml.safe_load(
        (ROOT / "remediations" / f"{runbook_id}.yaml").read_text()))


def _urls(rb: Runbook) -> list[str]:
    found = []
    for step in rb.steps:
        for part in (step.with_, step.rollback and step.rollback.with_):
            if part and isinstance(part.get("url"), str):
                found.append(part["url"])
    return found


@pytest.mark.parametrize("run_id", ["..", ".", "a/b", "../../retrain_model", "x/../.."])
def test_the_training_runbook_never_leaves_its_run_in_the_url(run_id):
    rb = _shipped("training-pipeline-failed")
    # The pattern refuses what could climb or split...
    assert rb.params["run_id"].pattern is not None
    with pytest.raises(ParamError):
        resolve_params(rb, labels={"dag_id": "retrain_fraud", "run_id": run_id},
                       annotations={})
    # ...and even a value that got past it stays one segment, or does not render.
    context = make_context(params={"pipeline": "retrain_fraud", "run_id": run_id})
    for url in _urls(rb):
        if "run_id" not in url:
            continue
        try:
            rendered = render_string(url, context)
        except RenderError:
            continue
        # What goes on the wire, after httpx normalises the path.
        parts = httpx.URL(rendered).raw_path.decode().split("?")[0].split("/")
        assert parts[:6] == ["", "api", "v1", "dags", "retrain_fraud", "dagRuns"], parts
        assert unquote(parts[6]) == run_id  # one segment, decoded back to the value
    # ...and the airflow.* actions it uses refuse it as a run id of their own.
    with pytest.raises(ValidationError):
        RunParams.model_validate({"dag_id": "retrain_fraud", "dag_run_id": run_id})


def test_every_shipped_url_path_param_goes_through_path_segment():
    for file in sorted((ROOT / "remediations").glob("*.yaml")):
        rb = Runbook.model_validate(yaml.safe_load(file.read_text()))
        for step in rb.steps:
            for part in (step.with_, step.rollback and step.rollback.with_):
                for url in _url_strings(part or {}):
                    path = url.split("?", 1)[0]
                    if "params." in path:
                        assert "| path_segment" in path, f"{file.name}: {url}"


def _url_strings(value, key=None):
    if isinstance(value, str):
        return [value] if key in ("url", "href", "path", "uri") else []
    if isinstance(value, list):
        return [s for v in value for s in _url_strings(v, key)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _url_strings(v, k)]
    return []


def test_the_shipped_library_still_simulates_the_training_run():
    specs = registry_specs(default_registry())
    catalog = load_catalog(ROOT / "alert_mappings.yaml", ROOT / "remediations",
                           action_names=specs, today=TODAY)
    labels = {"alertname": "TrainingRunFailed", "team": "ml-training", "dag_id": "retrain_fraud",
              "run_id": "scheduled__2026-11-26T06:00:00+00:00", "severity": "warning"}
    (plan,) = simulate(catalog, labels=labels, actions=specs).runbooks
    # The run id reaches airflow.* whole; their client makes it one URL path segment.
    clear = next(s for s in plan.steps if s.id == "rerun-failed-tasks")
    assert (clear.action, clear.with_["dag_run_id"]) == ("airflow.clear_failed",
                                                         labels["run_id"])
    for run_id in ("..", "a/b"):
        (plan,) = simulate(catalog, labels={**labels, "run_id": run_id}).runbooks
        assert not plan.would_execute and plan.param_errors


# The check step of the lint fixture, as an http.request whose URL takes params.
CHECK = ('    action: noop\n    idempotent: true\n    with: {message: "checking {{ params.model }} '
         'in {{ params.env }}", output: {version: "7"}}\n')


def http_check(url: str) -> str:
    return ('    action: http.request\n    idempotent: true\n'
            f'    with: {{url: "{url}", params: {{m: "{{{{ params.model }}}}", '
            'e: "{{ params.env }}"}}\n')


def lint_text(tmp_path, text):
    mappings_path, remediations = write_catalog(tmp_path, {"drift": text}, MAPPINGS)
    return lint(mappings_path, remediations, actions=HTTP_ACTIONS, today=TODAY)


def with_pattern(pattern: str) -> dict[str, str]:
    return {"pattern: '^[a-z0-9-]{1,40}$'}": f"pattern: '{pattern}'}}"}


@pytest.mark.parametrize(("url", "spec", "warned"), [
    ("https://api.internal/models/{{ params.model }}", "^[A-Za-z0-9_.:+-]{1,40}$", True),
    ("https://api.internal/models/{{ params.model }}/x", "^.{1,40}$", True),
    ("https://api.internal/models/{{ params.model }}", "^[a-z]+(/[a-z]+)*$", True),
    ("https://api.internal/models/{{ params.model | path_segment }}", "^.{1,40}$", False),
    ("https://api.internal/models/{{ params.model }}", "^[a-z0-9-]{1,40}$", False),
    ("https://api.internal/models?name={{ params.model }}", "^.{1,40}$", False),
    ("https://api.internal/models#{{ params.model }}", "^.{1,40}$", False),
])
def test_lint_warns_about_a_url_path_param_that_could_climb(tmp_path, url, spec, warned):
    replace = {**with_pattern(spec), CHECK: http_check(url)}
    text = runbook_text(replace=replace)
    issues = lint_text(tmp_path, text)
    assert [i for i in issues if i.severity == "error"] == [], "\n".join(map(str, issues))
    found = [i for i in issues if "path_segment" in i.message]
    if not warned:
        assert found == [], "\n".join(map(str, found))
        return
    (warning,) = found
    assert warning.severity == "warning"
    assert "params.model" in warning.message
    assert warning.line == line_of(text, "action: http.request") + 2


def test_lint_judges_an_allowed_list_too(tmp_path):
    replace = {
        "  env: {from: labels.env, type: str, allowed: [staging, production], "
        "default: production}":
        "  env: {from: labels.env, type: str, allowed: [staging, 'prod/eu', '..'], "
        "default: staging}",
        CHECK: http_check("https://api.internal/envs/{{ params.env }}/{{ params.model }}"),
    }
    issues = lint_text(tmp_path, runbook_text(replace=replace))
    found = [i for i in issues if "path_segment" in i.message]
    assert len(found) == 1 and "params.env" in found[0].message, "\n".join(map(str, issues))


def test_a_refused_segment_fails_the_render_not_the_engine():
    with pytest.raises(RenderError):
        render_value({"url": "https://h/x/{{ params.r | path_segment }}"},
                     make_context(params={"r": ".."}))
