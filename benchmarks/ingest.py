"""Ingest throughput: runbookd's /webhooks/alertmanager against a bare FastAPI endpoint that
parses the same pydantic model, same body, same worker count, same machine, same run.

    .venv/bin/python benchmarks/ingest.py [--seconds 10] [--connections 32] [--pg URL]

Needs `wrk` (apt-get install wrk). Prints requests/s, p50/p99 latency and the ratio.
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


def body_bytes() -> bytes:
    """A realistic Alertmanager body (~1.8 KB): two alerts with labels and annotations."""
    labels = {"alertname": "ModelDrift", "model": "fraud-v3", "env": "production",
              "severity": "critical", "team": "ml-platform", "cluster": "prod-eu-1",
              "namespace": "serving", "job": "drift-exporter", "instance": "10.0.3.17:9100"}
    annotations = {"summary": "PSI above 0.2 on fraud-v3 for 15m",
                   "description": "Population stability index of the score distribution is "
                                  "0.34 against the training baseline.",
                   "runbook_url": "https://runbooks.internal/model-drift",
                   "dashboard": "https://grafana.internal/d/ml-drift?var-model=fraud-v3"}
    alerts = [am_alert(f"{i:016x}", labels={**labels, "replica": str(i)},
                       annotations=annotations) for i in range(2)]
    return go_json(am_body(*alerts))


def wrk(url: str, body_path: Path, *, seconds: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % (TOKEN, body_path))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"),
                        help="also measure on this PostgreSQL server")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="runbookd-bench-"))
    body = work / "body.json"
    body.write_bytes(body_bytes())
    (work / "bare_app.py").write_text(BARE_APP)
    print(f"body: {len(body.read_bytes())} bytes; {args.connections} connections; "
          f"{args.seconds}s per run; 1 uvicorn worker each")

    port = 18080
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--log-level", "warning", "--no-access-log"]
    bare = start([*uvicorn, "--app-dir", str(work), "bare_app:app"],
                 {"PYTHONPATH": str(ROOT)}, port)
    wrk(f"http://127.0.0.1:{port}", body, seconds=2, connections=args.connections)  # warm up
    baseline = wrk(f"http://127.0.0.1:{port}", body, seconds=args.seconds,
                   connections=args.connections)
    stop(bare)
    print(f"bare FastAPI     {baseline['rps']:8.0f} req/s  p50 {baseline['p50_ms']:6.1f} ms"
          f"  p99 {baseline['p99_ms']:6.1f} ms")

    targets = [("SQLite", f"sqlite+aiosqlite:///{work / 'bench.db'}")]
    if args.pg:
        targets.append(("PostgreSQL", asyncio.run(fresh_pg(args.pg))))
    results = {}
    for name, url in targets:
        env = runbookd_env(url)
        subprocess.run([str(Path(python).parent / "runbookd"), "db", "upgrade"],
                       env={**os.environ, **env}, check=True, capture_output=True)
        proc = start([*uvicorn, "--factory", "app.main:create_app"], env, port)
        wrk(f"http://127.0.0.1:{port}", body, seconds=2, connections=args.connections)
        result = wrk(f"http://127.0.0.1:{port}", body, seconds=args.seconds,
                     connections=args.connections)
        stop(proc)
        ratio = result["rps"] / baseline["rps"]
        results[name] = {**result, "ratio": ratio}
        print(f"runbookd {name:<10} {result['rps']:6.0f} req/s  p50 {result['p50_ms']:6.1f} ms"
              f"  p99 {result['p99_ms']:6.1f} ms  ratio {ratio:.2f}x  "
              f"non-2xx {int(result['errors'])}")
    if args.pg:
        from benchmarks.history import drop_pg

        asyncio.run(drop_pg(targets[1][1]))
    print(json.dumps({"baseline": baseline, **results}))


if __name__ == "__main__":
    main()
