"""`prometheus.query`: an instant PromQL query, checked against an expectation like `< 0.05`.

The expectation is parsed here (an operator and a number; no eval). For a vector every sample
must satisfy it, and the worst sample is reported. `within` (also spelled `hold`) re-queries
every `interval` until the expectation holds or the time is up; `stable_for` additionally
requires it to keep holding for that long. `empty` says what a result with no sample means.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import operator
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator

from app.actions._support import error_detail, host_of, outbound_failure
from app.actions.base import ActionContext, ActionFailed, ActionParams, ActionResult, Waits
from app.durations import Duration, format_duration
from app.outbound import HostNotAllowed

_EXPECT = re.compile(
    r"^\s*(<=|>=|==|!=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)\s*$",
    re.IGNORECASE,
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
MAX_SAMPLES_SHOWN = 20


@dataclass(frozen=True)
class Expectation:
    """`op threshold`, e.g. `< 0.05`."""

    op: str
    threshold: float

    def holds(self, value: float) -> bool:
        """Whether `value` satisfies the expectation (NaN satisfies only `!=`)."""
        return _OPS[self.op](value, self.threshold)

    def margin(self, value: float) -> float:
        """How far a value is inside the expectation; the smallest margin is the worst."""
        if math.isnan(value):
            return -math.inf
        if self.op in ("<", "<="):
            return self.threshold - value
        if self.op in (">", ">="):
            return value - self.threshold
        distance = abs(value - self.threshold)
        return -distance if self.op == "==" else distance

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


def parse_expectation(text: str) -> Expectation:
    """`"< 0.05"` to an Expectation; raises ValueError on anything else."""
    match = _EXPECT.match(text)
    if not match:
        raise ValueError(f"expectation {text!r} must be an operator (<, <=, >, >=, ==, !=) "
                         "and a number, like '< 0.05'")
    return Expectation(match.group(1), float(match.group(2)))


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float

    def describe(self) -> str:
        """`{labels} = value`, as PromQL writes a sample."""
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{{{labels}}} = {self.value:g}" if labels else f"{self.value:g}"


@dataclass(frozen=True)
class Evaluation:
    samples: list[Sample]
    holds: bool
    worst: Sample | None

    def as_output(self) -> dict[str, Any]:
        """Count, the first samples, the worst one and the verdict, as JSON."""
        return {
            "count": len(self.samples),
            "values": [{"labels": s.labels, "value": _json_number(s.value)}
                       for s in self.samples[:MAX_SAMPLES_SHOWN]],
            "worst": ({"labels": self.worst.labels, "value": _json_number(self.worst.value)}
                      if self.worst else None),
            "holds": self.holds,
        }


def _json_number(value: float) -> float | str:
    # JSON has no NaN or Inf; keep them as Prometheus writes them.
    return value if math.isfinite(value) else ("NaN" if math.isnan(value) else
                                               ("+Inf" if value > 0 else "-Inf"))


def evaluate(samples: list[Sample], expect: Expectation | None, *, empty: str) -> Evaluation:
    """Whether every sample satisfies `expect`, and the worst sample."""
    if not samples:
        return Evaluation(samples, empty == "pass", None)
    if expect is None:
        return Evaluation(samples, True, None)
    worst = min(samples, key=lambda s: expect.margin(s.value))
    return Evaluation(samples, all(expect.holds(s.value) for s in samples), worst)


def parse_result(data: dict[str, Any]) -> list[Sample]:
    """Samples of an instant query's `data`; a range vector is refused."""
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "vector":
        return [Sample(dict(item.get("metric", {})), float(item["value"][1])) for item in result]
    if kind == "scalar":
        return [Sample({}, float(result[1]))]
    if kind == "matrix":
        raise ActionFailed("the query returns a range vector; prometheus.query needs an "
                           "instant vector or a scalar (drop the [range] or wrap it in a "
                           "function such as max_over_time)")
    raise ActionFailed(f"the query returns a {kind}, not a number")


class QueryParams(ActionParams):
    query: str = Field(min_length=1, max_length=8192)
    expect: str | None = None
    within: Duration | None = Field(default=None, validation_alias=AliasChoices("within",
                                                                                "hold"))
    stable_for: Duration | None = None
    interval: Duration = dt.timedelta(seconds=5)
    empty: Literal["fail", "pass"] = "fail"
    url: str | None = Field(default=None, pattern=r"^https?://")

    @field_validator("expect")
    @classmethod
    def _expectation(cls, value: str | None) -> str | None:
        if value is not None:
            parse_expectation(value)
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: Any) -> Any:
        if value.total_seconds() < 0.1:
            raise ValueError("interval must be at least 100ms")
        return value

    def waits(self) -> Waits:
        # A hold may start as late as `within` and must then last `stable_for`; the last
        # query of a hold comes one interval after it.
        within = self.within.total_seconds() if self.within else 0.0
        stable = self.stable_for.total_seconds() if self.stable_for else 0.0
        if not within and not stable:
            return Waits()
        return Waits(at_most=within + stable + self.interval.total_seconds(), at_least=stable)


class PrometheusQuery:
    name: ClassVar[str] = "prometheus.query"
    Params = QueryParams
    idempotent: ClassVar[bool] = True
    read_only: ClassVar[bool] = True  # a drill runs it for real
    description: ClassVar[str] = (
        "Runs an instant PromQL query and checks every sample against `expect` (e.g. '< 0.05'), "
        "optionally re-querying until it holds (`within`) and stays (`stable_for`)."
    )

    async def run(self, ctx: ActionContext, params: QueryParams) -> ActionResult:
        base = (params.url or ctx.settings.prometheus_url).rstrip("/")
        expect = parse_expectation(params.expect) if params.expect else None
        within = params.within.total_seconds() if params.within else 0.0
        # (`within` bounds when a hold may start; a started hold may run `stable_for` longer.)
        stable = params.stable_for.total_seconds() if params.stable_for else 0.0
        if ctx.dry_run:
            # A drill reads once and reports; it does not wait for minutes.
            evaluation = await self._query(ctx, base, params.query, expect, params.empty)
            plan = self._plan(params)
            return ActionResult(
                f"dry run (read-only, queried once): {plan}; now: {self._describe(evaluation)}",
                {"query": params.query, **evaluation.as_output()})
        start = time.monotonic()
        attempts = 0
        holding_since: float | None = None
        last_error: ActionFailed | None = None
        evaluation: Evaluation | None = None
        while True:
            attempts += 1
            try:
                evaluation = await self._query(ctx, base, params.query, expect, params.empty)
                last_error = None
            except _Transient as exc:
                # Prometheus restarting or slow: keep trying while time remains.
                last_error, evaluation = exc.failure, None
            now = time.monotonic()
            if evaluation is not None and evaluation.holds:
                holding_since = holding_since if holding_since is not None else now
                if now - holding_since >= stable:
                    output = {"query": params.query, "attempts": attempts,
                              **evaluation.as_output()}
                    return ActionResult(f"{self._describe(evaluation)} (after {attempts} "
                                        f"quer{'y' if attempts == 1 else 'ies'})", output)
                # Holding: keep querying until it has held for `stable_for`.
            else:
                holding_since = None
                # A hold must start within `within`; past that there is no point in waiting.
                if now - start >= within:
                    break
            await asyncio.sleep(params.interval.total_seconds())
        if evaluation is None:
            assert last_error is not None
            raise last_error
        waited = f" within {format_duration(params.within)}" if params.within else ""
        wanted = f"{params.query!r} {expect}" if expect else f"{params.query!r} returning samples"
        raise ActionFailed(
            f"expectation {wanted} did not hold{waited}: "
            f"{self._describe(evaluation)} (after {attempts} "
            f"quer{'y' if attempts == 1 else 'ies'})",
            output={"query": params.query, "attempts": attempts, **evaluation.as_output()})

    @staticmethod
    def _plan(params: QueryParams) -> str:
        plan = f"would query {params.query!r}"
        if params.expect:
            plan += f" expecting {parse_expectation(params.expect)}"
        if params.within:
            plan += f", re-querying every {format_duration(params.interval)} for up to " \
                    f"{format_duration(params.within)}"
        if params.stable_for:
            plan += f", and require it to hold for {format_duration(params.stable_for)}"
        return plan

    @staticmethod
    def _describe(evaluation: Evaluation) -> str:
        if not evaluation.samples:
            return "no samples" + (" (empty: pass)" if evaluation.holds else " (empty: fail)")
        verdict = "holds" if evaluation.holds else "does not hold"
        worst = f", worst {evaluation.worst.describe()}" if evaluation.worst else ""
        if evaluation.worst is None and len(evaluation.samples) == 1:
            worst = f", value {evaluation.samples[0].describe()}"
        return f"{verdict} for {len(evaluation.samples)} sample(s){worst}"

    @staticmethod
    async def _query(ctx: ActionContext, base: str, query: str, expect: Expectation | None,
                     empty: str) -> Evaluation:
        url = f"{base}/api/v1/query"
        doing = f"prometheus.query on {host_of(base)}"
        try:
            response = await ctx.http.request("GET", url, params={"query": query})
        except HostNotAllowed as exc:
            raise outbound_failure(exc, url=url, doing=doing) from exc
        except Exception as exc:
            raise _Transient(outbound_failure(exc, url=url, doing=doing)) from exc
        if response.status_code in (400, 422):
            raise ActionFailed(f"{doing}: Prometheus rejected the query {query!r} "
                               f"({response.status_code}): {error_detail(response)}")
        if response.status_code != 200:
            raise _Transient(ActionFailed(f"{doing}: Prometheus answered "
                                          f"{response.status_code}: {error_detail(response)}"))
        try:
            body = response.json()
            data = body["data"]
        except (ValueError, KeyError, TypeError):
            raise ActionFailed(f"{doing}: the answer is not a Prometheus API response") from None
        return evaluate(parse_result(data), expect, empty=empty)


class _Transient(Exception):
    """A failure worth retrying while time remains."""

    def __init__(self, failure: ActionFailed):
        super().__init__(failure.message)
        self.failure = failure
