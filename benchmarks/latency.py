"""Executor latency on an idle service, and idle memory.

    .venv/bin/python benchmarks/latency.py [--alerts 200] [--pg URL]

- alert acknowledged (the webhook's 2xx reaches the sender) until its first safe step starts;
- approval recorded (the approve call's 2xx) until the approved step starts;
- resident memory of the idle process, after start-up and after the run.
Step start times are the `started_at` the executor commits, read from the database.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.identity import create_token  # noqa: E402
from tests.support.engine_catalog import risky, runbook, step, write_catalog  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.payloads import am_alert, am_body, go_json  # noqa: E402

WEBHOOK = "latency-webhook-token-0123456789"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def step_started(http: httpx.AsyncClient, token: str, execution_id: int,
                       step_id: str) -> dt.datetime:
    for _ in range(2000):
        detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                 headers={"Authorization": f"Bearer {token}"})).json()
        for s in detail.get("steps", []):
            if s["step_id"] == step_id and s["started_at"]:
                return dt.datetime.fromisoformat(s["started_at"])
        await asyncio.sleep(0.005)
    raise TimeoutError(f"step {step_id} of {execution_id} never started")


async def wait_status(http: httpx.AsyncClient, token: str, execution_id: int,
                      status: str) -> None:
    for _ in range(4000):
        detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                 headers={"Authorization": f"Bearer {token}"})).json()
        if detail["status"] == status:
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{execution_id} never became {status}")


async def measure(url: str, tokens: dict[str, str], n: int) -> dict[str, list[float]]:
    ack, approve = [], []
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        for i in range(n):
            alert = am_alert(f"{i:016x}", labels={"alertname": "lat-safe", "model": f"m-{i}"})
            response = await http.post(
                "/webhooks/alertmanager", content=go_json(am_body(alert)),
                headers={"Authorization": f"Bearer {WEBHOOK}",
                         "Content-Type": "application/json"})
            acked = dt.datetime.now(dt.UTC)
            response.raise_for_status()
            execution_id = i * 2 + 1
            started = await step_started(http, tokens["alice"], execution_id, "first")
            ack.append(max((started - acked).total_seconds() * 1000, 0.0))
            await wait_status(http, tokens["alice"], execution_id, "succeeded")

            alert = am_alert(f"{n + i:016x}", labels={"alertname": "lat-risky",
                                                      "model": f"m-{i}"})
            await http.post("/webhooks/alertmanager", content=go_json(am_body(alert)),
                            headers={"Authorization": f"Bearer {WEBHOOK}",
                                     "Content-Type": "application/json"})
            await wait_status(http, tokens["alice"], execution_id + 1, "awaiting_approval")
            answer = await http.post(
                f"/api/v1/executions/{execution_id + 1}/steps/change/approve",
                headers={"Authorization": f"Bearer {tokens['alice']}"})
            approved = dt.datetime.now(dt.UTC)
            answer.raise_for_status()
            started = await step_started(http, tokens["alice"], execution_id + 1, "change")
            approve.append(max((started - approved).total_seconds() * 1000, 0.0))
            await wait_status(http, tokens["alice"], execution_id + 1, "succeeded")
    return {"ack": ack, "approve": approve}


def start(db_url: str, work: Path, tokens_file: Path) -> tuple[subprocess.Popen[bytes], str]:
    mappings, remediations = write_catalog(work / "catalog", [
        runbook("lat-safe", [step("first"), step("second")]),
        runbook("lat-risky", [risky("change")]),
    ])
    env = {**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
           "RUNBOOKD_MAPPINGS": str(mappings), "RUNBOOKD_REMEDIATIONS_DIR": str(remediations),
           "RUNBOOKD_WEBHOOK_TOKENS": WEBHOOK, "RUNBOOKD_API_TOKENS_FILE": str(tokens_file),
           "RUNBOOKD_LOG_LEVEL": "WARNING"}
    runbookd = str(Path(sys.executable).parent / "runbookd")
    subprocess.run([runbookd, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([runbookd, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("runbookd did not start")


def run(name: str, db_url: str, n: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="runbookd-latency-"))
    tokens_file = work / "tokens.yaml"
    tokens = {"alice": create_token(tokens_file, "alice", ["approver"])}
    proc, url = start(db_url, work, tokens_file)
    try:
        time.sleep(3)
        idle = rss_mb(proc.pid)
        result = asyncio.run(measure(url, tokens, n))
        time.sleep(2)
        after = rss_mb(proc.pid)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    for key, label in (("ack", "alert 2xx -> first safe step"),
                       ("approve", "approval 2xx -> step start")):
        values = result[key]
        print(f"{name:<10} {label:<30} p50 {statistics.median(values):6.1f} ms  "
              f"p99 {pct(values, 0.99):6.1f} ms  max {max(values):6.1f} ms  (n={len(values)})")
    print(f"{name:<10} idle RSS after start {idle:.0f} MiB, after {n * 2} executions "
          f"{after:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runbookd-latency-"))
    run("SQLite", f"sqlite+aiosqlite:///{work / 'latency.db'}", args.alerts)
    if args.pg:
        from benchmarks.history import drop_pg
        from benchmarks.ingest import fresh_pg

        url = asyncio.run(fresh_pg(args.pg))
        try:
            run("PostgreSQL", url, args.alerts)
        finally:
            asyncio.run(drop_pg(url))


if __name__ == "__main__":
    main()
