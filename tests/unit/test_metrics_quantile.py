"""Quantiles from cumulative histogram buckets, as PromQL's histogram_quantile computes them
(the dashboard's p50/p99 accept → confirmed)."""

from __future__ import annotations

import pytest

from order_engine.infra.metrics import quantile

INF = float("inf")
# cumulative: 10 observations ≤ 1 s, 20 ≤ 2 s, 50 ≤ 3 s, 80 ≤ 4 s, 100 in all
BUCKETS = [(1.0, 10.0), (2.0, 20.0), (3.0, 50.0), (4.0, 80.0), (INF, 100.0)]


def test_no_observations_have_no_quantile():
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.05, 0.5),  # rank 5 of the 10 in (0, 1]
        (0.2, 2.0),  # rank 20: the top of (1, 2]
        (0.3, 2 + 1 / 3),  # rank 30: a third of the way through (2, 3], which holds 20..50
        (0.5, 3.0),
        (0.99, 4.0),  # beyond the last finite bucket: its bound, as Prometheus answers
    ],
)
def test_linear_interpolation_inside_the_bucket(q, expected):
    assert quantile(q, BUCKETS) == pytest.approx(expected)


def test_bucket_order_does_not_matter():
    assert quantile(0.3, list(reversed(BUCKETS))) == pytest.approx(2 + 1 / 3)
