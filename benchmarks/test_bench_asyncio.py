"""asyncio pool benchmarks: ``fairpool.asyncio`` against ``redis.asyncio``'s ``ConnectionPool``
and ``BlockingConnectionPool``, in the same run. Run with
``pytest benchmarks/test_bench_asyncio.py --benchmark-only``.

1. ``test_async_borrow_release`` — ``await get_connection()`` + ``await release()`` of a warm
   connection, one task (the pool's own cost).
2. ``test_async_ping`` — PING through ``redis.asyncio.Redis`` at 1, 16 and 256 tasks; every pool
   is sized so that each task can hold a connection (redis.asyncio's ``ConnectionPool`` is
   unbounded), so this measures the pools' overhead, not waiting.
3. ``test_async_crowd`` — 16 and 1000 tasks sharing a budget of PINGs: redis.asyncio's unbounded
   ``ConnectionPool`` (a connection per task: a thousand connections at 1000 tasks) against
   blocking pools of 16 connections (redis.asyncio's and fairpool's). Throughput, how many tasks
   were served, Jain's index over the tasks' counts, the longest single call; ``warm`` (the
   connections dialled before timing: steady state) and ``cold`` (each round on a fresh pool:
   the burst that opens the connections is timed).

Each test runs its own event loop; except for the cold crowd, pools are warm (their connections
dialled) before timing.
Benchmarks measure; they assert only that the work was done. Figures go to
``benchmark.extra_info`` and ``figures`` (the PING groups are printed in the conftest's summary
as ``ping_asyncio_*``; the crowd is printed at the end of each test). docs/asyncio.md records a
run.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest
import redis.asyncio as aredis

import fairpool
import fairpool.asyncio as fasync
from fairpool.tools.servers import RedisServer

Figures = dict[str, dict[str, dict[str, Any]]]  # the ``figures`` fixture (see conftest.py)

KINDS = ("lifo", "fifo", "round_robin", "redis-py", "redis-py-blocking")
"""fairpool.asyncio's three policies and redis.asyncio's two pools."""
UNBOUNDED = 2**31 - 1


class Loop:
    """An event loop of the test's own, with the pools made in it closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.pools: list[Any] = []

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coro)

    def pool(self, kind: str, max_connections: int, block: bool = False) -> Any:
        """``kind``: a fairpool policy, ``"redis-py"`` or ``"redis-py-blocking"``."""
        pool: Any
        if kind == "redis-py":
            pool = aredis.ConnectionPool.from_url(self.url, max_connections=max_connections)
        elif kind == "redis-py-blocking":
            pool = aredis.BlockingConnectionPool.from_url(
                self.url, max_connections=max_connections, timeout=60
            )
        elif block:
            pool = fasync.BlockingConnectionPool.from_url(
                self.url, policy=kind, max_connections=max_connections, timeout=60
            )
        else:
            pool = fasync.ConnectionPool.from_url(
                self.url, policy=kind, max_connections=max_connections
            )
        self.pools.append(pool)
        return pool

    def close(self) -> None:
        for pool in self.pools:
            self.run(pool.aclose())
        self.loop.close()


@pytest.fixture
def aloop(bench_server: RedisServer) -> Iterator[Loop]:
    """A fresh event loop and pool factory on the benchmark server."""
    loop = Loop(bench_server.url)
    yield loop
    loop.close()


def _label(kind: str) -> str:
    return f"fairpool {kind}" if kind in fairpool.Policy._value2member_map_ else kind


# ------------------------------------------------------------------------------------------------
# 1. borrow + release, one task
# ------------------------------------------------------------------------------------------------

BORROW_ITERATIONS = 200


@pytest.mark.parametrize("kind", KINDS)
def test_async_borrow_release(benchmark: Any, aloop: Loop, figures: Figures, kind: str) -> None:
    """BORROW_ITERATIONS borrow + release cycles of an idle, recently used connection."""
    pool = aloop.pool(kind, max_connections=10)

    async def cycles() -> None:
        get, release = pool.get_connection, pool.release
        for _ in range(BORROW_ITERATIONS):
            await release(await get())

    aloop.run(cycles())  # dial it once

    benchmark.group = "asyncio_borrow_release"
    benchmark.pedantic(lambda: aloop.run(cycles()), rounds=100, warmup_rounds=5)
    us = benchmark.stats.stats.median / BORROW_ITERATIONS * 1e6
    benchmark.extra_info["us_per_borrow_release"] = us
    figures.setdefault(benchmark.group, {})[kind] = {"us": us}
    print(f"\nasyncio borrow+release {_label(kind)}: {us:.2f} µs")


# ------------------------------------------------------------------------------------------------
# 2. PING at 1, 16 and 256 tasks, a connection per task
# ------------------------------------------------------------------------------------------------

PING_OPS_PER_ROUND = 6000
PING_ROUNDS = 5


async def _ping_round(client: aredis.Redis, tasks: int, per_task: int) -> list[int]:
    done = [0] * tasks

    async def worker(i: int) -> None:
        ping = client.ping
        for _ in range(per_task):
            await ping()
            done[i] += 1

    await asyncio.gather(*(worker(i) for i in range(tasks)))
    return done


@pytest.mark.parametrize("kind", KINDS)  # innermost: the pools compared run back to back
@pytest.mark.parametrize("tasks", [1, 16, 256])
def test_async_ping(benchmark: Any, aloop: Loop, figures: Figures, kind: str, tasks: int) -> None:
    """PING_OPS_PER_ROUND PINGs split over ``tasks`` tasks."""
    max_connections = UNBOUNDED if kind == "redis-py" else tasks
    client = aredis.Redis(connection_pool=aloop.pool(kind, max_connections=max_connections))
    per_task = -(-PING_OPS_PER_ROUND // tasks)
    total = per_task * tasks
    results: list[list[int]] = []
    aloop.run(_ping_round(client, tasks, 1))  # dial every connection before timing

    def run() -> None:
        results.append(aloop.run(_ping_round(client, tasks, per_task)))

    benchmark.group = f"ping_asyncio_{tasks:03d}_tasks"
    benchmark.pedantic(run, rounds=PING_ROUNDS, warmup_rounds=1)
    ops_per_sec = total / benchmark.stats.stats.median
    benchmark.extra_info.update({"ops_per_round": total, "ops_per_sec": ops_per_sec})
    figures.setdefault(benchmark.group, {})[kind] = {"ops_per_sec": ops_per_sec}
    print(f"\n{benchmark.group} {_label(kind)}: {ops_per_sec:,.0f} PING/s")
    assert all(sum(done) == total for done in results)


# ------------------------------------------------------------------------------------------------
# 3. a crowd of tasks: unbounded redis.asyncio pool against blocking pools of 16
# ------------------------------------------------------------------------------------------------

CROWD_POOL_SIZE = 16
CROWD_OPS_PER_ROUND = 20000
CROWD_ROUNDS = 3
CROWD_KINDS = ("redis-py", "redis-py-blocking", "fifo", "round_robin", "lifo")
"""``redis-py`` is redis.asyncio's unbounded ``ConnectionPool``; the others are blocking pools of
CROWD_POOL_SIZE connections."""


class _CrowdRound:
    """One round: ``tasks`` tasks share a budget of PINGs; each records its count and its
    longest call (waiting for a connection plus one round trip)."""

    def __init__(self, tasks: int) -> None:
        self.counts = [0] * tasks
        self.longest = [0.0] * tasks

    async def run(self, client: aredis.Redis, budget: int) -> None:
        tickets = itertools.count()

        async def worker(i: int) -> None:
            ping = client.ping
            clock = time.perf_counter
            n = 0
            longest = 0.0
            while next(tickets) < budget:
                t0 = clock()
                await ping()
                dt = clock() - t0
                if dt > longest:
                    longest = dt
                n += 1
            self.counts[i] = n
            self.longest[i] = longest

        await asyncio.gather(*(worker(i) for i in range(len(self.counts))))


def _crowd_pool(aloop: Loop, kind: str) -> Any:
    if kind == "redis-py":
        return aloop.pool(kind, max_connections=UNBOUNDED)
    return aloop.pool(kind, max_connections=CROWD_POOL_SIZE, block=True)


def _connections(pool: Any) -> int:
    if isinstance(pool, fasync.ConnectionPool):
        return pool.stats().open
    return len(pool._available_connections) + len(pool._in_use_connections)


@pytest.mark.parametrize("kind", CROWD_KINDS)  # innermost: the pools compared run back to back
@pytest.mark.parametrize(
    ("tasks", "start"), [(CROWD_POOL_SIZE, "warm"), (1000, "warm"), (1000, "cold")]
)
def test_async_crowd(
    benchmark: Any, aloop: Loop, figures: Figures, kind: str, tasks: int, start: str
) -> None:
    """``tasks`` tasks share CROWD_OPS_PER_ROUND PINGs (see CROWD_KINDS for the pools).

    ``warm``: the pool's connections are dialled before timing (steady state). ``cold``: each
    round starts on a fresh pool, so the burst's dials are timed — the unbounded pool opens a
    connection per task, the blocking pools 16.
    """
    rounds: list[_CrowdRound] = []
    pools: list[Any] = []
    if start == "warm":
        pools.append(_crowd_pool(aloop, kind))
        warm = aredis.Redis(connection_pool=pools[0])
        aloop.run(_CrowdRound(tasks).run(warm, tasks))  # dial the connections first

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        if start == "cold":
            if pools:
                aloop.run(pools[-1].aclose())
                time.sleep(0.5)  # let the server finish closing them before the next burst
            pools.append(_crowd_pool(aloop, kind))
        r = _CrowdRound(tasks)
        rounds.append(r)
        return (r, aredis.Redis(connection_pool=pools[-1])), {}

    def run(r: _CrowdRound, client: aredis.Redis) -> None:
        aloop.run(r.run(client, CROWD_OPS_PER_ROUND))

    benchmark.group = "asyncio_crowd"
    benchmark.pedantic(run, setup=setup, rounds=CROWD_ROUNDS, warmup_rounds=0)

    ops_per_sec = CROWD_OPS_PER_ROUND / benchmark.stats.stats.median
    jains = sorted(fairpool.fairness(r.counts).jain for r in rounds)
    served = min(sum(1 for c in r.counts if c) for r in rounds)
    max_wait = max(max(r.longest) for r in rounds)
    connections = _connections(pools[-1])
    size = "unbounded" if kind == "redis-py" else str(CROWD_POOL_SIZE)
    label = f"{_label(kind)} ({size})"
    key = f"{label} x {tasks} {start}"
    info: dict[str, Any] = {
        "tasks": tasks,
        "start": start,
        "pool_size": size,
        "connections": connections,
        "ops_per_sec": ops_per_sec,
        "tasks_served": served,
        "jain_tasks": jains[len(jains) // 2],
        "max_call_ms": max_wait * 1000,
    }
    crowd = figures.setdefault("asyncio_crowd", {})
    base = crowd.get(f"{label} x {CROWD_POOL_SIZE} warm")
    if tasks != CROWD_POOL_SIZE and base:
        info["vs_16_tasks"] = round(ops_per_sec / base["ops_per_sec"], 2)
    unbounded = crowd.get(f"redis-py (unbounded) x {tasks} {start}")
    if kind != "redis-py" and unbounded:
        info["vs_unbounded_redis_py"] = round(ops_per_sec / unbounded["ops_per_sec"], 2)
    benchmark.extra_info.update(info)
    crowd[key] = info
    print(
        f"\nasyncio crowd {key}: {ops_per_sec:,.0f} PING/s, {connections} connections;"
        f" served {served}/{tasks}, Jain(tasks) {info['jain_tasks']:.3f},"
        f" longest call {info['max_call_ms']:.1f} ms"
        + (f"; {info['vs_16_tasks']}x its 16-task figure" if "vs_16_tasks" in info else "")
        + (
            f"; {info['vs_unbounded_redis_py']}x redis-py unbounded"
            if "vs_unbounded_redis_py" in info
            else ""
        )
    )
    assert all(sum(r.counts) == CROWD_OPS_PER_ROUND for r in rounds)
