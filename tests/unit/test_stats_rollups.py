"""The pure parts of the stats rollups: log buckets, windows split into rolled-up hours and
minutes read row by row, and percentiles read from histograms."""

from __future__ import annotations

import datetime as dt
import random
import statistics

import pytest

from app.engine.rollups import SMALLEST_BUCKET, bucket_of
from app.history.rollups import Cover, cover
from app.history.stats import _pct

T = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)


@pytest.mark.parametrize(("since", "until", "expected"), [
    # Whole hours only: nothing read row by row.
    (T, T + 3 * H, Cover((T, T + 3 * H), ())),
    # Minutes on both sides of the whole hours.
    (T + 5 * M, T + 3 * H + 7 * M,
     Cover((T + H, T + 3 * H), ((T + 5 * M, T + H), (T + 3 * H, T + 3 * H + 7 * M)))),
    # Inside one hour, or across one boundary with no whole hour: all row by row.
    (T + 5 * M, T + 50 * M, Cover(None, ((T + 5 * M, T + 50 * M),))),
    (T + 50 * M, T + 70 * M, Cover(None, ((T + 50 * M, T + 70 * M),))),
])
def test_a_window_splits_into_whole_hours_and_the_minutes_around_them(since, until, expected):
    assert cover(since, until) == expected


def test_a_bucket_spans_a_quarter_of_a_doubling():
    rng = random.Random(3)
    for _ in range(2000):
        value = 2 ** rng.uniform(-9, 30)
        bucket = bucket_of(value)
        assert 2 ** (bucket / 4) <= value * (1 + 1e-12)
        assert value < 2 ** ((bucket + 1) / 4) * (1 + 1e-12)
    assert bucket_of(0.0) == bucket_of(1e-6) == SMALLEST_BUCKET
    assert bucket_of(0.002) > SMALLEST_BUCKET


def test_percentiles_from_a_histogram_are_exact_when_each_bucket_holds_one_value():
    values = [0.5, 3.0, 90.0, 600.0, 7200.0]
    hist = {bucket_of(v): [1, v] for v in values}
    got = _pct([], hist)
    assert got.count == 5
    assert got.p50 == pytest.approx(statistics.median(values))
    assert got.p90 == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[8])


def test_percentiles_from_a_histogram_stay_within_a_bucket_of_the_exact_ones():
    rng = random.Random(11)
    values = [30 * 240 ** rng.random() for _ in range(5000)]
    hist: dict[int, list[float]] = {}
    for v in values[:4000]:
        sums = hist.setdefault(bucket_of(v), [0, 0.0])
        sums[0] += 1
        sums[1] += v
    # The rest are read row by row and join the histogram.
    got = _pct(values[4000:], hist)
    exact_p50 = statistics.median(values)
    exact_p90 = statistics.quantiles(values, n=10, method="inclusive")[8]
    assert got.count == 5000
    assert got.p50 == pytest.approx(exact_p50, rel=0.19)
    assert got.p90 == pytest.approx(exact_p90, rel=0.19)


def test_without_a_histogram_percentiles_are_the_exact_ones():
    values = [4.0, 1.0, 9.0, 16.0]
    got = _pct(values, {})
    assert (got.count, got.p50) == (4, statistics.median(values))
    assert got.p90 == statistics.quantiles(values, n=10, method="inclusive")[8]
    assert _pct([], {}).p50 is None
    assert _pct([2.5], {}).p90 == 2.5
