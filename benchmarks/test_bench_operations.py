"""The cost of the operator controls on the borrow path (issue 15). Run with
``pytest benchmarks/test_bench_operations.py --benchmark-only``.

``test_borrow_release_controls`` — borrow + release of a warm connection, one thread, sync and
asyncio pools, with every control off (the default: must be within noise of
``test_bench_pool.py::test_borrow_release``) and with ``leak_timeout`` on (each borrow captures the
borrower's stack, without reading source lines) or ``max_waiting`` set (no cost unless callers
wait). Figures go to ``benchmark.extra_info`` (``us_per_borrow_release``); docs/operations.md
records them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import fairpool
import fairpool.asyncio
from fairpool.tools.servers import RedisServer

ITERATIONS = 200
ROUNDS = 200
SETTINGS: dict[str, dict[str, Any]] = {
    "off": {},
    "leak_timeout": {"leak_timeout": 60.0},
    "max_waiting": {"max_waiting": 8, "block": True},
}


@pytest.mark.parametrize("controls", list(SETTINGS))
def test_borrow_release_controls_sync(
    benchmark: Any, bench_server: RedisServer, controls: str
) -> None:
    pool = fairpool.ConnectionPool.from_url(bench_server.url, **SETTINGS[controls])
    get, release = pool.get_connection, pool.release
    release(get())  # dial it once

    def cycle() -> None:
        release(get())

    benchmark.group = "borrow_release_controls_sync"
    benchmark.pedantic(cycle, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=20)
    benchmark.extra_info["us_per_borrow_release"] = benchmark.stats.stats.median * 1e6
    assert pool.stats().borrows >= ROUNDS * ITERATIONS and pool.stats().leaks == 0
    pool.shutdown()


@pytest.mark.parametrize("controls", list(SETTINGS))
def test_borrow_release_controls_asyncio(
    benchmark: Any, bench_server: RedisServer, controls: str
) -> None:
    loop = asyncio.new_event_loop()

    async def build() -> fairpool.asyncio.ConnectionPool:
        return fairpool.asyncio.ConnectionPool.from_url(bench_server.url, **SETTINGS[controls])

    pool = loop.run_until_complete(build())

    async def cycles(n: int) -> None:
        get, release = pool.get_connection, pool.release
        for _ in range(n):
            await release(await get())

    loop.run_until_complete(cycles(1))  # dial it once

    def run() -> None:
        loop.run_until_complete(cycles(ITERATIONS))

    benchmark.group = "borrow_release_controls_asyncio"
    benchmark.pedantic(run, rounds=ROUNDS // 4, iterations=1, warmup_rounds=5)
    benchmark.extra_info["us_per_borrow_release"] = benchmark.stats.stats.median * 1e6 / ITERATIONS
    assert pool.stats().leaks == 0
    loop.run_until_complete(pool.ashutdown())
    loop.close()
