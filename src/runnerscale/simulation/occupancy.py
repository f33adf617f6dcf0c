"""Runners by state and jobs queued over a run: exact spans, averaged into buckets for a plot.

Why not draw the timeline's samples: a sample is one instant a minute. A runner boots for
30 s and idles for a second between its job's end and its deletion, so instants catch a boot
by chance and an idle spell almost never, and 600 instants over a ten-hour trace, each a
different count, draw as a comb of spikes in which the booting and idle bands cannot be seen.

The simulation knows better than instants: every runner's spans (booting, idle, busy: the
simulated backend's books, which the runner-seconds come from) and every job's time in the
queue. :func:`bucketed` averages them over time buckets sized to the run (at most
:data:`MOST_BUCKETS`, of a round width: 2 or 3 minutes for ten hours), weighting each span by
the time it overlaps each bucket. So a bucket's height is the mean count over it, nothing between
two samples is lost, and a band's area is exactly its runner-seconds: the report's plot and
its table agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

State = Literal["queued", "booting", "idle", "busy"]
STATES: tuple[State, ...] = ("queued", "booting", "idle", "busy")

#: At most this many buckets: a point every 4 pixels of a 1,200-pixel plot, about.
MOST_BUCKETS = 300

#: The bucket widths to choose from, in seconds: ones a caption can say ("3-minute buckets").
_ROUND_WIDTHS: tuple[float, ...] = (
    *(1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0),
    *(60.0 * m for m in (1, 2, 3, 5, 10, 15, 20, 30)),
    *(3600.0 * h for h in (1, 2, 3, 4, 6, 8, 12, 24)),
)


@dataclass(frozen=True)
class Span:
    """One runner in one state, or one job in the queue, from ``start`` until ``end``
    (seconds on the simulation's clock)."""

    state: State
    start: float
    end: float


@dataclass(frozen=True)
class Buckets:
    """Mean counts per state over consecutive time buckets, from the run's start.

    ``edges`` has one more entry than each series in ``means``: bucket ``i`` lasts from
    ``edges[i]`` to ``edges[i + 1]`` (seconds from the start); every bucket is ``width``
    long but the last, which ends with the run.
    """

    width: float
    edges: tuple[float, ...]
    means: Mapping[State, tuple[float, ...]]

    def seconds(self, state: State) -> float:
        """The series' area: seconds spent in ``state``, summed over runners (or jobs)."""
        return math.fsum(
            mean * (end - start)
            for mean, start, end in zip(self.means[state], self.edges, self.edges[1:], strict=False)
        )


def bucket_width(length: float, most: int = MOST_BUCKETS) -> float:
    """The smallest round width that cuts ``length`` seconds into at most ``most`` buckets
    (whole days beyond the listed widths)."""
    for width in _ROUND_WIDTHS:
        if length <= width * most:
            return width
    return 86_400.0 * math.ceil(length / (86_400.0 * most))


def bucketed(spans: Iterable[Span], begin: float, end: float, most: int = MOST_BUCKETS) -> Buckets:
    """The time-weighted mean count in each state over each bucket of ``begin`` to ``end``;
    a span's time outside it is left out. Edges are given from ``begin``."""
    length = max(0.0, end - begin)
    width = bucket_width(length, most)
    count = max(1, math.ceil(length / width))
    edges = tuple(min(length, index * width) for index in range(count + 1))
    seconds: dict[State, list[float]] = {state: [0.0] * count for state in STATES}
    for span in spans:
        start = max(span.start - begin, 0.0)
        stop = min(span.end - begin, length)
        if stop <= start:
            continue
        totals = seconds[span.state]
        for index in range(int(start // width), min(count, math.ceil(stop / width))):
            overlap = min(stop, edges[index + 1]) - max(start, edges[index])
            if overlap > 0:
                totals[index] += overlap
    durations = [edges[index + 1] - edges[index] for index in range(count)]
    return Buckets(
        width=width,
        edges=edges,
        means={
            state: tuple(
                total / duration if duration > 0 else 0.0
                for total, duration in zip(seconds[state], durations, strict=True)
            )
            for state in STATES
        },
    )
