"""Fixed-bucket latency histograms: cheap to record under the pool lock, exported as they are.

Every histogram of a pool (wait, hold and dial time) uses the same upper bounds, :data:`BUCKETS`,
in seconds; a value lands in the first bucket whose bound is ≥ it (Prometheus' ``le``), and values
above the last bound in the overflow (``+Inf``) bucket. Recording one value is a bisection of that
small tuple, one list increment, one addition and a comparison or two (about 0.2 µs in CPython;
``benchmarks/test_bench_metrics.py``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BUCKETS", "Histogram", "HistogramSnapshot"]

BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
"""Upper bounds (seconds) of every pool histogram: 100 µs (a hand-over between threads) to one
minute (a long hold), roughly 2.5 times apart; ``+Inf`` above."""


@dataclass(frozen=True)
class HistogramSnapshot:
    """An immutable copy of a :class:`Histogram`.

    ``counts[i]`` is the number of values in bucket ``i`` (not cumulative): ``bounds[i-1] <
    value ≤ bounds[i]``, the last one being the overflow bucket (``+Inf``); ``sum`` is the sum of
    the values and ``max`` the largest one (0.0 when empty).
    """

    bounds: tuple[float, ...] = BUCKETS
    counts: tuple[int, ...] = (0,) * (len(BUCKETS) + 1)
    sum: float = 0.0
    max: float = 0.0

    @property
    def count(self) -> int:
        """How many values were recorded."""
        return sum(self.counts)

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(le, values ≤ le)`` per bucket, ending with ``(inf, count)``: Prometheus' buckets."""
        total = 0
        for bound, n in zip((*self.bounds, math.inf), self.counts, strict=True):
            total += n
            yield bound, total

    def minus(self, base: HistogramSnapshot, max_: float) -> HistogramSnapshot:
        """The values recorded since ``base`` (an earlier snapshot of the same histogram), whose
        largest was ``max_``."""
        counts = tuple(a - b for a, b in zip(self.counts, base.counts, strict=True))
        return HistogramSnapshot(self.bounds, counts, self.sum - base.sum, max_)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready ``dict`` (``+Inf`` written as the string ``"+Inf"``)."""
        return {
            "buckets": {("+Inf" if math.isinf(le) else repr(le)): n for le, n in self.cumulative()},
            "count": self.count,
            "sum": self.sum,
            "max": self.max,
        }


class Histogram:
    """Counts of values per bucket of :data:`BUCKETS`, their sum, and the largest value (all time
    and since the window was last restarted). Not thread-safe: the pool records under its lock."""

    __slots__ = ("counts", "max", "sum", "window_max")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0
        self.max = 0.0
        self.window_max = 0.0

    def observe(self, value: float) -> None:
        """Record one value (seconds)."""
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.sum += value
        if value > self.window_max:
            self.new_max(value)

    def new_max(self, value: float) -> None:
        """``value``, just counted, is above the window's largest: it is the new one (and
        perhaps the all-time largest). The core's release path, which inlines
        :meth:`observe`, calls it."""
        self.window_max = value
        if value > self.max:
            self.max = value

    def snapshot(self, window: bool = False) -> HistogramSnapshot:
        """An immutable copy; its ``max`` is the window's largest value when ``window`` is set."""
        return HistogramSnapshot(
            BUCKETS, tuple(self.counts), self.sum, self.window_max if window else self.max
        )
