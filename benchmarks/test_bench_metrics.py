"""The cost of the latency histograms (``pytest benchmarks/test_bench_metrics.py
--benchmark-only``).

1. ``test_histogram_observe`` — one :meth:`fairpool.metrics.histogram.Histogram.observe`.
2. ``test_borrow_release_histograms`` — borrow + release of a warm connection (one thread, as
   ``test_bench_pool.test_borrow_release``) with the histograms recording (``on``), and with the
   core's histograms replaced by ones whose ``observe`` does nothing (``off``: the code before the
   histograms, but for one empty method call per borrow). The difference is the histograms' own
   cost; it is within the run-to-run noise of a borrow + release (see docs/stats.md).

Benchmarks measure; they assert only that the work was done, never wall-clock numbers.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_bench_pool import BORROW_ITERATIONS, BORROW_ROUNDS, measure_borrow_release

from fairpool.metrics.histogram import Histogram

Figures = dict[str, dict[str, dict[str, Any]]]

ROUNDS = 200


class _Off(Histogram):
    """A histogram that records nothing."""

    __slots__ = ()

    def observe(self, value: float) -> None:
        pass


def test_histogram_observe(benchmark: Any, figures: Figures) -> None:
    h = Histogram()
    values = [i * 0.000_37 for i in range(100)]  # spread over the buckets

    def observe_100() -> None:
        for v in values:
            h.observe(v)

    benchmark.group = "metrics"
    benchmark.pedantic(observe_100, rounds=ROUNDS, iterations=10, warmup_rounds=5)
    ns = benchmark.stats.stats.median * 1e9 / len(values)
    benchmark.extra_info["ns_per_observe"] = ns
    figures.setdefault("metrics", {})["observe"] = {"ns": ns}
    assert h.snapshot().count > 0


@pytest.mark.parametrize("histograms", ["on", "off"])
def test_borrow_release_histograms(
    benchmark: Any, make_pool: Any, figures: Figures, histograms: str
) -> None:
    pool = make_pool("fifo", max_connections=10)
    if histograms == "off":
        pool._core.timings.hold = _Off()
        pool._core.timings.wait = _Off()
    median_us = measure_borrow_release(benchmark, pool, "borrow_release_histograms")
    figures.setdefault("borrow_release_histograms", {})[histograms] = {"us": median_us}
    recorded = pool.stats().hold_histogram.count
    assert recorded > BORROW_ROUNDS * BORROW_ITERATIONS if histograms == "on" else recorded == 0
