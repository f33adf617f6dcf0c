"""Runners by state over time: exact spans, averaged into a bounded number of buckets."""

from __future__ import annotations

import math
import random

import pytest

from runnerscale.simulation.backend import SimInstance
from runnerscale.simulation.occupancy import (
    MOST_BUCKETS,
    STATES,
    Span,
    bucket_width,
    bucketed,
)

HOUR = 3600.0


@pytest.mark.parametrize(
    "length", [0.5, 59, 300, 3 * HOUR, 10 * HOUR, 10.15 * HOUR, 30 * 24 * HOUR]
)
def test_a_run_of_any_length_gets_a_bounded_number_of_round_buckets(length: float) -> None:
    width = bucket_width(length)
    assert math.ceil(length / width) <= MOST_BUCKETS
    buckets = bucketed([Span("busy", 0, length)], 0, length)
    assert len(buckets.edges) - 1 <= MOST_BUCKETS
    assert buckets.edges[0] == 0
    assert buckets.edges[-1] == length


def test_the_width_is_the_smallest_round_one_that_fits() -> None:
    assert bucket_width(10 * HOUR) == 120.0  # 300 buckets of 2 minutes
    assert bucket_width(10.15 * HOUR) == 180.0  # 203 of 3 minutes: 2 would make 305
    assert bucket_width(10 * HOUR, most=600) == 60.0
    assert bucket_width(300) == 1.0
    assert bucket_width(301) == 2.0
    assert bucket_width(365 * 24 * HOUR) == 2 * 24 * HOUR


def test_a_bucket_holds_the_mean_count_over_it() -> None:
    spans = [
        Span("busy", 30, 90),  # half of the first bucket, half of the second
        Span("busy", 0, 60),  # all of the first
        Span("booting", 100, 110),  # a sixth of the second
        Span("idle", 120, 150),  # all of the last, shorter bucket: a mean of 1, not 1/2
    ]
    buckets = bucketed(spans, 0, 150, most=3)
    assert buckets.width == 60.0
    assert buckets.edges == (0.0, 60.0, 120.0, 150.0)
    assert buckets.means["busy"] == (1.5, 0.5, 0.0)
    assert buckets.means["booting"] == pytest.approx((0.0, 1 / 6, 0.0))
    assert buckets.means["idle"] == (0.0, 0.0, 1.0)
    assert buckets.means["queued"] == (0.0, 0.0, 0.0)


def test_only_the_time_between_begin_and_end_counts() -> None:
    buckets = bucketed([Span("queued", 900, 1300), Span("busy", 0, 50)], 1000, 1120, most=2)
    assert buckets.edges == (0.0, 60.0, 120.0)
    assert buckets.means["queued"] == (1.0, 1.0)
    assert buckets.seconds("busy") == 0.0
    empty = bucketed([Span("busy", 0, 10)], 5, 5)
    assert empty.seconds("busy") == 0.0


def test_bucketing_keeps_every_states_area() -> None:
    rng = random.Random(5)
    end = 10.15 * HOUR
    spans = []
    for _ in range(2000):
        start = rng.uniform(-600, end)
        spans.append(Span(rng.choice(STATES), start, start + rng.expovariate(1 / 240)))
    buckets = bucketed(spans, 0, end)
    assert len(buckets.edges) - 1 <= MOST_BUCKETS
    for state in STATES:
        exact = math.fsum(
            max(0.0, min(span.end, end) - max(span.start, 0.0))
            for span in spans
            if span.state == state
        )
        assert buckets.seconds(state) == pytest.approx(exact, rel=1e-9)


def test_an_instances_spans_are_its_books() -> None:
    served = SimInstance(
        "r1", "c", created_at=0, will_register=True, connected_at=30,
        job_started_at=30, job_ended_at=130, deleted_at=131,
    )  # fmt: skip
    assert served.spans(now=500) == [
        Span("booting", 0, 30),
        Span("busy", 30, 130),
        Span("idle", 130, 131),
    ]
    assert served.seconds(now=500) == (30.0, 1.0, 100.0)
    warm = SimInstance("r2", "c", created_at=0, will_register=True, connected_at=30)
    assert warm.spans(now=90) == [Span("booting", 0, 30), Span("idle", 30, 90)]
    silent = SimInstance("r3", "c", created_at=10, will_register=False, deleted_at=310)
    assert silent.spans(now=500) == [Span("booting", 10, 310)]
    assert silent.seconds(now=500) == (300.0, 0.0, 0.0)
