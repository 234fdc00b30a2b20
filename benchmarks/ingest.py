"""Ingest throughput: runbookd's /webhooks/alertmanager against a bare FastAPI endpoint that
parses the same pydantic model, same body, same worker count, same machine, same run.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--connections 32] [--pg URL]
                                          [--prefill 200000]

Needs `wrk` (apt-get install wrk). Prints requests/s, p50/p99 latency and the ratio, for two
workloads on each database: the target's (the same body again and again: redeliveries), and
a storm of new alerts (every request two alerts never seen before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
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


def body_bytes(*, fresh: bool = False) -> bytes:
    """A realistic Alertmanager body (~1.7 KB): two alerts with labels and annotations.

    `fresh`: the fingerprints carry a mark that the wrk script replaces per request, and the
    alert name matches no runbook, so that what is measured is the intake storing new alerts.
    """
    labels = {"alertname": "BenchNoRunbook" if fresh else "ModelDrift", "model": "fraud-v3",
              "env": "production", "severity": "critical", "team": "ml-platform",
              "cluster": "prod-eu-1", "namespace": "serving", "job": "drift-exporter",
              "instance": "10.0.3.17:9100"}
    annotations = {"summary": "PSI above 0.2 on fraud-v3 for 15m",
                   "description": "Population stability index of the score distribution is "
                                  "0.34 against the training baseline.",
                   "runbook_url": "https://runbooks.internal/model-drift",
                   "dashboard": "https://grafana.internal/d/ml-drift?var-model=fraud-v3"}
    alerts = [am_alert(f"{FRESH_MARK}{i:02x}" if fresh else f"{i:016x}",
                       labels={**labels, "replica": str(i)}, annotations=annotations)
              for i in range(2)]
    return go_json(am_body(*alerts))


def wrk(url: str, body_path: Path, *, seconds: int, connections: int,
        fresh: bool = False) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write((FRESH_SCRIPT if fresh else WRK_SCRIPT) % (TOKEN, body_path))
        script = fh.name
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
         f"{url}/webhooks/alertmanager"],
        capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"\s+(\d+)%\s+([\d.]+\w+)", out)}
    return {"rps": rps, "p50_ms": lat.get("50", -1), "p99_ms": lat.get("99", -1),
            "errors": float(non2xx.group(1)) if non2xx else 0.0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
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
    return {"RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
            "RUNBOOKD_WEBHOOK_TOKENS": TOKEN, "RUNBOOKD_LOG_LEVEL": "WARNING",
            "RUNBOOKD_MAPPINGS": str(ROOT / "alert_mappings.yaml"),
            "RUNBOOKD_REMEDIATIONS_DIR": str(ROOT / "remediations")}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also measure on this PostgreSQL server")
    parser.add_argument("--prefill", type=int, default=200_000,
                        help="alerts stored before the run (default 200,000)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="runbookd-bench-"))
    body = work / "body.json"
    body.write_bytes(body_bytes())
    fresh_body = work / "fresh.json"
    fresh_body.write_bytes(body_bytes(fresh=True))
    (work / "bare_app.py").write_text(BARE_APP)
    print(f"body: {len(body.read_bytes())} bytes; {args.connections} connections; "
          f"{args.seconds}s per run; 1 uvicorn worker each; {args.prefill} alerts stored first")

    port = 18080
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", "warning", "--no-access-log"]
    bare = start([*uvicorn, "--app-dir", str(work), "bare_app:app"],
                 {"PYTHONPATH": str(ROOT)}, port)
    wrk(f"http://127.0.0.1:{port}", body, seconds=2, connections=args.connections)  # warm up
    baseline = wrk(f"http://127.0.0.1:{port}", body, seconds=args.seconds,
                   connections=args.connections)
    stop(bare)
    print(f"bare FastAPI         {baseline['rps']:8.0f} req/s  p50 {baseline['p50_ms']:6.1f} ms"
          f"  p99 {baseline['p99_ms']:6.1f} ms")

    targets = [("SQLite", f"sqlite+aiosqlite:///{work / 'bench.db'}")]
    if args.pg:
        targets.append(("PostgreSQL", asyncio.run(fresh_pg(args.pg))))
    results = {}
    for name, url in targets:
        env = runbookd_env(url)
        subprocess.run([str(Path(python).parent / "runbookd"), "db", "upgrade"],
                       env={**os.environ, **env}, check=True, capture_output=True)
        prefill(url, args.prefill)
        proc = start([*uvicorn, "--factory", "app.main:create_app"], env, port)
        wrk(f"http://127.0.0.1:{port}", body, seconds=2, connections=args.connections)
        result = wrk(f"http://127.0.0.1:{port}", body, seconds=args.seconds,
                     connections=args.connections)
        # Not the target's workload: every request stores two alerts never seen before (a
        # storm of new alerts, which no runbook matches), so each batch takes the full path.
        fresh = wrk(f"http://127.0.0.1:{port}", fresh_body, seconds=args.seconds,
                    connections=args.connections, fresh=True)
        stop(proc)
        for label, run in ((name, result), (f"{name} new", fresh)):
            ratio = run["rps"] / baseline["rps"]
            results[label] = {**run, "ratio": ratio}
            print(f"runbookd {label:<14} {run['rps']:6.0f} req/s  p50 {run['p50_ms']:6.1f} ms"
                  f"  p99 {run['p99_ms']:6.1f} ms  ratio {ratio:.2f}x  "
                  f"non-2xx {int(run['errors'])}")
    if args.pg:
        from benchmarks.history import drop_pg

        asyncio.run(drop_pg(targets[1][1]))
    print(json.dumps({"baseline": baseline, **results}))


if __name__ == "__main__":
    main()
