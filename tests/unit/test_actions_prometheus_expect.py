"""The expectation language of prometheus.query (parsed, never evaluated) and the worst sample."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from app.actions.prometheus import (
    PrometheusQuery,
    Sample,
    evaluate,
    parse_expectation,
    parse_result,
)


@pytest.mark.parametrize(("text", "op", "threshold"), [
    ("< 0.05", "<", 0.05), ("==0", "==", 0.0), ("> 100", ">", 100.0), (">= 1", ">=", 1.0),
    ("!= 0", "!=", 0.0), ("<= -2.5e3", "<=", -2500.0), ("  <  .5 ", "<", 0.5),
    ("< +Inf", "<", math.inf),
])
def test_parses(text: str, op: str, threshold: float) -> None:
    expectation = parse_expectation(text)
    assert (expectation.op, expectation.threshold) == (op, threshold)


@pytest.mark.parametrize("text", ["", "0.05", "< ", "=< 1", "< 1 or 1", "__import__('os')",
                                  "< 1; drop", "=== 1", "< 0x10", "> 1_000"])
def test_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="must be an operator"):
        parse_expectation(text)


@pytest.mark.parametrize(("text", "value", "holds"), [
    ("< 0.05", 0.01, True), ("< 0.05", 0.05, False), ("<= 0.05", 0.05, True),
    ("== 0", 0.0, True), ("== 0", 1.0, False), ("!= 0", 0.0, False), ("> 100", 101, True),
    (">= 1", 0.999, False), ("< 1", math.nan, False), ("!= 0", math.nan, True),
])
def test_holds(text: str, value: float, holds: bool) -> None:
    assert parse_expectation(text).holds(value) is holds


def test_worst_sample_of_a_vector() -> None:
    samples = [Sample({"model": m}, v) for m, v in (("a", 0.01), ("b", 0.2), ("c", 0.07))]
    result = evaluate(samples, parse_expectation("< 0.05"), empty="fail")
    assert not result.holds
    assert result.worst == Sample({"model": "b"}, 0.2)
    lowest = evaluate(samples, parse_expectation("> 0.005"), empty="fail")
    assert lowest.holds and lowest.worst == Sample({"model": "a"}, 0.01)
    nan = evaluate([*samples, Sample({"model": "d"}, math.nan)], parse_expectation("< 1"),
                   empty="fail")
    assert nan.worst is not None and nan.worst.labels == {"model": "d"}
    assert nan.as_output()["worst"]["value"] == "NaN"


def test_empty_result_follows_the_empty_setting() -> None:
    assert evaluate([], parse_expectation("< 1"), empty="pass").holds
    assert not evaluate([], parse_expectation("< 1"), empty="fail").holds


def test_result_types() -> None:
    assert parse_result({"resultType": "scalar", "result": [1.0, "3"]}) == [Sample({}, 3.0)]
    vector = {"resultType": "vector",
              "result": [{"metric": {"job": "x"}, "value": [1.0, "+Inf"]}]}
    assert parse_result(vector) == [Sample({"job": "x"}, math.inf)]
    with pytest.raises(Exception, match="range vector"):
        parse_result({"resultType": "matrix", "result": []})


def test_params_validate_the_expectation_and_accept_hold() -> None:
    with pytest.raises(ValidationError, match="must be an operator"):
        PrometheusQuery.Params.model_validate({"query": "up", "expect": "up > 1"})
    params = PrometheusQuery.Params.model_validate({"query": "up", "expect": "== 1",
                                                    "hold": "30s", "interval": "2s"})
    assert params.within is not None and params.within.total_seconds() == 30
    assert params.interval.total_seconds() == 2
    assert PrometheusQuery.Params.model_validate({"query": "up"}).interval.total_seconds() == 5
