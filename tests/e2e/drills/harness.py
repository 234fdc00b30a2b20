"""The drill harness: the metrics platform, the series every drill declares, the MLflow peer, and
a real runbookd serving the SHIPPED catalog (alert_mappings.yaml + remediations/).

Timing. Several runbooks' preconditions use subqueries (`max_over_time(...[2h:1m])`), which
Prometheus evaluates at whole minutes: a series is visible to them only after the first minute
boundary that follows its first samples (a `rate()` inside needs two). So a drill module
declares its series when it is imported (`declare_series`, at collection), the platform serves
all of them from its first scrape, and a drill that needs a subquery awaits
`platform.subqueries_see_series()`, which by then has usually passed: the drills do not each
wait up to a minute. See tests/e2e/test_real_stack.py's docstring for what that suite learned.

Counters count by themselves: a declared counter grows by its rate per second on a thread of its
own (rate() needs them to move, as a live service's do), and a drill changes the rate later.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from app.config import Settings
from app.main import create_app
from tests.support import wait
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.net import serve_app
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.peers import (
    Exporter,
    Peer,
    create_mlflow_version,
    overwrite_mlflow_artifact,
)

REPO = Path(__file__).resolve().parents[3]
SHIPPED_MAPPINGS = REPO / "alert_mappings.yaml"
SHIPPED_REMEDIATIONS = REPO / "remediations"
MLFLOW_API = "/api/2.0/mlflow"
ACTIVE = frozenset({"pending", "running", "awaiting_approval", "paused"})
# A scrape every second: two samples (what rate() needs) are in after this long.
TWO_SCRAPES = 2.5


# --- The series every drill needs, declared at import --------------------------------------

@dataclass
class DeclaredSeries:
    """Gauges (series text -> value) and counters (series text -> increase per second)."""

    gauges: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)


DECLARED = DeclaredSeries()


def declare_series(*, gauges: Mapping[str, float] | None = None,
                   counters: Mapping[str, float] | None = None) -> None:
    """Serve these series from the platform's first scrape. Call it at module level of a drill
    (collection imports every module before the session's platform starts)."""
    for name in [*(gauges or {}), *(counters or {})]:
        if name in DECLARED.gauges or name in DECLARED.counters:
            raise ValueError(f"series {name} is declared twice: give each drill labels of its "
                             "own (its own model name)")
    DECLARED.gauges.update(gauges or {})
    DECLARED.counters.update(counters or {})


def labels_text(labels: Mapping[str, str]) -> str:
    """`{a="b",c="d"}` for a series name."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def histogram_counters(metric: str, labels: Mapping[str, str], *, per_second: float,
                       shares: Mapping[float, float]) -> dict[str, float]:
    """The `_bucket` counters of a histogram receiving `per_second` observations, `shares`
    giving the fraction at or below each upper bound (cumulative, as Prometheus writes it);
    the +Inf bucket and `_count` get every observation."""
    out = {}
    for bound, share in sorted(shares.items()):
        le = "+Inf" if math.isinf(bound) else repr(bound)
        out[f"{metric}_bucket{labels_text({**labels, 'le': le})}"] = per_second * share
    out[f"{metric}_bucket{labels_text({**labels, 'le': '+Inf'})}"] = per_second
    out[f"{metric}_count{labels_text(labels)}"] = per_second
    return out


class Counters:
    """Counters that grow by their rate per second, on a daemon thread (independent of any
    event loop), written to the exporter four times a second."""

    def __init__(self, exporter: Exporter, rates: Mapping[str, float]):
        self.exporter = exporter
        self.rates = dict(rates)
        self.totals = dict.fromkeys(self.rates, 0.0)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        for name in self.rates:
            exporter.set(name, 0.0)
        self.thread = threading.Thread(target=self._run, daemon=True, name="drill-counters")

    def rate(self, series: str, per_second: float) -> None:
        """From now on, `series` grows by `per_second` (a new series starts at 0)."""
        with self.lock:
            self.totals.setdefault(series, 0.0)
            self.rates[series] = per_second

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stopped.wait(0.25):
            now = time.monotonic()
            with self.lock:
                for name, per_second in self.rates.items():
                    self.totals[name] += per_second * (now - last)
                    self.exporter.set(name, self.totals[name])
            last = now

    @contextlib.contextmanager
    def running(self) -> Iterator[Counters]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            self.thread.join(timeout=5)


# --- The platform ---------------------------------------------------------------------------

class DrillPeer(Protocol):
    """A peer a shipped runbookd talks to: the settings that point runbookd at it."""

    def settings(self) -> dict[str, Any]: ...


@dataclass
class Platform:
    """Real Prometheus scraping the exporter the drills control, every second."""

    prometheus: Peer
    exporter: Exporter
    counters: Counters
    # Wall-clock time (epoch seconds) when the declared series were first served.
    series_since: float

    @property
    def url(self) -> str:
        return self.prometheus.url

    def settings(self) -> dict[str, Any]:
        return {"prometheus_url": self.prometheus.url}

    def set(self, series: str, value: float) -> None:
        """Set a gauge (from the next scrape on)."""
        self.exporter.set(series, value)

    def count(self, series: str, per_second: float) -> None:
        """Change a counter's rate of growth (from now on)."""
        self.counters.rate(series, per_second)

    async def query(self, query: str) -> list[dict[str, Any]]:
        """The samples of an instant query now."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{self.url}/api/v1/query", params={"query": query})
        answer.raise_for_status()
        return answer.json()["data"]["result"]

    async def wait_until(self, query: str, check: Any, *, what: str,
                         timeout: float = 20) -> float:
        """Poll `query` until it returns one sample whose value passes `check`; its value."""
        async def probe() -> list[float] | None:
            result = await self.query(query)
            if len(result) == 1 and check(value := float(result[0]["value"][1])):
                return [value]  # a list: a value of 0 is an answer too
            return None

        [value] = await wait.eventually(probe, timeout=timeout, what=what, interval=0.25,
                                        ignore=(httpx.HTTPError,))
        return value

    async def subqueries_see_series(self) -> None:
        """Until a subquery (`[...:1m]`) sees the declared series: the first whole minute at
        least two scrapes after they were first served has passed (see the module docstring)."""
        boundary = math.ceil((self.series_since + TWO_SCRAPES) / 60) * 60
        delay = boundary + 0.5 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # On a loaded host the scrapes can lag behind that estimate (a drill's precondition
        # then found "no samples" under the full suite): ask Prometheus itself until every
        # declared counter's rate is in a subquery, the next minute boundary at the latest.
        for series in DECLARED.counters:
            await self.wait_until(f"max_over_time(rate({series}[5m])[2h:1m])",
                                  lambda _value: True, timeout=90,
                                  what=f"a [2h:1m] subquery over rate({series})")


@dataclass
class MlflowPeer:
    """A real MLflow tracking server, and what CI and the drills do to its registry."""

    peer: Peer
    workdir: Path

    @property
    def url(self) -> str:
        return self.peer.url

    def settings(self) -> dict[str, Any]:
        return {"mlflow_url": self.peer.url}

    async def create_version(self, model: str, files: dict[str, bytes], *,
                             with_manifest: bool = True) -> tuple[str, str]:
        """Register a version holding `files` (with a manifest.json unless told); (version,
        run id)."""
        return await asyncio.to_thread(create_mlflow_version, self.url, model, files,
                                       workdir=self.workdir, with_manifest=with_manifest)

    async def corrupt(self, run_id: str, name: str, data: bytes) -> None:
        """Overwrite one file of a version's run artifacts (a rewrite, a torn upload)."""
        await asyncio.to_thread(overwrite_mlflow_artifact, self.url, run_id, name, data,
                                workdir=self.workdir)

    async def set_alias(self, model: str, alias: str, version: str) -> None:
        """Move an alias as CI does: MLflow's REST API, no runbookd history."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(f"{self.url}{MLFLOW_API}/registered-models/alias",
                                     json={"name": model, "alias": alias, "version": version})
        answer.raise_for_status()

    async def alias(self, model: str, alias: str) -> str:
        """The version an alias points at, read through MLflow's REST API."""
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(f"{self.url}{MLFLOW_API}/registered-models/alias",
                                    params={"name": model, "alias": alias})
        answer.raise_for_status()
        return str(answer.json()["model_version"]["version"])


# --- runbookd serving the shipped catalog ---------------------------------------------------

def shipped_settings(*peers: DrillPeer, **overrides: Any) -> dict[str, Any]:
    """Settings overrides for the shipped catalog and these peers: the allow-list holds
    127.0.0.1 (every peer runs there); a peer's lists and dicts add to the others'."""
    values: dict[str, Any] = {"mappings": SHIPPED_MAPPINGS,
                              "remediations_dir": SHIPPED_REMEDIATIONS,
                              "http_allowlist": ["127.0.0.1"]}
    for part in [*(peer.settings() for peer in peers), overrides]:
        for key, value in part.items():
            if isinstance(value, list) and isinstance(values.get(key), list):
                values[key] = [*values[key], *(v for v in value if v not in values[key])]
            elif isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key] = {**values[key], **value}
            else:
                values[key] = value
    return values


def step_of(detail: dict[str, Any], ref: str) -> dict[str, Any]:
    """One step run of an execution's detail, by its ref (`rollback`, `rollback.rollback`)."""
    found = [s for s in detail["steps"] if s["ref"] == ref]
    if not found:
        raise AssertionError(f"no step {ref!r}; steps: {steps_brief(detail)}")
    return found[-1]


def steps_brief(detail: dict[str, Any]) -> str:
    """Every step's ref, status and error, for a failure message."""
    return "; ".join(f"{s['ref']}={s['status']}" + (f" ({s['error'][:200]})" if s["error"]
                                                    else "") for s in detail["steps"])


@dataclass
class Shipped:
    """A real runbookd serving the shipped catalog, and what a responder does to it."""

    http: httpx.AsyncClient
    tokens: dict[str, str]
    settings: Settings

    async def fire(self, labels: dict[str, str], *, status: str = "firing",
                   annotations: dict[str, str] | None = None) -> None:
        """Post an alert as Alertmanager does (its fingerprint derived from its labels)."""
        assert "alertname" in labels, "an alert needs an alertname"
        fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        alert = am_alert(fingerprint[:16], status=status, labels=labels, starts_at=now,
                         annotations=annotations or {"summary": f"drill of {labels['alertname']}"},
                         **({"ends_at": now} if status == "resolved" else {}))
        answer = await self.http.post("/webhooks/alertmanager", content=go_json(am_body(alert)),
                                      headers=WEBHOOK_HEADERS)
        assert answer.status_code == 200, answer.text

    async def api(self, path: str, who: str = "victor") -> Any:
        answer = await self.http.get(path, headers=auth(self.tokens[who]))
        assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text}"
        return answer.json()

    async def execution_of(self, runbook: str, *, timeout: float = 15) -> dict[str, Any]:
        """The execution the alert started, which must be of `runbook` (the shipped mapping
        chose it); fails at once, naming it, when another runbook took the alert."""
        async def started() -> dict[str, Any] | None:
            items = (await self.api("/api/v1/executions"))["items"]
            other = [e["runbook_id"] for e in items if e["runbook_id"] != runbook]
            assert not other, f"the alert started {other}, not {runbook}: check its labels " \
                              "against alert_mappings.yaml"
            return items[0] if items else None

        return await wait.eventually(started, timeout=timeout, what=f"an execution of {runbook}")

    async def detail(self, execution_id: int) -> dict[str, Any]:
        return await self.api(f"/api/v1/executions/{execution_id}")

    async def wait_step(self, execution_id: int, ref: str, status: str, *,
                        timeout: float = 30) -> dict[str, Any]:
        """Until step `ref` has `status`; the execution's detail. Fails early, with every
        step's status and error, when the execution ends first."""
        last: dict[str, Any] = {}

        async def reached() -> dict[str, Any] | None:
            detail = last["detail"] = await self.detail(execution_id)
            if any(s["ref"] == ref and s["status"] == status for s in detail["steps"]):
                return detail
            assert detail["status"] in ACTIVE, (
                f"execution ended {detail['status']} ({detail['status_reason']}) before "
                f"{ref} was {status}; steps: {steps_brief(detail)}")
            return None

        try:
            return await wait.eventually(reached, timeout=timeout, interval=0.2,
                                         what=f"{ref} to be {status}")
        except AssertionError as exc:
            if "timed out" not in str(exc) or "detail" not in last:
                raise
            detail = last["detail"]
            raise AssertionError(f"{exc}; execution {detail['status']}, steps: "
                                 f"{steps_brief(detail)}") from None

    async def awaiting(self, execution_id: int, ref: str, *,
                       timeout: float = 30) -> dict[str, Any]:
        """Until step `ref` awaits approval; that step (its `plan` is what approvers see)."""
        detail = await self.wait_step(execution_id, ref, "awaiting_approval", timeout=timeout)
        return step_of(detail, ref)

    async def approve(self, execution_id: int, ref: str, *, who: str = "alice",
                      comment: str = "checked the plan") -> None:
        """Approve step `ref` through the API, as `who` (an approver by default)."""
        answer = await self.http.post(
            f"/api/v1/executions/{execution_id}/steps/{ref}/approve",
            headers=auth(self.tokens[who]), json={"comment": comment})
        assert answer.status_code == 200, f"approving {ref}: {answer.status_code} {answer.text}"

    async def finished(self, execution_id: int, *, timeout: float = 60) -> dict[str, Any]:
        """Until the execution ends; its detail."""
        async def ended() -> dict[str, Any] | None:
            detail = await self.detail(execution_id)
            return None if detail["status"] in ACTIVE else detail

        return await wait.eventually(ended, timeout=timeout, what="the execution to end",
                                     interval=0.25)


@contextlib.asynccontextmanager
async def serve_shipped(settings: Settings, tokens: dict[str, str]) -> AsyncIterator[Shipped]:
    """A real runbookd on 127.0.0.1 with `settings`, and a client for it."""
    async with serve_app(create_app(settings)) as server, httpx.AsyncClient(
            base_url=server.url, timeout=30) as http:
        yield Shipped(http=http, tokens=tokens, settings=settings)
