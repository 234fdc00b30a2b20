"""Stats from the rollups agree with the stats computed from every execution, on both
databases: counts, outcomes and objectives met exactly, percentiles within a bucket.

The rollups are written by the final transition (through the real engine here) and, for
rows that ended before they existed, by the migration's backfill (run on a seeded set here);
the week and month histogram rows that migration 0012 derives from the day rows are the same
as those the backfill and the final transition write.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.models import RunbookVersion
from app.db import make_engine, utcnow
from app.engine.models import Approval, Execution, StepRun
from app.engine.rollup_models import MONTH, WEEK, StatsHistogram, StatsRollup
from app.engine.rollups import backfill, histograms_from_days
from app.history.retention import prune
from app.history.rollups import cover, pieces
from app.history.stats import StatsOut, compute_stats, compute_stats_directly
from app.history.trends import bucket_start, outcomes_over_time
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.engine_catalog import risky, runbook, step
from tests.support.payloads import am_alert, am_body, go_json

FINAL = ["succeeded"] * 6 + ["failed", "cancelled", "rejected", "expired"]
ACTIVE = ["running", "awaiting_approval", "paused", "pending"]
# One bucket is 19% wide, and a percentile interpolates between bucket means.
PERCENTILE_TOLERANCE = 0.2


def assert_agree(rolled: StatsOut, direct: StatsOut) -> None:
    """Everything equal, except percentiles: within a bucket of the exact ones."""
    assert set(rolled.runbooks) == set(direct.runbooks)
    pairs = [(rolled.overall, direct.overall),
             *((rolled.runbooks[k], direct.runbooks[k]) for k in direct.runbooks)]
    for got, want in pairs:
        got_d, want_d = got.model_dump(), want.model_dump()
        for name in ("time_to_acknowledge_seconds", "time_to_diagnose_seconds",
                     "time_to_approve_seconds", "time_to_restore_seconds"):
            g, w = got_d.pop(name), want_d.pop(name)
            assert g["count"] == w["count"], name
            for q in ("p50", "p90"):
                if w[q] is None:
                    assert g[q] is None, name
                else:
                    assert abs(g[q] - w[q]) <= PERCENTILE_TOLERANCE * w[q] + 1e-6, (name, q, g, w)
        assert got_d == want_d


async def _seed(session: Any, *, count: int, start: dt.datetime, days: int = 3) -> None:
    """Executions over some days: final and active ones, one step each (some risky and
    approved after a wait), two runbooks, one of them with objectives."""
    rng = random.Random(17)
    session.add(RunbookVersion(runbook_id="drift", version="v1", loaded_at=start,
                               content={"objectives": {"time_to_diagnose": "1m",
                                                       "time_to_restore": "20m"}}))
    for i in range(count):
        created = start + dt.timedelta(seconds=rng.uniform(0, days * 86400))
        status = rng.choice(FINAL) if rng.random() < 0.9 else rng.choice(ACTIVE)
        fired = created - dt.timedelta(seconds=rng.uniform(0, 300))
        execution = Execution(
            runbook_id="drift" if i % 3 else "plain", runbook_version="v1",
            target=f"model:m-{i}", status=status, params={}, dry_run=False, trigger="alert",
            created_at=created, updated_at=created, started_at=created,
            finished_at=(created + dt.timedelta(seconds=30 * 100 ** rng.random())
                         if status in FINAL else None),
            alert_fired_at=fired if rng.random() < 0.95 else None,
            alerts_resolved_at=(created + dt.timedelta(seconds=rng.uniform(60, 3600))
                                if rng.random() < 0.3 else None))
        session.add(execution)
        await session.flush()
        if rng.random() < 0.1:
            continue  # never got to a step
        begun = created + dt.timedelta(seconds=rng.uniform(0.01, 30))
        is_risky = rng.random() < 0.2
        wait = rng.uniform(5, 1800) if is_risky else 0.0
        run = StepRun(execution_id=execution.id, step_id="check", kind="step", position=0,
                      title="Check", action="noop", risky=is_risky, idempotent=False,
                      status="succeeded", attempts=1, created_at=created, started_at=begun,
                      finished_at=begun + dt.timedelta(seconds=wait + rng.uniform(0.1, 90)),
                      awaiting_since=begun if is_risky else None)
        session.add(run)
        await session.flush()
        if is_risky:
            session.add(Approval(execution_id=execution.id, step_run_id=run.id,
                                 identity="alice", decision="approve", comment="",
                                 step_hash="0" * 64, channel="api",
                                 created_at=begun + dt.timedelta(seconds=wait)))


async def test_rollup_stats_agree_with_every_execution_read(db_url):
    engine = make_engine(db_url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    start = dt.datetime(2026, 6, 1, 5, 17, 23, tzinfo=dt.UTC)
    try:
        async with factory() as session, session.begin():
            await _seed(session, count=600, start=start)
        async with engine.begin() as conn:
            rolled_up = await conn.run_sync(backfill)
        assert rolled_up == (await _count(factory, Execution.status.in_(FINAL)))
        windows = [
            (start, start + dt.timedelta(days=3)),  # days, hours and minutes
            (start + dt.timedelta(hours=7, minutes=3), start + dt.timedelta(hours=30)),
            (start + dt.timedelta(minutes=50), start + dt.timedelta(minutes=100)),
            (start + dt.timedelta(minutes=1), start + dt.timedelta(minutes=40)),  # no whole hour
            (dt.datetime(2026, 6, 2, tzinfo=dt.UTC), dt.datetime(2026, 6, 4, tzinfo=dt.UTC)),
        ]
        async with factory() as session:
            await _windows_agree(session, windows)
            # A window of minutes only reads executions: exactly today's figures.
            since, until = windows[3]
            assert (await compute_stats(session, since=since, until=until)
                    == await compute_stats_directly(session, since=since, until=until))
            # The stats page's outcomes per day and per week count the same executions.
            since, until = windows[0]
            rows = (await session.execute(select(Execution.created_at, Execution.status).where(
                Execution.created_at >= since, Execution.created_at < until))).all()
            for period in ("day", "week"):
                expected: dict[dt.datetime, Counter[str]] = {}
                for created, status in rows:
                    expected.setdefault(bucket_start(created, period), Counter())[status] += 1
                buckets = await outcomes_over_time(session, since=since, until=until,
                                                   period=period)
                assert {b.start: b.counts for b in buckets if b.counts} == expected
    finally:
        await engine.dispose()


async def _windows_agree(session: AsyncSession,
                         windows: list[tuple[dt.datetime, dt.datetime]]) -> None:
    """Each window's stats, overall and for one runbook, from the rollups and from every
    execution read, agree."""
    for since, until in windows:
        for only in (None, "drift"):
            rolled = await compute_stats(session, since=since, until=until, runbook=only)
            direct = await compute_stats_directly(session, since=since, until=until,
                                                  runbook=only)
            assert direct.overall.executions > 0
            assert_agree(rolled, direct)


async def test_week_and_month_rows_agree_with_every_execution_read(db_url):
    """Windows over months read month and week rows; their stats agree with every execution
    read, and the rows that migration 0012 derives from the day rows are the ones written."""
    engine = make_engine(db_url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    start = dt.datetime(2026, 5, 20, 5, 17, 23, tzinfo=dt.UTC)
    try:
        async with factory() as session, session.begin():
            await _seed(session, count=700, start=start, days=70)
        async with engine.begin() as conn:
            await conn.run_sync(backfill)
        windows = [
            (start, start + dt.timedelta(days=70)),  # June whole: a month, weeks, days, hours
            (dt.datetime(2026, 6, 3, 7, 23, 11, tzinfo=dt.UTC),  # 30 days: weeks, days, hours
             dt.datetime(2026, 7, 3, 7, 23, 11, tzinfo=dt.UTC)),
            (dt.datetime(2026, 6, 1, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC)),
        ]
        assert [sorted({span for span, _, _ in pieces(cover(*w).rolled)}) for w in windows] == [
            ["d", "h", "m", "w"], ["d", "h", "w"], ["m"]]
        async with factory() as session:
            await _windows_agree(session, windows)
        written = await _coarse_histograms(factory)
        assert {key[0] for key in written} == {WEEK, MONTH}
        async with engine.begin() as conn:
            day_rows = await conn.run_sync(histograms_from_days)
        assert day_rows > 0
        derived = await _coarse_histograms(factory)
        assert derived.keys() == written.keys()
        for key, (count, total) in written.items():
            assert derived[key][0] == count, key
            assert abs(derived[key][1] - total) <= 1e-6 * total, key
    finally:
        await engine.dispose()


async def _coarse_histograms(factory: Any) -> dict[tuple[Any, ...], tuple[int, float]]:
    h = StatsHistogram
    async with factory() as session:
        return {(span, start, rid, metric, bucket): (count, total)
                for span, start, rid, metric, bucket, count, total in (await session.execute(
                    select(h.span, h.start, h.runbook_id, h.metric, h.bucket, h.count, h.total)
                    .where(h.span.in_([WEEK, MONTH])))).all()}


async def _count(factory: Any, *where: Any) -> int:
    async with factory() as session:
        return (await session.execute(
            select(func.count()).select_from(Execution).where(*where))).scalar_one()


async def _rolled_up(r: Any, db_url: str, tokens: dict[str, str],
                     ) -> tuple[StatsOut, list[StatsRollup], list[StatsHistogram]]:
    """The stats API's answer over a window around now, checked against the stats computed
    from every execution, and the rollup rows behind it."""
    now = utcnow()
    since, until = now - dt.timedelta(days=2), now + dt.timedelta(hours=3)
    # The current hour is a whole hour of this window: its ended executions come from the
    # rollups that the final transitions wrote.
    answer = await r.http.get("/api/v1/stats", headers=auth(tokens["victor"]),
                              params={"since": since.isoformat(), "until": until.isoformat()})
    assert answer.status_code == 200, answer.text
    rollups, histograms = await r.rows(StatsRollup), await r.rows(StatsHistogram)
    engine = make_engine(db_url)
    try:
        async with async_sessionmaker(engine)() as session:
            direct = await compute_stats_directly(session, since=since, until=until)
    finally:
        await engine.dispose()
    rolled = StatsOut.model_validate(answer.json())
    assert_agree(rolled, direct)
    return rolled, rollups, histograms


async def test_the_final_transition_rolls_up_each_execution_once(make_rig, db_url, tokens):
    books = [runbook("drift", [step("check"), risky("rollback")]),
             runbook("broken", [step("boom", "fail")])]
    async with make_rig(books) as r:
        await r.fire("drift", model="fraud-v3")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.approve(ex.id, "rollback", "alice")
        await r.wait_status(ex.id, "succeeded")
        await r.fire("broken", model="m2")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "failed")
        rolled, rollups, histograms = await _rolled_up(r, db_url, tokens)
    assert rolled.overall.outcomes == {"succeeded": 1, "failed": 1}
    assert rolled.runbooks["drift"].time_to_approve_seconds.count == 1
    # One hour row and one day row per execution; each timing in both.
    assert sorted((row.span, row.runbook_id, row.status, row.executions) for row in rollups) == [
        ("d", "broken", "failed", 1), ("d", "drift", "succeeded", 1),
        ("h", "broken", "failed", 1), ("h", "drift", "succeeded", 1)]
    assert {(h.runbook_id, h.metric) for h in histograms} >= {
        ("drift", "ack"), ("drift", "diagnose"), ("drift", "approve"), ("drift", "restore")}
    # Histograms also have week and month rows: each timing once in each span.
    assert Counter(h.span for h in histograms if h.runbook_id == "drift"
                   and h.metric == "approve") == {"h": 1, "d": 1, "w": 1, "m": 1}


async def test_executions_that_end_in_one_round_roll_up_together_each_once(
        make_rig, db_url, tokens):
    """Decisions that share a transaction settle their ended executions in one pass
    (app/engine/rounds.py): each is still counted once, with its own timings."""
    alerts = [am_alert(f"{n:016x}", labels={"alertname": "pair", "model": f"m{n}"})
              for n in range(6)]
    async with make_rig([runbook("pair", [step("a"), step("b")])],
                        worker_concurrency=6) as r:
        response = await r.http.post("/webhooks/alertmanager",
                                     content=go_json(am_body(*alerts)), headers=WEBHOOK_HEADERS)
        assert response.status_code == 200, response.text
        await r.wait_for(lambda rows: len(rows) == 6
                         and all(e.status == "succeeded" for e in rows), timeout=60)
        rolled, rollups, histograms = await _rolled_up(r, db_url, tokens)
    assert rolled.overall.outcomes == {"succeeded": 6}
    per_span = Counter[str]()
    for row in rollups:
        per_span[row.span] += row.executions
    assert per_span == {"d": 6, "h": 6}
    ack = [h for h in histograms if h.metric == "ack" and h.span == "h"]
    assert sum(h.count for h in ack) == 6


async def test_rollups_outlive_the_executions_that_retention_prunes(db_url):
    """On purpose: retention bounds the rows kept for audit, while a year of stats stays
    readable past it. Whole hours keep their counts; only the minutes at a window's edges,
    read row by row, lose what was pruned."""
    engine = make_engine(db_url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    start = dt.datetime(2026, 6, 1, 5, 17, 23, tzinfo=dt.UTC)
    since, until = dt.datetime(2026, 6, 2, tzinfo=dt.UTC), dt.datetime(2026, 6, 4, tzinfo=dt.UTC)
    try:
        async with factory() as session, session.begin():
            await _seed(session, count=300, start=start)
        async with engine.begin() as conn:
            await conn.run_sync(backfill)
        async with factory() as session:
            before = await compute_stats_directly(session, since=since, until=until)
        while True:
            async with factory() as session, session.begin():
                if not (await prune(session, older_than=start + dt.timedelta(days=30))
                        ).executions:
                    break
        async with factory() as session:
            after = await compute_stats(session, since=since, until=until)
            left = await compute_stats_directly(session, since=since, until=until)
    finally:
        await engine.dispose()
    assert after.overall.outcomes == before.overall.outcomes
    restored = after.overall.time_to_restore_seconds
    assert restored.count == before.overall.time_to_restore_seconds.count
    # Only active executions are left as rows.
    assert set(left.overall.outcomes) <= set(ACTIVE)
