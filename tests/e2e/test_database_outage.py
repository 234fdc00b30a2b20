"""PostgreSQL goes away under a running runbookd, and comes back (invariant 1).

runbookd reaches the real PostgreSQL through a TCP proxy; `cut()` drops every connection and
refuses new ones, the way a database failover or a network partition looks to a client (a
hung database, which accepts connections and never answers, is the other shape). While
it is down, webhooks must answer 503 with Retry-After (Alertmanager and PagerDuty retry 5xx)
and never a 2xx, because a 2xx means "committed". Nothing may be half-stored: each delivery,
its alerts and their executions land in one transaction, or none of them does. When the
database comes back, the same process serves again, without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from app.config import Settings
from app.engine.models import Execution, ExecutionAlert
from app.intake.models import Alert, Delivery
from app.main import create_app
from tests.support.auth import WEBHOOK_HEADERS, WEBHOOK_TOKEN
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.net import RunningServer, TcpProxy, serve_app
from tests.support.payloads import am_alert, am_body, go_json
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.pg]

# A 503 must come fast enough for a sender's timeout: asyncpg's connect timeout is 3 s.
MAX_503_SECONDS = 5.0
# When the database hangs instead of refusing: two connect timeouts, plus scheduling slack.
HUNG_503_SECONDS = 8.0
_fingerprints = itertools.count(0x0A00_0000_0000_0000)


@dataclass
class Proxied:
    server: RunningServer
    proxy: TcpProxy
    http: httpx.AsyncClient


@pytest.fixture
async def proxied(pg_url: str, tmp_path: Path, tokens_file: Path,
                  tokens: dict[str, str]) -> AsyncIterator[Proxied]:
    """runbookd in this process, on PostgreSQL through a TcpProxy the test can cut."""
    target = make_url(pg_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    mappings, remediations = write_catalog(tmp_path / "catalog", [
        runbook("outage", [step("note")], limits={"concurrent": 1000}),
    ])
    settings = Settings(
        env="dev", database_url=url, mappings=mappings, remediations_dir=remediations,
        webhook_tokens=[WEBHOOK_TOKEN], api_tokens_file=tokens_file,
        registry_dir=tmp_path / "registry", poll_seconds=0.2, lease_seconds=3,
    )
    try:
        async with serve_app(create_app(settings)) as server, httpx.AsyncClient(
                base_url=server.url, timeout=30) as http:
            yield Proxied(server, proxy, http)
    finally:
        await proxy.stop()


def body(fingerprint: str) -> bytes:
    """One distinct alert for the `outage` runbook (its own target, so its own execution)."""
    return go_json(am_body(am_alert(fingerprint, labels={
        "alertname": "outage", "model": f"m-{fingerprint}", "severity": "critical"})))


def new_fingerprint() -> str:
    return f"{next(_fingerprints):016x}"


async def post(http: httpx.AsyncClient, fingerprint: str) -> httpx.Response:
    return await http.post("/webhooks/alertmanager", content=body(fingerprint),
                           headers=WEBHOOK_HEADERS)


async def assert_consistent(pg_url: str) -> dict[str, Alert]:
    """Nothing half-stored: every alert came with its delivery and its execution, and every
    delivery's counts match the rows it wrote. Returns the alerts by fingerprint."""
    alerts = await all_rows(pg_url, Alert)
    deliveries = {d.id: d for d in await all_rows(pg_url, Delivery)}
    links = await all_rows(pg_url, ExecutionAlert)
    executions = {e.id for e in await all_rows(pg_url, Execution)}
    by_delivery = collections.Counter(a.last_delivery_id for a in alerts)
    assert all(a.last_delivery_id in deliveries for a in alerts), "an alert without its delivery"
    for delivery in deliveries.values():
        assert delivery.alerts_new == by_delivery[delivery.id], (
            f"delivery {delivery.id} counted {delivery.alerts_new} new alerts but "
            f"{by_delivery[delivery.id]} rows exist")
    linked = collections.Counter(link.alert_id for link in links)
    assert all(linked[a.id] == 1 for a in alerts), "an alert stored without its execution"
    assert {link.execution_id for link in links} == executions, "an execution without its alert"
    assert len(executions) == len(alerts)
    return {a.fingerprint: a for a in alerts}


async def wait_until_ready(http: httpx.AsyncClient, timeout: float) -> float:
    """Poll /-/ready until it answers 200; returns how long that took."""
    started = time.monotonic()
    while True:
        if (await http.get("/-/ready")).status_code == 200:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"/-/ready still failing after {timeout}s"
        await asyncio.sleep(0.1)


async def wait_all_succeeded(pg_url: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        rows = await all_rows(pg_url, Execution)
        tally = collections.Counter(r.status for r in rows)
        if len(rows) == count and tally["succeeded"] == count:
            return
        assert time.monotonic() < deadline, f"executions after the outage: {dict(tally)}"
        await asyncio.sleep(0.2)


async def test_database_down_answers_503_and_stores_nothing_half(
        proxied: Proxied, pg_url: str) -> None:
    http = proxied.http
    before = [new_fingerprint() for _ in range(3)]
    for fp in before:
        assert (await post(http, fp)).status_code == 200
    assert (await http.get("/-/ready")).status_code == 200

    await proxied.proxy.cut()
    refused = [new_fingerprint() for _ in range(5)]
    for fp in refused:
        started = time.monotonic()
        answer = await post(http, fp)
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) > 0
        assert answer.json()["error"]["code"] == "unavailable"
        assert took < MAX_503_SECONDS, f"the 503 took {took:.1f}s"
    ready = await http.get("/-/ready")
    assert ready.status_code == 503 and "Retry-After" in ready.headers
    assert (await http.get("/-/healthy")).status_code == 200, "the process itself is up"

    await proxied.proxy.restore()
    await wait_until_ready(http, timeout=10)
    stored = await assert_consistent(pg_url)
    assert set(stored) == set(before), "a 503'd delivery left rows behind"

    # Alertmanager resends what got a 503; now it is stored, exactly once.
    for fp in refused:
        answer = await post(http, fp)
        assert answer.status_code == 200, answer.text
        assert answer.json()["alerts"]["new"] == 1
    stored = await assert_consistent(pg_url)
    assert set(stored) == set(before) | set(refused)
    await wait_all_succeeded(pg_url, len(stored), timeout=20)


@dataclass
class Sent:
    fingerprint: str
    started: float
    ended: float
    status: int | str  # an HTTP status, or the transport error's name


async def test_database_lost_under_load_only_503s_and_recovers_without_restart(
        proxied: Proxied, pg_url: str) -> None:
    http = proxied.http
    results: list[Sent] = []
    stop = asyncio.Event()

    async def sender() -> None:
        while not stop.is_set():
            fp = new_fingerprint()
            started = time.monotonic()
            try:
                status: int | str = (await post(http, fp)).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.append(Sent(fp, started, time.monotonic(), status))
            if status == 503:
                await asyncio.sleep(0.05)  # a sender backs off; keeps the log readable

    senders = [asyncio.create_task(sender()) for _ in range(16)]
    try:
        # Load first, however slow the host: a few 2xx before the database goes.
        await asyncio.sleep(1.5)

        async def some_stored() -> bool:
            return sum(r.status == 200 for r in results) >= 5

        await eventually(some_stored, timeout=30, what="2xx before the cut", interval=0.05)
        await proxied.proxy.cut()
        cut_at = time.monotonic()
        await asyncio.sleep(3)
        restore_at = time.monotonic()
        await proxied.proxy.restore()
        # Load goes on until the service has answered 2xx again for a while.
        deadline = restore_at + 15
        while time.monotonic() < deadline:
            recovered = [r for r in results if r.started > restore_at and r.status == 200]
            if len(recovered) >= 50:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*senders)

    statuses = collections.Counter(r.status for r in results)
    assert set(statuses) <= {200, 503}, f"answers other than 200 and 503: {dict(statuses)}"
    during = [r for r in results if r.started >= cut_at and r.ended <= restore_at]
    assert during, "no request ran entirely while the database was down"
    assert all(r.status == 503 for r in during), (
        "a 2xx while the database was down: "
        f"{collections.Counter(r.status for r in during)}")
    assert max(r.ended - r.started for r in results if r.status == 503) < MAX_503_SECONDS
    assert any(r.status == 200 and r.ended < cut_at for r in results), "no load before the cut"
    after = [r for r in results if r.started > restore_at]
    recovered = [r for r in after if r.status == 200]
    assert len(recovered) >= 50, (
        f"no recovery after restore: {collections.Counter(r.status for r in after)}")
    first_ok = min(r.ended for r in recovered) - restore_at
    assert first_ok < 10, f"first 2xx only {first_ok:.1f}s after the database came back"
    # Once back, it stays back: nothing after the first recovered 2xx fails.
    assert all(r.status == 200 for r in after if r.started > min(x.ended for x in recovered))

    # Acknowledged means stored, and nothing is half-stored. (A 503 may still have been
    # stored when its commit reached the database just as the connection went: then it is
    # stored whole, as the sender's retry would store it, and that retry is a duplicate.)
    stored = await assert_consistent(pg_url)
    acknowledged = {r.fingerprint for r in results if r.status == 200}
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged alerts are not in the database"
    assert (await http.get("/-/ready")).status_code == 200
    # The engine recovered too, in the same process: every execution finishes.
    await wait_all_succeeded(pg_url, len(stored), timeout=30)


@contextlib.asynccontextmanager
async def hung_database(proxy: TcpProxy) -> AsyncIterator[None]:
    """The database host accepts connections and then never answers, as a frozen server or a
    half-dead network path does: clients wait for their timeouts instead of being refused."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    await proxy.cut()
    server = await asyncio.start_server(swallow, "127.0.0.1", proxy.port, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()
        await proxy.restore()


async def test_hung_database_still_answers_503_in_bounded_time(
        proxied: Proxied, pg_url: str) -> None:
    http = proxied.http
    assert (await post(http, new_fingerprint())).status_code == 200
    async with hung_database(proxied.proxy):
        async def timed(fp: str) -> tuple[int, float]:
            started = time.monotonic()
            answer = await post(http, fp)
            assert answer.status_code != 503 or int(answer.headers["Retry-After"]) > 0
            return answer.status_code, time.monotonic() - started

        refused = [new_fingerprint() for _ in range(20)]
        answers = await asyncio.gather(*(timed(fp) for fp in refused))
        started = time.monotonic()
        ready = await http.get("/-/ready")
        ready_took = time.monotonic() - started
    assert {status for status, _ in answers} == {503}, answers
    # asyncpg gives up connecting after 3 s; requests queued behind a hung attempt wait for
    # the next one, so a sender sees its 503 within two connect timeouts.
    slowest = max(took for _, took in answers)
    assert slowest < HUNG_503_SECONDS, f"the slowest 503 took {slowest:.1f}s"
    assert ready.status_code == 503 and ready_took < HUNG_503_SECONDS

    await wait_until_ready(http, timeout=10)
    for fp in refused:  # the sender's retries
        assert (await post(http, fp)).status_code == 200
    stored = await assert_consistent(pg_url)
    assert set(refused) <= set(stored)
