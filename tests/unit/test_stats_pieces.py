"""Whole hours split into the coarsest rollup rows that fit them: months, weeks around them,
days around those, hours at the edges; disjoint, and together exactly the hours."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from app.engine.rollups import day_of, hour_of, month_of, week_of
from app.history.rollups import pieces

D = dt.timedelta(days=1)
H = dt.timedelta(hours=1)
FLOOR = {"h": hour_of, "d": day_of, "w": week_of, "m": month_of}
NEXT = {"d": lambda start: start + D, "w": lambda start: start + 7 * D,
        "m": lambda start: (start + 31 * D).replace(day=1)}


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(("rolled", "coarsest", "expected"), [
    # 30 days from mid-morning: weeks inside, days and hours around them (2026-09-07 is a Monday).
    ((at(2026, 9, 1, 8), at(2026, 10, 1, 7)), "m", [
        ("h", at(2026, 9, 1, 8), at(2026, 9, 2)), ("d", at(2026, 9, 2), at(2026, 9, 7)),
        ("w", at(2026, 9, 7), at(2026, 9, 28)), ("d", at(2026, 9, 28), at(2026, 10, 1)),
        ("h", at(2026, 10, 1), at(2026, 10, 1, 7))]),
    # A year: eleven months, and weeks, days and hours at either end.
    ((at(2025, 12, 15, 4), at(2026, 12, 15, 3)), "m", [
        ("h", at(2025, 12, 15, 4), at(2025, 12, 16)), ("d", at(2025, 12, 16), at(2025, 12, 22)),
        ("w", at(2025, 12, 22), at(2025, 12, 29)), ("d", at(2025, 12, 29), at(2026, 1, 1)),
        ("m", at(2026, 1, 1), at(2026, 12, 1)), ("d", at(2026, 12, 1), at(2026, 12, 7)),
        ("w", at(2026, 12, 7), at(2026, 12, 14)), ("d", at(2026, 12, 14), at(2026, 12, 15)),
        ("h", at(2026, 12, 15), at(2026, 12, 15, 3))]),
    # The counters stop at days.
    ((at(2025, 12, 15, 4), at(2026, 12, 15, 3)), "d", [
        ("h", at(2025, 12, 15, 4), at(2025, 12, 16)), ("d", at(2025, 12, 16), at(2026, 12, 15)),
        ("h", at(2026, 12, 15), at(2026, 12, 15, 3))]),
    # Exactly a month; hours within a day.
    ((at(2026, 2, 1), at(2026, 3, 1)), "m", [("m", at(2026, 2, 1), at(2026, 3, 1))]),
    ((at(2026, 2, 1, 3), at(2026, 2, 1, 9)), "m", [("h", at(2026, 2, 1, 3), at(2026, 2, 1, 9))]),
])
def test_whole_hours_read_the_coarsest_rows_that_fit(rolled, coarsest, expected):
    assert pieces(rolled, coarsest) == expected


@pytest.mark.parametrize("coarsest", ["m", "w", "d"])
def test_pieces_are_whole_rows_that_tile_the_hours_exactly(coarsest):
    rng = random.Random(5)
    allowed = {"m": "mwdh", "w": "wdh", "d": "dh"}[coarsest]
    for _ in range(3000):
        first = hour_of(at(2024, 1, 1) + dt.timedelta(hours=rng.randrange(3 * 365 * 24)))
        last = first + H * rng.choice([1, 5, 23, 24, 30, 24 * 7, 24 * 30, 24 * 61, 24 * 400,
                                       rng.randrange(1, 24 * 800)])
        got = pieces((first, last), coarsest)
        assert got[0][1] == first and got[-1][2] == last
        for (span, lo, hi), following in zip(got, [*got[1:], None], strict=True):
            assert span in allowed and lo < hi
            # Each range starts and ends on its span's boundaries: it holds whole rows.
            assert FLOOR[span](lo) == lo and FLOOR[span](hi) == hi, (span, lo, hi)
            if following is not None:
                assert following[1] == hi  # contiguous, so disjoint and gap-free
        # Every whole period of the coarsest span inside the hours is read as one row.
        floor, periods = FLOOR[coarsest], NEXT[coarsest]
        start = floor(first) if floor(first) == first else periods(floor(first))
        whole = []
        while periods(start) <= last:
            whole.append(start)
            start = periods(start)
        assert whole == [s for span, lo, hi in got if span == coarsest
                         for s in _starts(lo, hi, periods)]


def _starts(lo: dt.datetime, hi: dt.datetime, periods) -> list[dt.datetime]:  # type: ignore[no-untyped-def]
    out = []
    while lo < hi:
        out.append(lo)
        lo = periods(lo)
    return out
