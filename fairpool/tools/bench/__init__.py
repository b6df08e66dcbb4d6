"""``fairpool bench``: PING throughput and latency through ``redis.Redis`` for each pool.

Compares fairpool's three policies with redis-py's own ``ConnectionPool`` and
``BlockingConnectionPool`` at several thread counts, against an embedded ``redis-server``
(default) or any server given by URL. Every pool gets the same cap (by default one connection per
thread, so nobody waits for a connection and the figures measure the pools' own overhead).

Each measurement: ``threads`` threads each dial their connection with one PING, meet at a barrier,
then PING in a loop for ``duration`` seconds, timing every call. The measurements are repeated
``repeats`` times, interleaved (every pool once per repeat, in a rotated order), and reported as
the median and range over the repeats: operations per second, the ratio to redis-py's
``ConnectionPool`` measured in the same repeat, and the p50 / p99 latency of one call. On Linux
the process and the embedded server are pinned to one CPU by default, as the benchmark suite does.

:func:`run_bench` returns a :class:`BenchResult` (``as_dict()`` for JSON); :func:`render_table`
presents it.

The modules, by concept: :mod:`.config` (what to measure), :mod:`.results` (the measurements and
their statistics), :mod:`.run` (measuring) and :mod:`.report` (the table).
"""

from __future__ import annotations

from .config import (
    POOL_KINDS,
    POOL_LABELS,
    REFERENCE,
    BenchConfig,
    BenchInterrupted,
    default_cpu,
    parse_pools,
    parse_threads,
)
from .report import render_report, render_table
from .results import BenchProgress, BenchResult, BenchRow, BenchSummary, percentile
from .run import make_bench_pool, measure, run_bench

__all__ = [
    "POOL_KINDS",
    "POOL_LABELS",
    "REFERENCE",
    "BenchConfig",
    "BenchInterrupted",
    "BenchProgress",
    "BenchResult",
    "BenchRow",
    "BenchSummary",
    "default_cpu",
    "make_bench_pool",
    "measure",
    "parse_pools",
    "parse_threads",
    "percentile",
    "render_report",
    "render_table",
    "run_bench",
]
