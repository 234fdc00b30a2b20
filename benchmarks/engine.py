"""Executor throughput under a storm that starts work, and the webhooks' acknowledgements.

    .venv/bin/python benchmarks/engine.py [--alerts 1000] [--batch 50] [--senders 4]
                                          [--runs 3] [--pg URL] [--only sqlite,pg,pg2]
                                          [--intake-only]

`--alerts` new alerts for as many models (one target each) are posted in webhooks of
`--batch` to a real `runbookd serve`, `--senders` webhooks in flight at once (Alertmanager
sends its groups side by side). Every alert maps to a runbook of 3 no-op steps. Timed from
the first post to the last execution's `finished_at` (read from the database), on SQLite, on
PostgreSQL with one replica, and with two replicas on PostgreSQL (webhooks alternate between
them). Each webhook's acknowledgement latency is recorded while the executions it starts are
being created and run. Each setup runs `--runs` times on a fresh database: median and range.
`--intake-only` disables the worker and times the webhooks alone (every execution created,
none run): the intake's own cost of starting work, which the acknowledgements wait for.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.engine_catalog import runbook, step, write_catalog  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.payloads import am_alert, am_body, go_json  # noqa: E402

WEBHOOK = "engine-bench-webhook-token-0123456789"
RUNBOOK = "engine-bench"
STEPS = 3


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: a cost that neighbours on a shared
    machine do not inflate the way they inflate wall-clock rates."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_replicas(db_url: str, work: Path, count: int,
                   extra_env: dict[str, str]) -> list[tuple[subprocess.Popen[bytes], str]]:
    mappings, remediations = write_catalog(work / "catalog", [
        runbook(RUNBOOK, [step(f"s{i}") for i in range(1, STEPS + 1)]),
    ])
    env = {**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
           "RUNBOOKD_MAPPINGS": str(mappings), "RUNBOOKD_REMEDIATIONS_DIR": str(remediations),
           "RUNBOOKD_WEBHOOK_TOKENS": WEBHOOK, "RUNBOOKD_LOG_LEVEL": "WARNING",
           "RUNBOOKD_API_TOKENS_FILE": str(work / "tokens.yaml"), **extra_env}
    runbookd = str(Path(sys.executable).parent / "runbookd")
    subprocess.run([runbookd, "db", "upgrade"], env=env, check=True, capture_output=True,
                   cwd=work)
    procs = []
    for i in range(count):
        port = free_port()
        log = (work / f"replica{i}.log").open("ab")
        proc = subprocess.Popen([runbookd, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=work)
        procs.append((proc, f"http://127.0.0.1:{port}"))
    for proc, url in procs:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"runbookd exited with {proc.returncode}; see {work}")
            time.sleep(0.1)
        else:
            raise RuntimeError("runbookd did not start")
    return procs


def stop_replicas(procs: list[tuple[subprocess.Popen[bytes], str]]) -> None:
    for proc, _ in procs:
        os.killpg(proc.pid, 15)
    for proc, _ in procs:
        proc.wait(timeout=60)


class Progress:
    """Reads the executions' progress straight from the database, beside the service."""

    def __init__(self, db_url: str) -> None:
        self.url = db_url
        self.sqlite = db_url.startswith("sqlite")

    async def __aenter__(self) -> Progress:
        if self.sqlite:
            self.conn = sqlite3.connect(self.url.split(":///", 1)[1], timeout=30)
        else:
            import asyncpg

            self.pg = await asyncpg.connect(self.url.replace("postgresql+asyncpg://",
                                                             "postgresql://"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.sqlite:
            self.conn.close()
        else:
            await self.pg.close()

    async def _one(self, sql: str) -> tuple:
        if self.sqlite:
            return self.conn.execute(sql).fetchone()
        return tuple(await self.pg.fetchrow(sql))

    async def counts(self) -> tuple[int, int]:
        """(executions, of which succeeded)."""
        row = await self._one("SELECT count(*), coalesce(sum(CASE WHEN status = 'succeeded' "
                              "THEN 1 ELSE 0 END), 0) FROM executions")
        return int(row[0]), int(row[1])

    async def summary(self) -> dict[str, object]:
        last, = await self._one("SELECT max(finished_at) FROM executions")
        statuses = {}
        rows = (self.conn.execute("SELECT status, count(*) FROM executions GROUP BY status")
                .fetchall() if self.sqlite else
                await self.pg.fetch("SELECT status, count(*) FROM executions GROUP BY status"))
        for status, count in rows:
            statuses[status] = count
        steps, = await self._one("SELECT count(*) FROM step_runs WHERE status = 'succeeded'")
        if isinstance(last, str):
            last = dt.datetime.fromisoformat(last)
        if last is not None and last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        return {"last_finished": last, "statuses": statuses, "steps": int(steps)}


async def storm(urls: list[str], db_url: str, *, alerts: int, batch: int,
                senders: int, intake_only: bool = False) -> dict[str, object]:
    bodies = []
    for first in range(0, alerts, batch):
        chunk = [am_alert(f"{i:016x}", labels={"alertname": RUNBOOK, "model": f"m-{i}"})
                 for i in range(first, min(first + batch, alerts))]
        bodies.append(go_json(am_body(*chunk)))
    acks: list[float] = []
    during: list[int] = []  # executions succeeded when each webhook was acknowledged
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for item in enumerate(bodies):
        queue.put_nowait(item)
    headers = {"Authorization": f"Bearer {WEBHOOK}", "Content-Type": "application/json"}
    async with Progress(db_url) as progress, httpx.AsyncClient(timeout=60) as http:

        async def sender() -> None:
            while not queue.empty():
                n, body = queue.get_nowait()
                sent = time.perf_counter()
                response = await http.post(f"{urls[n % len(urls)]}/webhooks/alertmanager",
                                           content=body, headers=headers)
                acks.append((time.perf_counter() - sent) * 1000)
                response.raise_for_status()

        async def watch_overlap() -> None:
            while len(acks) < len(bodies):
                during.append((await progress.counts())[1])
                await asyncio.sleep(0.05)

        started_wall = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(senders)), watch_overlap())
        acked_all = time.perf_counter() - started
        if intake_only:
            created, _ = await progress.counts()
            if created != alerts:
                raise AssertionError(f"{created} executions created for {alerts} alerts")
            return {"seconds": acked_all, "per_s": alerts / acked_all, "steps_per_s": 0.0,
                    "ack_p50": statistics.median(acks), "ack_p99": pct(acks, 0.99),
                    "ack_max": max(acks), "acked_all_s": acked_all,
                    "succeeded_at_last_ack": 0, "statuses": {}}
        while True:
            _, succeeded = await progress.counts()
            if succeeded >= alerts:
                break
            if time.perf_counter() - started > 600:
                raise TimeoutError(f"{succeeded} of {alerts} executions succeeded in 600 s")
            await asyncio.sleep(0.05)
        summary = await progress.summary()
    elapsed = (summary["last_finished"] - started_wall).total_seconds()  # type: ignore[operator]
    return {"seconds": elapsed, "per_s": alerts / elapsed, "steps_per_s": summary["steps"]
            / elapsed, "ack_p50": statistics.median(acks), "ack_p99": pct(acks, 0.99),
            "ack_max": max(acks), "acked_all_s": acked_all,
            "succeeded_at_last_ack": during[-1] if during else 0,
            "statuses": summary["statuses"]}


def one_run(label: str, db_url: str, replicas: int, args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="runbookd-engine-bench-"))
    env = dict(args.env)
    if args.intake_only:
        env["RUNBOOKD_WORKER_ENABLED"] = "false"
    procs = start_replicas(db_url, work, replicas, env)
    spies = [subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record",
                               "--format", "raw", "--rate", "200", "--nonblocking",
                               "-o", f"{args.profile}/{label.split(',')[0]}-{i}.txt",
                               "--pid", str(proc.pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i, (proc, _) in enumerate(procs)] if args.profile else []
    try:
        time.sleep(1.0)
        cpu_before = sum(cpu_seconds(proc.pid) for proc, _ in procs)
        result = asyncio.run(storm([url for _, url in procs], db_url, alerts=args.alerts,
                                   batch=args.batch, senders=args.senders,
                                   intake_only=args.intake_only))
        cpu = sum(cpu_seconds(proc.pid) for proc, _ in procs) - cpu_before
        result["cpu_ms"] = cpu * 1000 / args.alerts
    finally:
        stop_replicas(procs)
        for spy in spies:
            spy.wait(timeout=60)
    print(f"{label:<22} {result['per_s']:7.1f} exec/s  {result['steps_per_s']:7.1f} steps/s  "
          f"{result['cpu_ms']:5.2f} CPU ms/exec  "
          f"{result['seconds']:6.2f} s   ack p50 {result['ack_p50']:6.1f} ms  "
          f"p99 {result['ack_p99']:6.1f} ms  max {result['ack_max']:6.1f} ms  "
          f"(all acked after {result['acked_all_s']:.2f} s, "
          f"{result['succeeded_at_last_ack']} succeeded by then)  {result['statuses']}",
          flush=True)
    return result


def describe(label: str, results: list[dict[str, object]]) -> str:
    def spread(key: str, fmt: str) -> str:
        values = [float(r[key]) for r in results]  # type: ignore[arg-type]
        return (f"{format(statistics.median(values), fmt)} "
                f"({format(min(values), fmt)}-{format(max(values), fmt)})")
    return (f"{label:<22} exec/s {spread('per_s', '.1f')}  steps/s {spread('steps_per_s', '.0f')}"
            f"  CPU ms/exec {spread('cpu_ms', '.2f')}"
            f"  ack p50 {spread('ack_p50', '.0f')} ms  ack p99 {spread('ack_p99', '.0f')} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                      formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--intake-only", action="store_true",
                        help="no worker: time only the webhooks that create the executions")
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--only", default="sqlite,pg,pg2",
                        help="comma-separated setups: sqlite, pg, pg2 (two replicas)")
    parser.add_argument("--profile", metavar="DIR",
                        help="sample each replica with py-spy into DIR (collapsed stacks)")
    parser.add_argument("--env", action="append", default=[], type=lambda s: s.split("=", 1),
                        help="NAME=VALUE for the service, e.g. RUNBOOKD_WORKER_CONCURRENCY=16")
    args = parser.parse_args()
    setups = args.only.split(",")
    print(f"{args.alerts} alerts for {args.alerts} models in webhooks of {args.batch}, "
          f"{args.senders} in flight; runbook of {STEPS} no-op steps; {args.runs} runs; "
          f"{os.cpu_count()} CPUs; service env {dict(args.env) or 'defaults'}", flush=True)
    summaries = []
    for setup in setups:
        if setup != "sqlite" and not args.pg:
            print(f"{setup}: skipped (no --pg)")
            continue
        label = {"sqlite": "SQLite", "pg": "PostgreSQL", "pg2": "PostgreSQL, 2 replicas"}[setup]
        results = []
        for _ in range(args.runs):
            if setup == "sqlite":
                work = Path(tempfile.mkdtemp(prefix="runbookd-engine-db-"))
                results.append(one_run(label, f"sqlite+aiosqlite:///{work / 'engine.db'}", 1,
                                       args))
                continue
            from benchmarks.history import drop_pg
            from benchmarks.ingest import fresh_pg

            url = asyncio.run(fresh_pg(args.pg))
            try:
                results.append(one_run(label, url, 2 if setup == "pg2" else 1, args))
            finally:
                asyncio.run(drop_pg(url))
        summaries.append(describe(label, results))
    print("\nmedian (range) over the runs:")
    for line in summaries:
        print(line)


if __name__ == "__main__":
    main()
