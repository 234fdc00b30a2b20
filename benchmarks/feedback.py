"""Responder feedback's read side at 1,000,000 executions, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/feedback.py [--rows 1000000] [--share 0.05] [--runs 5]
        [--pg URL] [--only sqlite|pg]

Seeds executions over the last 365 days (20 runbooks) and a verdict from one or two people on
`--share` of them, straight into a migrated database, then times the stats' part
(`helpfulness_by_runbook`, one aggregate query joined by runbook) over 30 and 365 days, and
the runbook page's last five notes (`recent_notes`). Prints p50 and max per query.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import make_engine, make_session_factory  # noqa: E402
from app.history.feedback import helpfulness_by_runbook, recent_notes  # noqa: E402
from app.migrate import upgrade  # noqa: E402

VERDICTS = ("helped", "helped", "partly", "did_not_help")
NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None)


def rows(n: int, share: float) -> tuple[list[tuple], list[tuple]]:
    rng = random.Random(16)
    executions, feedback = [], []
    for i in range(1, n + 1):
        created = NOW - dt.timedelta(seconds=rng.uniform(0, 365 * 86400))
        executions.append((i, f"runbook-{i % 20}", "v1", f"model:m{i}", "succeeded", "{}",
                           False, "alert", created, created))
        if rng.random() < share:
            for who in ("alice", "bob")[: rng.choice((1, 2))]:
                feedback.append((i, f"runbook-{i % 20}", who, rng.choice(VERDICTS),
                                 "note" if rng.random() < 0.3 else "", "api", created, created,
                                 created))
    return executions, feedback


E_COLS = ("id, runbook_id, runbook_version, target, status, params, dry_run, trigger, "
          "created_at, updated_at")
F_COLS = ("execution_id, runbook_id, identity, verdict, note, channel, execution_created_at, "
          "created_at, updated_at")


def seed_sqlite(path: Path, executions: list[tuple], feedback: list[tuple]) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    db.executemany(f"INSERT INTO executions ({E_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                   [(*e[:8], e[8].strftime(fmt), e[9].strftime(fmt)) for e in executions])
    db.executemany(f"INSERT INTO feedback ({F_COLS}) VALUES (?,?,?,?,?,?,?,?,?)",
                   [(*f[:6], *(t.strftime(fmt) for t in f[6:])) for f in feedback])
    db.commit()
    db.execute("ANALYZE")
    db.close()


async def seed_pg(url: str, executions: list[tuple], feedback: list[tuple]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        await conn.execute("TRUNCATE executions RESTART IDENTITY CASCADE")
        await conn.copy_records_to_table("executions", records=[
            (*e[:8], e[8].replace(tzinfo=dt.UTC), e[9].replace(tzinfo=dt.UTC))
            for e in executions], columns=[c.strip() for c in E_COLS.split(",")])
        await conn.copy_records_to_table("feedback", records=[
            (*f[:6], *(t.replace(tzinfo=dt.UTC) for t in f[6:])) for f in feedback],
            columns=[c.strip() for c in F_COLS.split(",")])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure(url: str, runs: int) -> dict[str, list[float]]:
    engine = make_engine(url)
    factory = make_session_factory(engine)
    until = NOW.replace(tzinfo=dt.UTC)
    queries = {
        "helpfulness 30 days": lambda s: helpfulness_by_runbook(
            s, since=until - dt.timedelta(days=30), until=until),
        "helpfulness 365 days": lambda s: helpfulness_by_runbook(
            s, since=until - dt.timedelta(days=365), until=until),
        "runbook page notes": lambda s: recent_notes(s, "runbook-7"),
    }
    times: dict[str, list[float]] = {name: [] for name in queries}
    try:
        for _ in range(runs + 1):  # the first round warms caches and is not counted
            for name, query in queries.items():
                async with factory() as session:
                    start = time.perf_counter()
                    await query(session)
                    times[name].append((time.perf_counter() - start) * 1000)
    finally:
        await engine.dispose()
    return {name: values[1:] for name, values in times.items()}


def report(label: str, times: dict[str, list[float]]) -> None:
    for name, values in times.items():
        print(f"{label:10} {name:22} p50 {statistics.median(values):8.1f} ms  "
              f"max {max(values):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default=None, help="postgresql://... (its tables are emptied)")
    parser.add_argument("--only", choices=("sqlite", "pg"), default=None)
    args = parser.parse_args()
    executions, feedback = rows(args.rows, args.share)
    print(f"{len(executions)} executions, {len(feedback)} verdicts")
    if args.only != "pg":
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/bench.db"
            upgrade(url)
            seed_sqlite(Path(tmp) / "bench.db", executions, feedback)
            report("sqlite", asyncio.run(measure(url, args.runs)))
    if args.pg and args.only != "sqlite":
        url = args.pg.replace("postgresql://", "postgresql+asyncpg://", 1)
        upgrade(url)
        asyncio.run(seed_pg(args.pg, executions, feedback))
        report("postgres", asyncio.run(measure(url, args.runs)))


if __name__ == "__main__":
    main()
