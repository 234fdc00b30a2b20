"""History queries at 1,000,000 executions, through the real API, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/history.py [--rows 1000000] [--pg URL] [--keep]

Seeds executions (and one alert per execution, linked) straight into a migrated database,
starts runbookd on it, and times `GET /api/v1/executions` with the common filters and a deep
cursor page. Prints p50 and p95 per query.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sqlite3
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
    """(execution, alert) tuples: 1,000 models, 20 runbooks, 20 alert names, 1% drills."""
    rng = random.Random(7)
    for i in range(1, n + 1):
        created = START + dt.timedelta(seconds=i * 25)
        model = f"m-{rng.randrange(1000)}"
        runbook = RUNBOOKS[rng.randrange(len(RUNBOOKS))]
        status = FINAL[rng.randrange(len(FINAL))]
        yield {
            "id": i, "runbook_id": runbook, "runbook_version": "0" * 64,
            "target": f"model:{model}", "status": status, "params": {"model": model},
            "dry_run": rng.random() < 0.01, "trigger": "alert",
            "started_by": "alice" if rng.random() < 0.01 else None, "created_at": created,
            "finished_at": created + dt.timedelta(seconds=90),
            "alertname": f"Alert{rng.randrange(20)}", "labels": {"model": model,
                                                                  "env": "production"},
        }


def seed_sqlite(path: Path, n: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA journal_mode=WAL")

    def ts(value: dt.datetime) -> str:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    batch_e, batch_a, batch_l, batch_n = [], [], [], []
    for r in rows(n):
        created = ts(r["created_at"])
        batch_e.append((r["id"], r["runbook_id"], r["runbook_version"], r["target"],
                        r["status"], json.dumps(r["params"]), int(r["dry_run"]), r["trigger"],
                        r["started_by"], created, created, created, ts(r["finished_at"]),
                        created))
        batch_a.append((r["id"], "alertmanager", f"{r['id']:016x}", created, "resolved",
                        created, r["alertname"], json.dumps({"alertname": r["alertname"],
                                                              **r["labels"]}), "{}", created,
                        created))
        batch_l.append((r["id"], r["id"], created, "trigger"))
        batch_n.extend((r["id"], k, v) for k, v in {"alertname": r["alertname"],
                                                     **r["labels"]}.items())
        if len(batch_e) == 50_000:
            _flush_sqlite(db, batch_e, batch_a, batch_l, batch_n)
    _flush_sqlite(db, batch_e, batch_a, batch_l, batch_n)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _flush_sqlite(db: sqlite3.Connection, e: list, a: list, links: list,
                  labels: list) -> None:
    db.executemany(
        "INSERT INTO executions (id, runbook_id, runbook_version, target, status, params, "
        "dry_run, trigger, started_by, created_at, updated_at, started_at, finished_at, "
        "alert_fired_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", e)
    db.executemany(
        "INSERT INTO alerts (id, source, fingerprint, starts_at, status, status_at, alertname, "
        "labels, annotations, received_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", a)
    db.executemany("INSERT INTO execution_alerts (execution_id, alert_id, attached_at, role) "
                   "VALUES (?,?,?,?)", links)
    db.executemany("INSERT INTO alert_labels (alert_id, name, value) VALUES (?,?,?)", labels)
    db.commit()
    labels.clear()
    e.clear()
    a.clear()
    links.clear()


async def seed_pg(url: str, n: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    e, a, links, labels = [], [], [], []
    for r in rows(n):
        e.append((r["id"], r["runbook_id"], r["runbook_version"], r["target"], r["status"],
                  json.dumps(r["params"]), r["dry_run"], r["trigger"], r["started_by"],
                  r["created_at"], r["created_at"], r["created_at"], r["finished_at"],
                  r["created_at"]))
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
        "alert_fired_at"])
    await conn.copy_records_to_table("alerts", records=a, columns=[
        "id", "source", "fingerprint", "starts_at", "status", "status_at", "alertname",
        "labels", "annotations", "received_at", "updated_at"])
    await conn.copy_records_to_table("execution_alerts", records=links, columns=[
        "execution_id", "alert_id", "attached_at", "role"])
    await conn.copy_records_to_table("alert_labels", records=labels,
                                     columns=["alert_id", "name", "value"])
    await conn.execute("SELECT setval('executions_id_seq', $1)", n)
    await conn.execute("SELECT setval('alerts_id_seq', $1)", n)
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


def measure(url: str, *, iterations: int) -> dict[str, tuple[float, float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    out = {}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        cursor = None
        for _ in range(200):  # a cursor 200 pages (10,000 rows) deep
            cursor = http.get("/api/v1/executions", params={"limit": 50, **(
                {"cursor": cursor} if cursor else {})}).json()["next_cursor"]
        queries = {**QUERIES, "page 201 (cursor)": {"cursor": cursor}}
        for name, params in queries.items():
            times = []
            for i in range(iterations + 5):
                start = time.perf_counter()
                response = http.get("/api/v1/executions", params={"limit": 50, **params})
                elapsed = (time.perf_counter() - start) * 1000
                response.raise_for_status()
                if i >= 5:
                    times.append(elapsed)
            times.sort()
            out[name] = (times[len(times) // 2], times[int(len(times) * 0.95) - 1])
    return out


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


def run(name: str, db_url: str, seed, work: Path, n: int, iterations: int) -> None:  # type: ignore[no-untyped-def]
    migrate(db_url)
    started = time.perf_counter()
    seed()
    print(f"{name}: seeded {n:,} executions in {time.perf_counter() - started:.0f}s")
    proc, url = serve(db_url, work)
    try:
        for query, (p50, p95) in measure(url, iterations=iterations).items():
            print(f"  {query:<22} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


async def drop_pg(url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = await asyncpg.connect(parsed.set(drivername="postgresql", database="postgres")
                                 .render_as_string(hide_password=False))
    await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--pg", default=os.environ.get("TEST_DATABASE_URL"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runbookd-history-"))
    path = work / "history.db"
    run("SQLite", f"sqlite+aiosqlite:///{path}", lambda: seed_sqlite(path, args.rows), work,
        args.rows, args.iterations)
    if args.pg:
        from benchmarks.ingest import fresh_pg

        url = asyncio.run(fresh_pg(args.pg))
        try:
            run("PostgreSQL", url, lambda: asyncio.run(seed_pg(url, args.rows)), work,
                args.rows, args.iterations)
        finally:
            asyncio.run(drop_pg(url))


if __name__ == "__main__":
    main()
