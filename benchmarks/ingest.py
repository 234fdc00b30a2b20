"""Ingest throughput: runbookd's /webhooks/alertmanager against a bare FastAPI endpoint that
parses the same pydantic model, same body, same worker count, same machine, same run.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--connections 32] [--pg URL]
                                          [--prefill 200000] [--workloads redeliveries,group,new]
    .venv/bin/python benchmarks/ingest.py --fairness [--big 5000] [--pg URL]

Needs `wrk` (apt-get install wrk). Prints requests/s, p50/p99 latency and the ratio, for three
workloads on each database:
- redeliveries: the same body again and again (two alerts, both stored);
- group: ten alerts of which one is new on each request, as Alertmanager resends a group
  that an alert has just joined;
- new: a storm of new alerts (every request two alerts never seen before).
None of their alerts matches a runbook: what is measured is the intake. Each workload runs
right after the bare endpoint on a body of the same size (both servers stay up), and the ratio
is of those two runs. Beside it, the CPU each server spent per request, and their ratio: on a
shared machine, other work disturbs that less than it disturbs throughput.

--fairness measures something else: another sender's 1-alert deliveries, posted one after
another while a single delivery of --big new alerts is being stored; it prints the big one's
time to 2xx and the small ones' latencies while it was in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.payloads import am_alert, am_body, go_json  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"

BARE_APP = '''
from fastapi import FastAPI, Request
from app.intake.schemas import AlertmanagerWebhook

app = FastAPI()

@app.post("/webhooks/alertmanager")
async def receive(request: Request):
    body = AlertmanagerWebhook.model_validate_json(await request.body())
    return {"status": "parsed", "alerts": len(body.alerts)}
'''

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local f = io.open("%s", "rb")
wrk.body = f:read("*all")
f:close()
"""

# Every request carries alerts never seen before: each thread numbers its own requests.
FRESH_SCRIPT = WRK_SCRIPT + """
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local sent = 0
function request()
  sent = sent + 1
  local body = wrk.body:gsub("@@FP@@", string.format("%%02x%%012x", tid, sent))
  return wrk.format(nil, nil, nil, body)
end
"""
FRESH_MARK = "@@FP@@"


LABELS = {"alertname": "BenchNoRunbook", "model": "fraud-v3", "env": "production",
          "severity": "critical", "team": "ml-platform", "cluster": "prod-eu-1",
          "namespace": "serving", "job": "drift-exporter", "instance": "10.0.3.17:9100"}
ANNOTATIONS = {"summary": "PSI above 0.2 on fraud-v3 for 15m",
               "description": "Population stability index of the score distribution is "
                              "0.34 against the training baseline.",
               "runbook_url": "https://runbooks.internal/model-drift",
               "dashboard": "https://grafana.internal/d/ml-drift?var-model=fraud-v3"}


def body_bytes(*, fresh: int = 0, total: int = 2) -> bytes:
    """A realistic Alertmanager body (~850 bytes an alert): `total` alerts with labels and
    annotations, of which the first `fresh` carry a fingerprint mark that the wrk script
    replaces per request (new alerts); the others are the same on every request. The alert
    name matches no runbook, so that what is measured is the intake storing alerts.
    """
    alerts = [am_alert(f"{FRESH_MARK}{i:02x}" if i < fresh else f"{i:016x}",
                       labels={**LABELS, "replica": str(i)}, annotations=ANNOTATIONS)
              for i in range(total)]
    return go_json(am_body(*alerts))


# name: (new alerts per request, alerts per request)
WORKLOADS = {"redeliveries": (0, 2), "group": (1, 10), "new": (2, 2)}


def cpu_seconds(pid: int) -> float:
    """The CPU time a process (all its threads) has used: user + system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, body_path: Path, *, seconds: int, connections: int,
        fresh: bool = False, pid: int | None = None) -> dict[str, float]:
    """wrk's figures; with the server's `pid`, also the CPU it spent per request (ms), which
    other work on a shared machine disturbs less than throughput."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write((FRESH_SCRIPT if fresh else WRK_SCRIPT) % (TOKEN, body_path))
        script = fh.name
    cpu_before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
         f"{url}/webhooks/alertmanager"],
        capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"\s+(\d+)%\s+([\d.]+\w+)", out)}
    cpu_ms = (1000 * (cpu_seconds(pid) - cpu_before) / (rps * seconds)) if pid else -1.0
    return {"rps": rps, "p50_ms": lat.get("50", -1), "p99_ms": lat.get("99", -1),
            "errors": float(non2xx.group(1)) if non2xx else 0.0, "cpu_ms": cpu_ms}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    # In this tree, whose app `python -m uvicorn` then imports (not the installed one).
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def runbookd_env(db_url: str) -> dict[str, str]:
    # No scheduled drills: the shipped runbooks all have one, and at start-up they would run
    # (reading peers that do not exist here) during the first workload's measurement.
    return {"RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
            "RUNBOOKD_WEBHOOK_TOKENS": TOKEN, "RUNBOOKD_LOG_LEVEL": "WARNING",
            "RUNBOOKD_MAPPINGS": str(ROOT / "alert_mappings.yaml"),
            "RUNBOOKD_REMEDIATIONS_DIR": str(ROOT / "remediations"),
            "RUNBOOKD_DRILL_CHECK_SECONDS": "0"}


async def fresh_pg(url: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"runbookd_bench_{os.getpid()}"
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(admin)
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return make_url(url).set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False)


PREFILL_COLUMNS = ("source, fingerprint, starts_at, status, status_at, labels, annotations, "
                   "received_at, updated_at")


def prefill(url: str, count: int) -> None:
    """Store `count` older alerts first, so that each batch's reads meet a table of a
    realistic size (a read that scans it would show here, and did)."""
    if count <= 0:
        return
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.split(":///", 1)[1])
        stamp = "'2026-11-01 00:00:00.000000'"
        with conn:
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                f"INSERT INTO alerts ({PREFILL_COLUMNS}) SELECT 'alertmanager', "
                f"printf('old%013x', i), {stamp}, 'resolved', {stamp}, '{{}}', '{{}}', "
                f"{stamp}, {stamp} FROM n", (count,))
        conn.close()
        return

    async def fill() -> None:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        await conn.execute(
            f"INSERT INTO alerts ({PREFILL_COLUMNS}) SELECT 'alertmanager', "
            "'old' || lpad(to_hex(i), 13, '0'), '2026-11-01', 'resolved', '2026-11-01', "
            "'{}', '{}', '2026-11-01', '2026-11-01' FROM generate_series(1, $1) AS i", count)
        await conn.execute("ANALYZE alerts")
        await conn.close()

    asyncio.run(fill())


def run_workloads(url: str, pid: int, bare: tuple[str, int], work: Path, names: list[str], *,
                  seconds: int, connections: int) -> dict[str, dict[str, float]]:
    """Each workload, right after the bare endpoint on a body of the same size: on a shared
    machine the load of the moment weighs on both figures of a ratio alike."""
    out = {}
    for name in names:
        fresh, total = WORKLOADS[name]
        body = work / f"{name}.json"
        body.write_bytes(body_bytes(fresh=fresh, total=total))
        bare_body = work / f"bare{total}.json"
        bare_body.write_bytes(body_bytes(total=total))
        # Warm-up: stores the group's known alerts too, so that they are known in the run.
        wrk(url, body, seconds=2, connections=connections, fresh=fresh > 0)
        wrk(bare[0], bare_body, seconds=2, connections=connections)
        baseline = wrk(bare[0], bare_body, seconds=seconds, connections=connections,
                       pid=bare[1])
        run = wrk(url, body, seconds=seconds, connections=connections, fresh=fresh > 0, pid=pid)
        out[name] = {**run, "ratio": run["rps"] / baseline["rps"],
                     "cpu_ratio": baseline["cpu_ms"] / run["cpu_ms"],
                     "bare_rps": baseline["rps"], "bare_p99_ms": baseline["p99_ms"],
                     "bare_cpu_ms": baseline["cpu_ms"]}
    return out


async def fairness(url: str, *, big: int) -> dict[str, float]:
    """Post one delivery of `big` new alerts and, while it is in flight, 1-alert deliveries
    from another sender one after another: the big one's time to 2xx and the small ones'
    latencies (ms)."""
    labels, annotations = LABELS, ANNOTATIONS
    big_body = go_json(am_body(*(am_alert(f"big{i:013x}", labels={**labels, "replica": str(i)},
                                          annotations=annotations) for i in range(big))))
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    small_latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        async def post_big() -> float:
            started = time.perf_counter()
            response = await client.post("/webhooks/alertmanager", content=big_body)
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        big_task = asyncio.create_task(post_big())
        await asyncio.sleep(0.05)  # the big body is on its way
        n = 0
        while not big_task.done():
            n += 1
            body = go_json(am_body(am_alert(f"small{n:011x}", labels={**labels, "small": "1"},
                                            annotations=annotations)))
            started = time.perf_counter()
            response = await client.post("/webhooks/alertmanager", content=body)
            response.raise_for_status()
            small_latencies.append((time.perf_counter() - started) * 1000)
        big_ms = await big_task
    small_latencies.sort()
    return {"big_ms": big_ms, "small_count": len(small_latencies),
            "small_p50_ms": small_latencies[len(small_latencies) // 2],
            "small_max_ms": small_latencies[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also measure on this PostgreSQL server")
    parser.add_argument("--prefill", type=int, default=200_000,
                        help="alerts stored before the run (default 200,000)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--fairness", action="store_true",
                        help="measure a small delivery's latency behind a big one instead")
    parser.add_argument("--big", type=int, default=5000, help="alerts in the big delivery")
    parser.add_argument("--sqlite", action=argparse.BooleanOptionalAction, default=True,
                        help="measure on SQLite (--no-sqlite: PostgreSQL only)")
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the whole measurement; prints the median and range")
    args = parser.parse_args()
    names = [n for n in args.workloads.split(",") if n]
    if unknown := set(names) - set(WORKLOADS):
        sys.exit(f"unknown workloads: {', '.join(sorted(unknown))}; known: {', '.join(WORKLOADS)}")
    if not shutil.which("wrk") and not args.fairness:
        sys.exit("wrk is not installed: apt-get install wrk")
    runs = [measure(args, names) for _ in range(args.runs)]
    if args.runs > 1:
        summarize(runs, fairness=args.fairness)


def summarize(runs: list[dict[str, dict[str, float]]], *, fairness: bool) -> None:
    """Median and range over the runs of each figure that the targets name."""
    keys = (("small_max_ms", "small_p50_ms", "big_ms") if fairness
            else ("ratio", "cpu_ratio", "p99_ms", "rps"))
    print(f"\nover {len(runs)} runs: median (min-max)")
    for label in runs[0]:
        cells = []
        for key in keys:
            values = sorted(run[label][key] for run in runs)
            cells.append(f"{key} {statistics.median(values):.2f} "
                         f"({values[0]:.2f}-{values[-1]:.2f})")
        print(f"{label:<24} " + "  ".join(cells))


def measure(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, float]]:
    """One run of every workload (or of the fairness check) on each database."""
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="runbookd-bench-"))
    (work / "bare_app.py").write_text(BARE_APP)
    port = 18080
    base = f"http://127.0.0.1:{port}"
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", "warning", "--no-access-log"]
    results: dict[str, dict[str, float]] = {}
    bare = None
    if args.fairness:
        print(f"fairness: one delivery of {args.big} new alerts, and 1-alert deliveries one "
              f"after another while it is in flight; {args.prefill} alerts stored first")
    else:
        print(f"{args.connections} connections; {args.seconds}s per run; 1 uvicorn worker "
              f"each; {args.prefill} alerts stored first; workloads {', '.join(names)}")
        bare_port = port + 1
        bare = start([*uvicorn[:6], str(bare_port), *uvicorn[7:], "--app-dir", str(work),
                      "bare_app:app"], {"PYTHONPATH": str(ROOT)}, bare_port)

    targets = [("SQLite", f"sqlite+aiosqlite:///{work / 'bench.db'}")] if args.sqlite else []
    if args.pg:
        targets.append(("PostgreSQL", asyncio.run(fresh_pg(args.pg))))
    for name, url in targets:
        env = runbookd_env(url)
        if args.fairness:
            env["RUNBOOKD_MAX_BODY_BYTES"] = str(64 * 1024 * 1024)
        # This tree's CLI (not the installed one), as the server below runs this tree's app.
        subprocess.run([python, "-c", "import sys; from app.cli import main; sys.exit(main())",
                        "db", "upgrade"], cwd=ROOT, env={**os.environ, **env}, check=True,
                       capture_output=True)
        prefill(url, args.prefill)
        proc = start([*uvicorn, "--factory", "app.main:create_app"], env, port)
        try:
            if args.fairness:
                run = asyncio.run(fairness(base, big=args.big))
                results[name] = run
                print(f"runbookd {name:<10} big delivery {run['big_ms']:7.0f} ms; "
                      f"{int(run['small_count'])} small ones meanwhile: p50 "
                      f"{run['small_p50_ms']:6.1f} ms, max {run['small_max_ms']:6.1f} ms")
                continue
            assert bare is not None
            for workload, run in run_workloads(
                    base, proc.pid, (f"http://127.0.0.1:{port + 1}", bare.pid), work, names,
                    seconds=args.seconds, connections=args.connections).items():
                label = f"{name} {workload}"
                results[label] = run
                print(f"runbookd {label:<24} {run['rps']:6.0f} req/s  p50 "
                      f"{run['p50_ms']:6.1f} ms  p99 {run['p99_ms']:6.1f} ms  ratio "
                      f"{run['ratio']:.2f}x (bare {run['bare_rps']:.0f} req/s, p99 "
                      f"{run['bare_p99_ms']:.1f} ms)  CPU {run['cpu_ms']:.3f} ms/req, "
                      f"bare {run['bare_cpu_ms']:.3f}: {run['cpu_ratio']:.2f}x  "
                      f"non-2xx {int(run['errors'])}")
        finally:
            stop(proc)
    if args.pg:
        from benchmarks.history import drop_pg

        asyncio.run(drop_pg(targets[-1][1]))
    if bare is not None:
        stop(bare)
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
