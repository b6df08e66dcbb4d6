"""Faults: fairpool against redis-py's pools in the same run (issue 16). Run with
``pytest benchmarks/test_bench_faults.py --benchmark-only``; the figures are printed at the end
(``faults``) and go to ``--benchmark-json``. docs/benchmarks.md and docs/lifecycle.md record a run.

Each scenario runs once per pool (the kill storms: alternately) on a server of its own (these
benchmarks kill, stop and restart it, so they do not use the session's pinned ``bench_server``).
The drivers are :mod:`fairpool.tools.faults`; ``tests/test_faults.py`` runs the same ones,
shorter, with assertions.

1. ``test_kill_storm`` — 32 callers, ``CLIENT KILL TYPE normal`` every 200 ms, retries off, at three
   loads (back to back, think time ≤ 50 ms, ≤ 400 ms), sync and asyncio: caller errors per killed
   connection, by kind (in flight, racing, stale, other), and the callers under way at the kills
   (fairpool's and redis-py's ``ConnectionPool``, and redis-py's blocking pool), in ten 0.6 s
   storms per pool alternating on one server.
2. ``test_restart_and_stall`` — the server killed and restarted; stopped with SIGSTOP for 5 s
   (``socket_timeout=1``): errors, and how long after it was back every caller had succeeded.
3. ``test_flaky_proxy`` — through a proxy adding 0-2 ms per chunk and resetting a connection every
   50 ms: errors per reset, replies misrouted (must be 0).
4. ``test_endpoint_outage`` — 4 endpoints, one down for 3 s under 32 busy threads: seconds until
   it holds its share again, per policy (redis-py has no equivalent).
5. ``test_cancel_storm`` — 300 tasks under 1-20 ms ``wait_for`` deadlines on a fresh
   ``BlockingConnectionPool(max_connections=50)``: commands completed, connections created.
6. ``test_borrows_after_a_kill`` — 8 idle connections killed, then 8 threads borrow at once:
   how long each borrow takes (it finds a dead connection, and dials), 30 rounds per pool.
7. ``test_kill_storm_long`` — the think-time ≤ 50 ms storm, sync, in forty 1 s storms per pool:
   enough kills (200) to tell errors per kill and connections alive per kill apart.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

import fairpool
import fairpool.asyncio as fasync
from fairpool.tools.faults import (
    FlakyProxy,
    KillStorm,
    abba,
    alternate,
    alternate_async,
    cancel_storm,
    endpoint_outage,
    excess,
    restart,
    stall,
    under_load,
)
from fairpool.tools.servers import RedisServer

Figures = dict[str, dict[str, dict[str, Any]]]

SYNC_KINDS = ("fairpool", "redis-py", "redis-py-blocking")


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(name="faults") as s:
        yield s


def _sync_pool(kind: str, host: str, port: int, **kwargs: Any) -> Any:
    if kind == "fairpool":
        return fairpool.BlockingConnectionPool(host=host, port=port, **kwargs)
    if kind == "redis-py-blocking":
        return redis.BlockingConnectionPool(host=host, port=port, **kwargs)
    kwargs.pop("timeout", None)
    return redis.ConnectionPool(host=host, port=port, **kwargs)


def _close(pool: Any) -> None:
    if isinstance(pool, fairpool.ConnectionPool):
        pool.shutdown()
    else:
        pool.disconnect()


def _once(benchmark: Any, fn: Any) -> Any:
    out: list[Any] = []
    benchmark.pedantic(lambda: out.append(fn()), rounds=1, iterations=1)
    return out[0]


LOADS = {"back_to_back": 0.0, "think_50ms": 0.05, "think_400ms": 0.4}

#: Per pool, STORMS storms of SECONDS each (a kill every 200 ms), the pools alternating (ABBA).
STORMS, SECONDS = 10, 0.6


@pytest.mark.parametrize("load", list(LOADS))
def test_kill_storm(benchmark: Any, server: RedisServer, figures: Figures, load: str) -> None:
    """fairpool's and redis-py's ``ConnectionPool`` and redis-py's blocking pool, alternating."""
    pools = {
        "fairpool": fairpool.ConnectionPool(host=server.host, port=server.port),
        "redis-py": redis.ConnectionPool(host=server.host, port=server.port),
        "redis-py-blocking": redis.BlockingConnectionPool(
            host=server.host, port=server.port, max_connections=64, timeout=5
        ),
    }
    think = LOADS[load]
    out = _once(
        benchmark,
        lambda: alternate(
            pools, server.host, server.port, storms=STORMS, think=think, seconds=SECONDS
        ),
    )
    for pool in pools.values():
        _close(pool)
    _record_storms(benchmark, figures, f"kill_storm sync {load}", out)


@pytest.mark.parametrize("load", list(LOADS))
def test_kill_storm_asyncio(
    benchmark: Any, server: RedisServer, figures: Figures, load: str
) -> None:
    """fairpool's and redis.asyncio's ``ConnectionPool``, alternating."""

    async def run() -> dict[str, KillStorm]:
        pools = {
            "fairpool": fasync.ConnectionPool(host=server.host, port=server.port),
            "redis-py": aredis.ConnectionPool(host=server.host, port=server.port),
        }
        try:
            return await alternate_async(
                pools, server.host, server.port, storms=STORMS, think=LOADS[load], seconds=SECONDS
            )
        finally:
            for pool in pools.values():
                await pool.disconnect()

    out = _once(benchmark, lambda: asyncio.run(run()))
    _record_storms(benchmark, figures, f"kill_storm asyncio {load}", out)


def _record_storms(benchmark: Any, figures: Figures, name: str, out: dict[str, KillStorm]) -> None:
    """Per pool: errors by kind, killed connections, exposure, and the Welch statistic of its
    errors per killed connection against redis-py's (``excess``: above 0, more than redis-py)."""
    for kind, storm in out.items():
        row: dict[str, Any] = {
            "errors": storm.errors,
            "in_flight": storm.in_flight,
            "racing": storm.racing,
            "stale": storm.stale,
            "other": storm.other,
            "kills": storm.kills,
            "per_kill": round(storm.per_kill, 3),
            "alive_per_kill": round(storm.kills / max(1, sum(r.kills for r in storm.rows)), 2),
            "exposed": storm.exposed,
            "per_exposed": round(storm.per_exposed, 3),
            "commands": storm.commands,
        }
        if kind != "redis-py":
            row["t_vs_redis_py"] = round(excess(storm, out["redis-py"]), 2)
        benchmark.extra_info[kind] = row
        figures.setdefault("faults", {})[f"{name} {kind}"] = row


def _load_row(result: Any) -> dict[str, Any]:
    recovered = result.recovered_after
    return {
        "errors": result.errors,
        "commands": result.commands,
        "misrouted": result.misrouted,
        "all_served_again_s": None if recovered is None else round(recovered, 3),
    }


@pytest.mark.parametrize("kind", SYNC_KINDS)
@pytest.mark.parametrize("fault", ["restart", "stall_5s"])
def test_restart_and_stall(
    benchmark: Any, server: RedisServer, figures: Figures, kind: str, fault: str
) -> None:
    """``restart``: killed and started again (``socket_timeout=2``); ``stall_5s``: SIGSTOP for
    5 s (``socket_timeout=1``)."""
    timeout = 2 if fault == "restart" else 1
    pool = _sync_pool(
        kind, server.host, server.port, max_connections=16, timeout=5, socket_timeout=timeout
    )
    make = restart(server) if fault == "restart" else stall(server, 5.0)
    result = _once(benchmark, lambda: under_load(pool, make, after=3.0))
    _close(pool)
    row = _load_row(result)
    benchmark.extra_info.update(row)
    figures.setdefault("faults", {})[f"{fault} {kind}"] = row
    assert result.misrouted == 0


@pytest.mark.parametrize("kind", SYNC_KINDS)
def test_flaky_proxy(benchmark: Any, server: RedisServer, figures: Figures, kind: str) -> None:
    with FlakyProxy(server.host, server.port) as proxy:
        pool = _sync_pool(
            kind, "127.0.0.1", proxy.port, max_connections=16, timeout=5, socket_timeout=0.5
        )
        result = _once(benchmark, lambda: under_load(pool, None, after=4.0))
        resets = proxy.resets
        _close(pool)
    row = {**_load_row(result), "resets": resets}
    row["per_reset"] = round(result.errors / max(1, resets), 2)
    benchmark.extra_info.update(row)
    figures.setdefault("faults", {})[f"flaky_proxy {kind}"] = row
    assert result.misrouted == 0


@pytest.mark.parametrize("policy", ("fifo", "round_robin", "lifo"))
def test_endpoint_outage(benchmark: Any, figures: Figures, policy: str) -> None:
    servers = [RedisServer(name=f"ep-{i}").start() for i in range(4)]
    try:
        pool = fairpool.ConnectionPool(
            endpoints=[f"{s.host}:{s.port}" for s in servers],
            max_connections=32,
            policy=policy,
            socket_timeout=2,
            socket_connect_timeout=1,
        )
        result = _once(benchmark, lambda: endpoint_outage(pool, servers, down=1, outage=3.0))
        pool.shutdown()
    finally:
        for s in servers:
            s.stop()
    recovered = result.recovered_after
    row = {
        "errors": result.errors,
        "share_back_after_s": None if recovered is None else round(recovered, 3),
        "connections": result.connections,
    }
    benchmark.extra_info.update(row)
    figures.setdefault("faults", {})[f"endpoint_outage {policy}"] = row


@pytest.mark.parametrize("kind", ("fairpool", "redis-py-blocking"))
def test_cancel_storm(benchmark: Any, server: RedisServer, figures: Figures, kind: str) -> None:
    def make() -> Any:
        cls = fasync.BlockingConnectionPool if kind == "fairpool" else aredis.BlockingConnectionPool
        return cls(host=server.host, port=server.port, max_connections=50)

    async def run() -> tuple[Any, int]:
        storm, pool = await cancel_storm(make, seconds=4.0)
        if kind == "fairpool":
            created = pool.stats().created
            await pool.ashutdown()
        else:
            created = len(pool._available_connections) + len(pool._in_use_connections)
            await pool.disconnect()
        return storm, created

    storm, created = _once(benchmark, lambda: asyncio.run(run()))
    row = {"commands": storm.commands, "cancelled": storm.cancelled, "connections": created}
    benchmark.extra_info.update(row)
    figures.setdefault("faults", {})[f"cancel_storm {kind}"] = row


def _borrows_after_a_kill(pool: Any, server: RedisServer, threads: int) -> list[float]:
    """One round: ``threads`` connections opened and released, every client connection killed,
    then ``threads`` threads borrow at once. Each borrow's seconds."""
    for conn in [pool.get_connection() for _ in range(threads)]:
        pool.release(conn)
    with server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.02)  # the ends of the streams are in the sockets
    start = threading.Barrier(threads)
    took = [0.0] * threads
    got: list[Any] = [None] * threads

    def borrow(i: int) -> None:
        start.wait()
        began = time.perf_counter()
        got[i] = pool.get_connection()
        took[i] = time.perf_counter() - began

    workers = [threading.Thread(target=borrow, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for conn in got:
        pool.release(conn)
    return took


BURST_THREADS, BURST_ROUNDS = 8, 30


def test_borrows_after_a_kill(benchmark: Any, server: RedisServer, figures: Figures) -> None:
    """fairpool's and redis-py's ``ConnectionPool``, rounds alternating (ABBA): after a mass
    disconnect each borrow finds a dead connection and dials; redis-py reconnects the one it
    popped, fairpool retires the dead ones in one batch (docs/lifecycle.md)."""
    pools = {
        "fairpool": fairpool.ConnectionPool(host=server.host, port=server.port),
        "redis-py": redis.ConnectionPool(host=server.host, port=server.port),
    }

    def run() -> dict[str, list[float]]:
        took: dict[str, list[float]] = {name: [] for name in pools}
        for name in abba(list(pools), BURST_ROUNDS):
            took[name] += _borrows_after_a_kill(pools[name], server, BURST_THREADS)
        return took

    took = _once(benchmark, run)
    for name, pool in pools.items():
        _close(pool)
        seconds = sorted(took[name])
        row = {
            "borrows": len(seconds),
            "median_ms": round(statistics.median(seconds) * 1e3, 2),
            "p90_ms": round(seconds[int(0.9 * len(seconds))] * 1e3, 2),
        }
        benchmark.extra_info[name] = row
        figures.setdefault("faults", {})[f"borrows after a kill {name}"] = row


def test_kill_storm_long(benchmark: Any, server: RedisServer, figures: Figures) -> None:
    """``test_kill_storm`` at sync, think time ≤ 50 ms, in forty 1 s storms per pool (200 kills
    each), fairpool's and redis-py's ``ConnectionPool`` alternating."""
    pools = {
        "fairpool": fairpool.ConnectionPool(host=server.host, port=server.port),
        "redis-py": redis.ConnectionPool(host=server.host, port=server.port),
    }
    out = _once(
        benchmark,
        lambda: alternate(pools, server.host, server.port, storms=40, think=0.05, seconds=1.0),
    )
    for pool in pools.values():
        _close(pool)
    _record_storms(benchmark, figures, "kill_storm sync think_50ms long", out)
