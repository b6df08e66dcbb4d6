"""What the borrow check costs (issues: lifecycle, 16).

Every borrow polls the connection for anything that arrived while it was idle (EOF, a reset,
unexpected bytes: one ``poll(0)`` system call); a connection idle for at least
``health_check_after`` (or suspect) also gets the configured ``health_check``. These benchmarks
time borrow+release of a warm connection:

* ``fairpool-default`` — the default (``peek``, 0.25 s): the poll only;
* ``fairpool-nopoll`` — ``health_check="none"``: no poll at all (what the pool cost before the poll
  was added; the other option weighed in issue 16, suspect marking after a failed command, costs
  nothing per borrow and so is measured by this case too);
* ``fairpool-peek`` / ``fairpool-ping`` — the full check forced on every borrow
  (``health_check_after=0``);
* ``redis-py`` / ``redis-py-blocking`` — redis-py's pools (``can_read()`` on every borrow).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

import fairpool
from fairpool.tools.servers import RedisServer

CASES: dict[str, dict[str, Any]] = {
    "fairpool-default": {},
    "fairpool-nopoll": {"health_check": "none"},
    "fairpool-peek": {"health_check": "peek", "health_check_after": 0.0},
    "fairpool-ping": {"health_check": "ping", "health_check_after": 0.0},
}


@pytest.mark.parametrize("case", [*CASES, "redis-py", "redis-py-blocking"])
def test_checked_borrow(benchmark: Any, bench_server: RedisServer, case: str) -> None:
    kwargs = {"host": bench_server.host, "port": bench_server.port}
    pool: redis.ConnectionPool
    if case == "redis-py":
        pool = redis.ConnectionPool(**kwargs)
    elif case == "redis-py-blocking":
        pool = redis.BlockingConnectionPool(**kwargs)
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
