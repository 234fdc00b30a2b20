"""History queries and stats at 1,000,000 executions, through the real API, on SQLite and
PostgreSQL.

    .venv/bin/python benchmarks/history.py [--rows 1000000] [--pg URL] [--runs 3]
        [--sqlite-db PATH] [--pg-db NAME] [--only sqlite|pg] [--stats-only] [--floor]

Seeds executions (one alert and one step run per execution, linked) straight into a migrated
database, starts runbookd on it, and times `GET /api/v1/executions` with the common filters
and a deep cursor page, `GET /api/v1/stats` over 30 days and over a year, and the /stats page.
Prints p50 and p95 per query for each run, then the median and range of p95 over the runs.
`--sqlite-db` keeps the seeded SQLite file (seeded only when it does not exist yet), so a later
run measures the same rows after a migration; `--pg-db` does the same for PostgreSQL (a
database of that name on the `--pg` server, kept). `--stats-only` times the stats alone.
`--floor` also times a bare FastAPI app on the
same machine returning a fixed 50-row page: what no endpoint can beat.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
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

from tests.support.net import free_port  # noqa: E402

TOKEN = "bench-admin-token-0123456789"
RUNBOOKS = [f"runbook-{i}" for i in range(20)]
FINAL = ["succeeded"] * 14 + ["failed"] * 3 + ["cancelled", "rejected", "expired"]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def rows(n: int):  # type: ignore[no-untyped-def]
    """(execution, alert, step) tuples: 1,000 models, 20 runbooks, 20 alert names, 1% drills.

    Each execution has one step run (5% risky, approved after a wait), an alert that fired up
    to 5 minutes before it, and a time to restore spread from 30 s to 2 h, so that the stats'
    percentiles have something to sort.
    """
    rng = random.Random(7)
    for i in range(1, n + 1):
        created = START + dt.timedelta(seconds=i * 25)
        model = f"m-{rng.randrange(1000)}"
        runbook = RUNBOOKS[rng.randrange(len(RUNBOOKS))]
        status = FINAL[rng.randrange(len(FINAL))]
        fired = created - dt.timedelta(seconds=rng.randrange(300))
        step_start = created + dt.timedelta(seconds=rng.uniform(0.05, 20))
        risky = rng.random() < 0.05
        wait = rng.uniform(30, 3600) if risky else 0.0
        yield {
            "id": i, "runbook_id": runbook, "runbook_version": "0" * 64,
            "target": f"model:{model}", "status": status, "params": {"model": model},
            "dry_run": rng.random() < 0.01, "trigger": "alert",
            "started_by": "alice" if rng.random() < 0.01 else None, "created_at": created,
            "finished_at": created + dt.timedelta(seconds=wait + 30 * 240 ** rng.random()),
            "alert_fired_at": fired,
            "alerts_resolved_at": (created + dt.timedelta(seconds=rng.uniform(60, 7200))
                                   if rng.random() < 0.3 else None),
            "alertname": f"Alert{rng.randrange(20)}", "labels": {"model": model,
                                                                  "env": "production"},
            "step_started_at": step_start,
            "step_finished_at": step_start + dt.timedelta(seconds=wait + rng.uniform(0.1, 60)),
            "risky": risky,
            "awaiting_since": step_start if risky else None,
            "approved_at": step_start + dt.timedelta(seconds=wait) if risky else None,
        }


def seed_sqlite(path: Path, n: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA journal_mode=WAL")

    def ts(value: dt.datetime) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    batch_e, batch_a, batch_l, batch_n, batch_s, batch_p = [], [], [], [], [], []

    def maybe(value: dt.datetime | None) -> str | None:
        return ts(value) if value else None

    for r in rows(n):
        created = ts(r["created_at"])
        batch_e.append((r["id"], r["runbook_id"], r["runbook_version"], r["target"],
                        r["status"], json.dumps(r["params"]), int(r["dry_run"]), r["trigger"],
                        r["started_by"], created, created, created, ts(r["finished_at"]),
                        ts(r["alert_fired_at"]), maybe(r["alerts_resolved_at"])))
        batch_s.append((r["id"], r["id"], "check", "step", 0, "Check", "noop", int(r["risky"]),
                        0, "succeeded", 1, created, ts(r["step_started_at"]),
                        ts(r["step_finished_at"]), maybe(r["awaiting_since"]), 0))
        if r["risky"]:
            batch_p.append((r["id"], r["id"], "bob", "approve", "", "0" * 64, "api",
                            ts(r["approved_at"])))
        batch_a.append((r["id"], "alertmanager", f"{r['id']:016x}", created, "resolved",
                        created, r["alertname"], json.dumps({"alertname": r["alertname"],
                                                              **r["labels"]}), "{}", created,
                        created))
        batch_l.append((r["id"], r["id"], created, "trigger"))
        batch_n.extend((r["id"], k, v) for k, v in {"alertname": r["alertname"],
                                                     **r["labels"]}.items())
        if len(batch_e) == 50_000:
            _flush_sqlite(db, batch_e, batch_a, batch_l, batch_n, batch_s, batch_p)
    _flush_sqlite(db, batch_e, batch_a, batch_l, batch_n, batch_s, batch_p)
    db.execute("ANALYZE")
    db.commit()
    db.close()


STEP_COLUMNS = ("id, execution_id, step_id, kind, position, title, action, risky, idempotent, "
                "status, attempts, created_at, started_at, finished_at, awaiting_since, "
                "escalation_level")
APPROVAL_COLUMNS = ("execution_id, step_run_id, identity, decision, comment, step_hash, "
                    "channel, created_at")


def _flush_sqlite(db: sqlite3.Connection, e: list, a: list, links: list,
                  labels: list, steps: list, approvals: list) -> None:
    db.executemany(
        "INSERT INTO executions (id, runbook_id, runbook_version, target, status, params, "
        "dry_run, trigger, started_by, created_at, updated_at, started_at, finished_at, "
        "alert_fired_at, alerts_resolved_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", e)
    db.executemany(f"INSERT INTO step_runs ({STEP_COLUMNS}) VALUES "
                   "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)
    db.executemany(f"INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                   approvals)
    db.executemany(
        "INSERT INTO alerts (id, source, fingerprint, starts_at, status, status_at, alertname, "
        "labels, annotations, received_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", a)
    db.executemany("INSERT INTO execution_alerts (execution_id, alert_id, attached_at, role) "
                   "VALUES (?,?,?,?)", links)
    db.executemany("INSERT INTO alert_labels (alert_id, name, value) VALUES (?,?,?)", labels)
    db.commit()
    for batch in (labels, e, a, links, steps, approvals):
        batch.clear()


async def seed_pg(url: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    e, a, links, labels, steps, approvals = [], [], [], [], [], []
    for r in rows(n):
        e.append((r["id"], r["runbook_id"], r["runbook_version"], r["target"], r["status"],
                  json.dumps(r["params"]), r["dry_run"], r["trigger"], r["started_by"],
                  r["created_at"], r["created_at"], r["created_at"], r["finished_at"],
                  r["alert_fired_at"], r["alerts_resolved_at"]))
        steps.append((r["id"], r["id"], "check", "step", 0, "Check", "noop", r["risky"], False,
                      "succeeded", 1, r["created_at"], r["step_started_at"],
                      r["step_finished_at"], r["awaiting_since"], 0))
        if r["risky"]:
            approvals.append((r["id"], r["id"], "bob", "approve", "", "0" * 64, "api",
                              r["approved_at"]))
        a.append((r["id"], "alertmanager", f"{r['id']:016x}", r["created_at"], "resolved",
                  r["created_at"], r["alertname"],
                  json.dumps({"alertname": r["alertname"], **r["labels"]}), "{}",
                  r["created_at"], r["created_at"]))
        links.append((r["id"], r["id"], r["created_at"], "trigger"))
        labels.extend((r["id"], k, v) for k, v in {"alertname": r["alertname"],
                                                    **r["labels"]}.items())
    await conn.execute("SET session_replication_role = replica")  # no FK checks while loading
    await conn.copy_records_to_table("executions", records=e, columns=[
        "id", "runbook_id", "runbook_version", "target", "status", "params", "dry_run",
        "trigger", "started_by", "created_at", "updated_at", "started_at", "finished_at",
        "alert_fired_at", "alerts_resolved_at"])
    await conn.copy_records_to_table("alerts", records=a, columns=[
        "id", "source", "fingerprint", "starts_at", "status", "status_at", "alertname",
        "labels", "annotations", "received_at", "updated_at"])
    await conn.copy_records_to_table("execution_alerts", records=links, columns=[
        "execution_id", "alert_id", "attached_at", "role"])
    await conn.copy_records_to_table("alert_labels", records=labels,
                                     columns=["alert_id", "name", "value"])
    await conn.copy_records_to_table("step_runs", records=steps,
                                     columns=STEP_COLUMNS.split(", "))
    await conn.copy_records_to_table("approvals", records=approvals,
                                     columns=APPROVAL_COLUMNS.split(", "))
    await conn.execute("SELECT setval('executions_id_seq', $1)", n)
    await conn.execute("SELECT setval('alerts_id_seq', $1)", n)
    await conn.execute("SELECT setval('step_runs_id_seq', $1)", n)
    # What autovacuum would have done by now; it also lets index-only scans skip the heap.
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


QUERIES = {
    "newest page": {},
    "status=failed": {"status": "failed"},
    "runbook": {"runbook": "runbook-7"},
    "target": {"target": "model:m-421"},
    "alertname": {"alertname": "Alert7"},
    "label model=m-421": {"label": "model=m-421"},
    "actor=alice": {"actor": "alice"},
    "drill=true": {"drill": "true"},
    "runbook+status": {"runbook": "runbook-3", "status": "failed"},
    "one-day window": {"since": "2026-04-01T00:00:00Z", "until": "2026-04-02T00:00:00Z"},
}


# Windows that do not start on an hour, as a caller's "now - 30 days" would not.
STATS = {
    "stats 30 days": ("/api/v1/stats", {"since": "2026-09-01T07:23:11Z",
                                        "until": "2026-10-01T07:23:11Z"}),
    "stats a year": ("/api/v1/stats", {"since": "2025-12-15T03:17:00Z",
                                       "until": "2026-12-15T03:17:00Z"}),
    "stats page 30 days": ("/stats", {"since": "2026-09-01", "until": "2026-09-30"}),
}
FLOOR_APP = '''
import json, os
from fastapi import FastAPI
from fastapi.responses import Response

PAGE = open(os.environ["FLOOR_PAGE"], "rb").read()
ITEMS = json.loads(PAGE)
app = FastAPI()

@app.get("/bytes")
async def fixed() -> Response:
    return Response(PAGE, media_type="application/json")

@app.get("/dict")
async def as_dict() -> dict:
    return ITEMS
'''


def _time(http: httpx.Client, path: str, params: dict[str, str], n: int,
          warmup: int = 5) -> tuple[float, float]:
    times = []
    for i in range(n + warmup):
        start = time.perf_counter()
        response = http.get(path, params=params)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:  # reported, and timed: a 503 after 30 s is a figure
            print(f"  {path} {params}: {response.status_code} {response.text[:120]}")
        if i >= warmup:
            times.append(elapsed)
    times.sort()
    return times[len(times) // 2], times[max(int(len(times) * 0.95) - 1, 0)]


def sign_in(http: httpx.Client) -> None:
    page = http.get("/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, "no CSRF token on /login"
    http.post("/login", data={"token": TOKEN, "next": "/", "csrf_token": csrf.group(1)})


def measure(url: str, *, iterations: int, stats_iterations: int, work: Path,
            stats_only: bool = False) -> dict[str, tuple[float, float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out = {}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
        if stats_only:
            sign_in(http)
            return {name: _time(http, path, params, stats_iterations)
                    for name, (path, params) in STATS.items()}
        cursor = None
        for _ in range(200):  # a cursor 200 pages (10,000 rows) deep
            cursor = http.get("/api/v1/executions", params={"limit": 50, **(
                {"cursor": cursor} if cursor else {})}).json()["next_cursor"]
        (work / "page.json").write_bytes(http.get("/api/v1/executions",
                                                  params={"limit": 50}).content)
        queries = {**QUERIES, "page 201 (cursor)": {"cursor": cursor}}
        for name, params in queries.items():
            out[name] = _time(http, "/api/v1/executions", {"limit": 50, **params}, iterations)
        if stats_iterations:
            sign_in(http)
            for name, (path, params) in STATS.items():
                out[name] = _time(http, path, params, stats_iterations,
                                  warmup=1 if stats_iterations > 1 else 0)
    return out


def floor(work: Path, iterations: int) -> dict[str, tuple[float, float]]:
    """A bare FastAPI app serving the same 50-row page: as fixed bytes, and as a dict that
    FastAPI serialises."""
    (work / "floor_app.py").write_text(FLOOR_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log", "--app-dir", str(work), "floor_app:app"],
        env={**os.environ, "FLOOR_PAGE": str(work / "page.json")}, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/bytes", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=60) as http:
            return {"floor: fixed bytes": _time(http, "/bytes", {}, iterations),
                    "floor: FastAPI dict": _time(http, "/dict", {}, iterations)}
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def serve(db_url: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
           "RUNBOOKD_DEV_TOKEN": TOKEN, "RUNBOOKD_WORKER_ENABLED": "false",
           "RUNBOOKD_RETENTION_DAYS": "0", "RUNBOOKD_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "runbookd"), "serve", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=(work / "serve.log").open("wb"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("runbookd did not start")


def migrate(db_url: str) -> None:
    subprocess.run([str(Path(sys.executable).parent / "runbookd"), "db", "upgrade"],
                   env={**os.environ, "RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url},
                   check=True, capture_output=True)


async def roll_up(db_url: str) -> int | None:
    """Roll up the seeded executions, as the migration does for rows that ended before the
    rollups existed (the seeder writes past the engine's final transition)."""
    try:
        from app.engine.rollups import backfill
    except ImportError:  # a checkout from before the rollups
        return None
    from app.db import make_engine

    engine = make_engine(db_url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(backfill)
    finally:
        await engine.dispose()


def run(name: str, db_url: str, seed, work: Path, args: argparse.Namespace,  # type: ignore[no-untyped-def]
        *, seeded: bool = False) -> None:
    if not seeded:
        migrate(db_url)
        started = time.perf_counter()
        seed()
        print(f"{name}: seeded {args.rows:,} executions in {time.perf_counter() - started:.0f}s")
        started = time.perf_counter()
        if (rolled := asyncio.run(roll_up(db_url))) is not None:
            print(f"{name}: rolled up {rolled:,} executions in "
                  f"{time.perf_counter() - started:.0f}s")
    started = time.perf_counter()
    migrate(db_url)  # a kept database gets the migrations written since it was seeded
    print(f"{name}: migrated in {time.perf_counter() - started:.0f}s")
    if db_url.startswith("postgresql"):
        # What autovacuum would have done by now (it is off on this machine's server): with
        # no statistics on the rollups, the planner sorted 50,000 histogram rows on disk to
        # group them instead of hashing them, 75 ms instead of 19 ms.
        asyncio.run(vacuum_analyze(db_url))
    proc, url = serve(db_url, work)
    runs: list[dict[str, tuple[float, float]]] = []
    try:
        for number in range(1, args.runs + 1):
            result = measure(url, iterations=args.iterations,
                             stats_iterations=0 if args.stats_once and number > 1
                             else args.stats_iterations, work=work,
                             stats_only=args.stats_only)
            if args.floor and not args.stats_only:
                result.update(floor(work, args.iterations))
            runs.append(result)
            print(f"{name}, run {number}:")
            for query, (p50, p95) in result.items():
                print(f"  {query:<22} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    if len(runs) > 1:
        print(f"{name}: median (range) over {len(runs)} runs")
        for query in runs[0]:
            p50s = sorted(r[query][0] for r in runs if query in r)
            p95s = sorted(r[query][1] for r in runs if query in r)
            print(f"  {query:<22} p50 {statistics.median(p50s):8.2f} ({p50s[0]:.2f}.."
                  f"{p50s[-1]:.2f})   p95 {statistics.median(p95s):8.2f} ({p95s[0]:.2f}.."
                  f"{p95s[-1]:.2f}) ms")


async def vacuum_analyze(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    await conn.execute("VACUUM ANALYZE")
    await conn.close()


async def drop_pg(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = await asyncpg.connect(parsed.set(drivername="postgresql", database="postgres")
                                 .render_as_string(hide_password=False))
    await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    await conn.close()


async def kept_pg(url: str, name: str) -> tuple[str, bool]:
    """The URL of the kept database `name` (created if missing), and whether it is seeded."""
    import asyncpg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False))
    if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
        await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    conn = await asyncpg.connect(admin.set(database=name).render_as_string(hide_password=False))
    seeded = bool(await conn.fetchval("SELECT to_regclass('executions') IS NOT NULL") and
                  await conn.fetchval("SELECT EXISTS (SELECT 1 FROM executions)"))
    await conn.close()
    return make_url(url).set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False), seeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--stats-iterations", type=int, default=20,
                        help="requests per stats query (0 skips them)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stats-once", action="store_true",
                        help="time the stats in the first run only (they took minutes before "
                             "the rollups)")
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--only", choices=["sqlite", "pg"])
    parser.add_argument("--sqlite-db", type=Path, help="keep the seeded SQLite file here")
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--pg-db", help="keep the seeded PostgreSQL database under this name "
                                        "(seeded only when it has no executions yet)")
    parser.add_argument("--stats-only", action="store_true", help="time the stats alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runbookd-history-"))
    if args.only != "pg":
        path = args.sqlite_db or work / "history.db"
        run("SQLite", f"sqlite+aiosqlite:///{path}", lambda: seed_sqlite(path, args.rows), work,
            args, seeded=path.exists())
    if args.pg and args.only != "sqlite":
        if args.pg_db:
            url, seeded = asyncio.run(kept_pg(args.pg, args.pg_db))
            run("PostgreSQL", url, lambda: asyncio.run(seed_pg(url, args.rows)), work, args,
                seeded=seeded)
            return
        from benchmarks.ingest import fresh_pg

        url = asyncio.run(fresh_pg(args.pg))
        try:
            run("PostgreSQL", url, lambda: asyncio.run(seed_pg(url, args.rows)), work, args)
        finally:
            asyncio.run(drop_pg(url))


if __name__ == "__main__":
    main()
