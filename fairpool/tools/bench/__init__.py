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

from . import config, report, results, run
from .config import *  # noqa: F403
from .report import *  # noqa: F403
from .results import *  # noqa: F403
from .run import *  # noqa: F403

__all__ = config.__all__ + report.__all__ + results.__all__ + run.__all__
