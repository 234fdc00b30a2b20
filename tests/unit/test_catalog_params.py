"""Typed runbook parameters from hostile alert data, as tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml

from app.catalog.params import (
    ParamError,
    check_value,
    render_target,
    resolve_params,
    validate_manual_params,
)
from app.catalog.schema import ParamSpec, Runbook
from tests.support.catalog_fixtures import INJECTIONS, runbook_text


def spec(**kw) -> ParamSpec:
    return ParamSpec.model_validate({"from": "labels.x", **kw})


@dataclass(frozen=True)
class Err:
    fragment: str


SLUG = {"pattern": "^[a-z0-9-]{1,40}$"}

VALUES = [
    # (spec, raw, expected value, or an error fragment)
    (SLUG, "fraud-v3", "fraud-v3"),
    (SLUG, "Fraud", Err("does not match the pattern")),
    (SLUG, "fraud-v3\n", Err("does not match the pattern")),
    ({"allowed": ["staging", "production"]}, "production", "production"),
    ({"allowed": ["staging", "production"]}, "prod", Err("is not one of: staging, production")),
    ({"type": "int", "minimum": 1, "maximum": 10}, "7", 7),
    ({"type": "int", "minimum": 1, "maximum": 10}, "+7", 7),
    ({"type": "int", "minimum": 1, "maximum": 10}, "11", Err("above the maximum 10")),
    ({"type": "int", "minimum": 1, "maximum": 10}, "0", Err("below the minimum 1")),
    ({"type": "int"}, "1_000", Err("not an integer")),
    ({"type": "int"}, " 7", Err("not an integer")),
    ({"type": "int"}, "7.0", Err("not an integer")),
    ({"type": "int"}, "9" * 40, Err("not an integer")),
    ({"type": "float"}, "0.25", 0.25),
    ({"type": "float"}, "1e-3", 0.001),
    ({"type": "float"}, "nan", Err("not a number")),
    ({"type": "float"}, "inf", Err("not a number")),
    ({"type": "float", "maximum": 1}, "1.5", Err("above the maximum 1")),
    ({"type": "bool"}, "true", True),
    ({"type": "bool"}, "No", False),
    ({"type": "bool"}, "maybe", Err("not a boolean")),
    ({"type": "int", "allowed": [1, 2]}, "2", 2),
    ({"type": "int", "allowed": [1, 2]}, "3", Err("is not one of: 1, 2")),
    ({**SLUG, "max_length": 5}, "abcdef", Err("longer than max_length 5")),
    ({**SLUG, "default": "fallback"}, "", "fallback"),
    ({**SLUG, "default": "fallback"}, None, "fallback"),
    (SLUG, None, Err("missing: the alert has no labels.x")),
    ({"type": "int"}, 7, 7),
    ({"type": "int"}, True, Err("is not of type int")),
    ({"type": "float"}, 2, 2.0),
    ({"type": "bool"}, 1, Err("is not of type bool")),
]


@pytest.mark.parametrize(("kw", "raw", "expected"), VALUES)
def test_check_value(kw, raw, expected):
    if isinstance(expected, Err):
        with pytest.raises(ValueError, match=expected.fragment):
            check_value(spec(**kw), raw, origin="labels.x")
    else:
        assert check_value(spec(**kw), raw, origin="labels.x") == expected


def runbook(**replace: str) -> Runbook:
    return Runbook.model_validate(yaml.safe_load(runbook_text(replace=replace)))


def test_resolve_reads_labels_and_annotations_and_applies_defaults():
    rb = runbook(**{"  env: {from: labels.env,": "  env: {from: annotations.env,"})
    got = resolve_params(rb, labels={"model": "fraud-v3"}, annotations={"env": "staging"})
    assert got == {"model": "fraud-v3", "env": "staging"}
    assert resolve_params(rb, labels={"model": "m"}, annotations={})["env"] == "production"


def test_mapping_params_win_over_the_alert():
    got = resolve_params(runbook(), labels={"model": "from-alert", "env": "staging"},
                         annotations={}, overrides={"env": "production"})
    assert got == {"model": "from-alert", "env": "production"}


def test_every_failing_param_is_listed():
    with pytest.raises(ParamError) as caught:
        resolve_params(runbook(), labels={"env": "qa"}, annotations={},
                       overrides={"nope": "1"})
    problems = {p.name: p.reason for p in caught.value.problems}
    assert set(problems) == {"model", "env", "nope"}
    assert "missing: the alert has no labels.model" in problems["model"]
    assert "not one of" in problems["env"]
    assert "does not declare" in problems["nope"]


@pytest.mark.parametrize("hostile", INJECTIONS)
def test_hostile_labels_are_refused_with_a_short_message(hostile):
    with pytest.raises(ParamError) as caught:
        resolve_params(runbook(), labels={"model": hostile}, annotations={})
    message = str(caught.value)
    assert len(message) < 300
    if len(hostile) > 100:
        assert "100000 characters" in message and hostile[:200] not in message


@pytest.mark.parametrize("hostile", INJECTIONS[:4])
def test_a_permissive_param_carries_hostile_text_inert_into_templates(hostile):
    rb = runbook(**{"pattern: '^[a-z0-9-]{1,40}$'": "pattern: '^.{1,80}$'"})
    params = resolve_params(rb, labels={"model": hostile}, annotations={})
    # The value is data in the context, never template source: nothing runs, nothing expands.
    assert render_target(rb, params) == f"model:{hostile}"


def test_a_100kb_label_is_refused_before_any_regex_runs():
    rb = runbook(**{"pattern: '^[a-z0-9-]{1,40}$'": "pattern: '^(a|aa)+$'"})
    with pytest.raises(ParamError, match="longer than max_length 256"):
        resolve_params(rb, labels={"model": "a" * 100_000 + "!"}, annotations={})


def test_manual_params_are_checked_the_same_way():
    rb = runbook()
    assert validate_manual_params(rb, {"model": "m1"}) == {"model": "m1", "env": "production"}
    with pytest.raises(ParamError) as caught:
        validate_manual_params(rb, {"model": "{{ 7*7 }}", "extra": 1, "env": 3})
    assert {p.name for p in caught.value.problems} == {"model", "extra", "env"}


def test_render_target_refuses_a_huge_target():
    rb = runbook(**{'target: "model:{{ params.model }}"':
                    'target: "{% for i in range(600) %}x{% endfor %}"'})
    with pytest.raises(ValueError, match="limit is 512"):
        render_target(rb, {"model": "m"})
