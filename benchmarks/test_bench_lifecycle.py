"""What the borrow check costs (issue: lifecycle).

A borrow of a connection idle for at least ``health_check_after`` is verified first; a recently used
one is not. These benchmarks time borrow+release of a warm connection with the check forced on
every borrow (``health_check_after=0``) for ``peek`` and ``ping``, against the unchecked hot path
and against redis-py's ``ConnectionPool`` (which polls the socket on every borrow).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

import fairpool
from fairpool.tools.servers import RedisServer

CASES = {
    "fairpool-unchecked": {"health_check": "peek", "health_check_after": 60.0},
    "fairpool-peek": {"health_check": "peek", "health_check_after": 0.0},
    "fairpool-ping": {"health_check": "ping", "health_check_after": 0.0},
}


@pytest.mark.parametrize("case", [*CASES, "redis-py"])
def test_checked_borrow(benchmark: Any, bench_server: RedisServer, case: str) -> None:
    kwargs = {"host": bench_server.host, "port": bench_server.port}
    pool: redis.ConnectionPool
    if case == "redis-py":
        pool = redis.ConnectionPool(**kwargs)
    else:
        pool = fairpool.ConnectionPool(**kwargs, **CASES[case])
    pool.release(pool.get_connection())  # warm: one connected, idle connection

    def borrow_release() -> None:
        pool.release(pool.get_connection())

    benchmark.extra_info["case"] = case
    benchmark.pedantic(borrow_release, rounds=20, iterations=2000, warmup_rounds=2)
    if isinstance(pool, fairpool.ConnectionPool):
        stats = pool.stats()
        assert stats.created == 1 and stats.closed_total == 0  # the checks never failed
        pool.close()
    else:
        pool.disconnect()
