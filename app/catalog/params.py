"""Typed runbook parameters from hostile alert data. Pure.

Alert labels and annotations come from anyone who can reach Alertmanager (invariant 6). They
reach actions only through these parameters: each one is read from its declared source, cut
to `max_length` before any regex sees it, parsed to its type, and checked against its
pattern or allowed list. An error message never quotes more than a short prefix of a value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.catalog.schema import ParamSpec, Runbook
from app.catalog.templating import make_context, render_string

PREVIEW = 60
MAX_TARGET = 512  # the executions.target column
_INT = re.compile(r"[+-]?\d{1,18}")
_FLOAT = re.compile(r"[+-]?(?:\d{1,30}(?:\.\d{0,30})?|\.\d{1,30})(?:[eE][+-]?\d{1,3})?")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def preview(value: Any) -> str:
    """A short, printable rendering of a (possibly huge, possibly hostile) value."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= PREVIEW:
        return repr(text)
    return f"{text[:PREVIEW]!r}… ({len(text)} characters)"


@dataclass(frozen=True)
class ParamProblem:
    """Why one parameter was refused."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


class ParamError(ValueError):
    """One or more parameters failed validation; `problems` lists every one."""

    def __init__(self, problems: list[ParamProblem]):
        self.problems = problems
        super().__init__("invalid parameters: " + "; ".join(str(p) for p in problems))


def resolve_params(
    runbook: Runbook, *, labels: Mapping[str, str], annotations: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read, type and validate every parameter of `runbook` from one alert.

    A mapping's `params` (`overrides`) win over the alert: the operator's word beats an
    alert's. A spec's `default` applies only when neither gives a value. An empty label is a
    missing label, as in Prometheus.
    """
    overrides = overrides or {}
    sources = {"labels": labels, "annotations": annotations}
    values: dict[str, Any] = {}
    problems: list[ParamProblem] = []
    for name in overrides:
        if name not in runbook.params:
            problems.append(ParamProblem(name, "the mapping sets a parameter the runbook "
                                               "does not declare"))
    for name, spec in runbook.params.items():
        where, _, key = spec.from_.partition(".")
        if name in overrides:
            raw, origin = overrides[name], "the mapping"
        else:
            raw, origin = sources[where].get(key), spec.from_
        try:
            values[name] = check_value(spec, raw, origin=origin)
        except ValueError as exc:
            problems.append(ParamProblem(name, str(exc)))
    if problems:
        raise ParamError(problems)
    return values


def validate_manual_params(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate parameters given directly (an execution started by hand through the API)."""
    problems = [ParamProblem(str(name)[:PREVIEW], "not a parameter of this runbook")
                for name in values if name not in runbook.params]
    out: dict[str, Any] = {}
    for name, spec in runbook.params.items():
        try:
            out[name] = check_value(spec, values.get(name), origin="the request")
        except ValueError as exc:
            problems.append(ParamProblem(name, str(exc)))
    if problems:
        raise ParamError(problems)
    return out


def check_value(spec: ParamSpec, raw: Any, *, origin: str) -> Any:
    """One value checked against its spec; raises ValueError with a short reason."""
    if raw is None or raw == "":
        if spec.default is None:
            return _missing(origin)
        raw = spec.default
    if isinstance(raw, str):
        text = raw
        # Length first: a regex must never run over a 100 KB label.
        if len(text) > spec.max_length:
            raise ValueError(f"value of {len(text)} characters is longer than max_length "
                             f"{spec.max_length}")
        value = _parse(spec, text)
    else:
        value = _coerce(spec, raw)
        text = _as_text(value)
        if len(text) > spec.max_length:
            raise ValueError(f"value is longer than max_length {spec.max_length}")
    if spec.pattern is not None and re.fullmatch(spec.pattern, text) is None:
        raise ValueError(f"value {preview(text)} does not match the pattern {spec.pattern}")
    if spec.allowed is not None and not _allowed(spec, value):
        choices = ", ".join(str(a) for a in spec.allowed)
        raise ValueError(f"value {preview(text)} is not one of: {choices}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise ValueError(f"value {value} is below the minimum {spec.minimum:g}")
        if spec.maximum is not None and value > spec.maximum:
            raise ValueError(f"value {value} is above the maximum {spec.maximum:g}")
    return value


def spec_problems(spec: ParamSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a spec's own default and allowed values, as (where, message)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if spec.default is not None:
        try:
            check_value(spec, spec.default, origin="the default")
        except ValueError as exc:
            problems.append((("default",), f"default {exc}"))
    unrestricted = spec.model_copy(update={"allowed": None})
    for k, allowed in enumerate(spec.allowed or []):
        try:
            check_value(unrestricted, allowed, origin="allowed")
        except ValueError as exc:
            problems.append((("allowed", k), f"allowed {exc}"))
    return problems


def _missing(origin: str) -> Any:
    if origin.startswith(("labels.", "annotations.")):
        raise ValueError(f"missing: the alert has no {origin} and there is no default")
    raise ValueError("missing, and there is no default")


def _parse(spec: ParamSpec, text: str) -> Any:
    """A string to the spec's type, strictly: `1_000`, ` 1` and `nan` are refused."""
    if spec.type == "str":
        return text
    if spec.type == "int":
        if not _INT.fullmatch(text):
            raise ValueError(f"value {preview(text)} is not an integer")
        return int(text)
    if spec.type == "float":
        if not _FLOAT.fullmatch(text):
            raise ValueError(f"value {preview(text)} is not a number")
        return float(text)
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"value {preview(text)} is not a boolean (true or false)")


def _coerce(spec: ParamSpec, raw: Any) -> Any:
    """A JSON or YAML value (already typed) to the spec's type, without loose conversions."""
    number = isinstance(raw, int | float) and not isinstance(raw, bool)
    if spec.type == "bool" and isinstance(raw, bool):
        return raw
    if spec.type == "int" and number and float(raw).is_integer():
        return int(raw)
    if spec.type == "float" and number and math.isfinite(raw):
        return float(raw)
    raise ValueError(f"value {preview(raw)} is not of type {spec.type}")


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _allowed(spec: ParamSpec, value: Any) -> bool:
    assert spec.allowed is not None
    if spec.type == "str":
        return value in {str(a) for a in spec.allowed}
    if spec.type == "bool":
        return any(isinstance(a, bool) and a == value for a in spec.allowed) or \
            _as_text(value) in {str(a).lower() for a in spec.allowed if isinstance(a, str)}
    numbers = []
    for a in spec.allowed:
        try:
            numbers.append(float(a))
        except (TypeError, ValueError):
            continue
    return float(value) in numbers


def render_target(runbook: Runbook, params: Mapping[str, Any]) -> str:
    """The execution's lock key, e.g. `model:fraud-v3`, from params only (raises RenderError).

    Actions see the target as `execution.target`, so it must carry no raw alert data: the
    template sees no `alert`.
    """
    target = render_string(runbook.target, make_context(params=params))
    if len(target) > MAX_TARGET:
        raise ValueError(f"target rendered to {len(target)} characters; the limit is "
                         f"{MAX_TARGET}")
    return target
