"""Pool benchmarks: fairpool's policies against redis-py's ``ConnectionPool`` and
``BlockingConnectionPool``. Run with ``pytest benchmarks/ --benchmark-only``.

1. ``test_borrow_release`` — borrow + release of a warm connection, one thread (the pool's own
   cost).
2. ``test_ping`` — PING through ``redis.Redis`` at 1, 8, 64 and 256 threads, one connection per
   thread.
3. ``test_crowd`` — 1000 threads sharing a blocking pool of 16 connections, against 16 threads:
   steady-state throughput, whether every thread is served, Jain's index over threads, the
   longest call.
4. ``test_fairness`` — the proxy-imbalance scenario of ``fairpool demo`` (per-proxy command share).

Benchmarks measure; they assert only that the work was done, never wall-clock numbers. Derived
figures go to ``benchmark.extra_info`` and to the summary printed at the end (see conftest.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import fairpool
from fairpool.tools.demo import DEFAULT_POLICIES, DemoConfig, run_scenario
from fairpool.tools.servers import ServerGroup

KINDS = ("lifo", "fifo", "round_robin", "redis-py", "redis-py-blocking")
"""Pool kinds compared: fairpool's three policies and redis-py's two pools."""

Figures = dict[str, dict[str, dict[str, Any]]]  # the ``figures`` fixture (see conftest.py)
PoolFactory = Callable[..., redis.ConnectionPool]  # the ``make_pool`` fixture

# ------------------------------------------------------------------------------------------------
# 1. borrow + release, one thread
# ------------------------------------------------------------------------------------------------

BORROW_ITERATIONS = 200
BORROW_ROUNDS = 200


@pytest.mark.parametrize("kind", KINDS)
def test_borrow_release(
    benchmark: Any, make_pool: PoolFactory, figures: Figures, kind: str
) -> None:
    """One borrow + release of an idle, recently used connection (no I/O on fairpool's path)."""
    pool = make_pool(kind, max_connections=10)
    median_us = measure_borrow_release(benchmark, pool, "borrow_release")
    figures.setdefault("borrow_release", {})[kind] = {"us": median_us}


def measure_borrow_release(benchmark: Any, pool: Any, group: str) -> float:
    """Benchmark borrow + release of ``pool``'s one warm connection; the median in µs."""
    get, release = pool.get_connection, pool.release
    release(get())  # dial it once

    def cycle() -> None:
        release(get())

    benchmark.group = group
    benchmark.pedantic(cycle, rounds=BORROW_ROUNDS, iterations=BORROW_ITERATIONS, warmup_rounds=20)
    median_us: float = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["us_per_borrow_release"] = median_us
    return median_us


# ------------------------------------------------------------------------------------------------
# 2. end-to-end PING through redis.Redis
# ------------------------------------------------------------------------------------------------

PING_OPS_PER_ROUND = 12000
PING_ROUNDS = 7


def _start_ping_threads(
    client: redis.Redis, threads: int, ops_per_thread: int
) -> tuple[threading.Event, list[threading.Thread], list[int]]:
    """Start ``threads`` threads that wait for the event, then PING ``ops_per_thread`` times."""
    go = threading.Event()
    done = [0] * threads

    def worker(i: int) -> None:
        ping = client.ping
        go.wait()
        for _ in range(ops_per_thread):
            ping()
        done[i] = ops_per_thread

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    return go, workers, done


@pytest.mark.parametrize("threads", [1, 8, 64, 256])
@pytest.mark.parametrize("kind", KINDS)
def test_ping(
    benchmark: Any, make_pool: PoolFactory, figures: Figures, kind: str, threads: int
) -> None:
    """PING_OPS_PER_ROUND PINGs split over ``threads`` threads; one connection per thread."""
    pool = make_pool(kind, max_connections=threads)
    client = redis.Redis(connection_pool=pool)
    per_thread = -(-PING_OPS_PER_ROUND // threads)
    total = per_thread * threads
    results: list[list[int]] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_start_ping_threads(client, threads, per_thread),), {}

    def run(state: tuple[threading.Event, list[threading.Thread], list[int]]) -> None:
        go, workers, done = state
        go.set()
        for t in workers:
            t.join()
        results.append(done)

    benchmark.group = f"ping_{threads:03d}_threads"
    benchmark.pedantic(run, setup=setup, rounds=PING_ROUNDS, warmup_rounds=1)
    ops_per_sec = total / benchmark.stats.stats.median
    benchmark.extra_info.update({"ops_per_round": total, "ops_per_sec": ops_per_sec})
    figures.setdefault(benchmark.group, {})[kind] = {"ops_per_sec": ops_per_sec}
    assert all(sum(done) == total for done in results)


# ------------------------------------------------------------------------------------------------
# 3. a crowd of threads on a blocking pool of 16 connections
# ------------------------------------------------------------------------------------------------

CROWD_POOL_SIZE = 16
CROWD_WARMUP = 0.5  # seconds after the start before counting: every thread is in its loop
CROWD_WINDOW = 2.0  # seconds counted
CROWD_ROUNDS = 3
CROWD_KINDS = ("fifo", "round_robin", "lifo", "redis-py-blocking")


class _CrowdRound:
    """One round: ``threads`` threads PING in a loop through one client.

    Throughput is steady state: PINGs are counted from CROWD_WARMUP after the start for
    CROWD_WINDOW seconds, so the start-up stampede of a thousand threads is not what is measured.
    Each thread records its count in the window and its longest call (waiting for a connection plus
    one round trip) among the calls it started in the window.
    """

    def __init__(self, client: redis.Redis, threads: int) -> None:
        self.go = threading.Event()
        self.stop = threading.Event()
        self.measuring = False
        self.counts = [0] * threads
        self.longest = [0.0] * threads
        self.window: list[int] = []
        self.ops_per_sec = 0.0

        def worker(i: int) -> None:
            ping = client.ping
            clock = time.perf_counter
            counts = self.counts
            longest = 0.0
            self.go.wait()
            while not self.stop.is_set():
                measured = self.measuring
                t0 = clock()
                ping()
                dt = clock() - t0
                counts[i] += 1
                if measured and dt > longest:
                    longest = dt
            self.longest[i] = longest

        old_stack = threading.stack_size(256 * 1024)
        try:
            self.workers = [
                threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)
            ]
            for t in self.workers:
                t.start()
        finally:
            threading.stack_size(old_stack)

    def run(self) -> None:
        self.go.set()
        time.sleep(CROWD_WARMUP)
        before, t0 = list(self.counts), time.perf_counter()
        self.measuring = True
        time.sleep(CROWD_WINDOW)
        after, t1 = list(self.counts), time.perf_counter()
        self.measuring = False
        self.stop.set()
        for t in self.workers:
            t.join()
        self.window = [b - a for a, b in zip(before, after, strict=True)]
        self.ops_per_sec = sum(self.window) / (t1 - t0)


@pytest.mark.parametrize("threads", [CROWD_POOL_SIZE, 1000])
@pytest.mark.parametrize("kind", CROWD_KINDS)
def test_crowd(
    benchmark: Any, make_pool: PoolFactory, figures: Figures, kind: str, threads: int
) -> None:
    """``threads`` threads PING through a blocking pool of 16 for CROWD_WINDOW seconds."""
    pool = make_pool(kind, max_connections=CROWD_POOL_SIZE, block=True, timeout=60)
    client = redis.Redis(connection_pool=pool)
    rounds: list[_CrowdRound] = []

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        r = _CrowdRound(client, threads)
        rounds.append(r)
        return (r,), {}

    benchmark.group = "crowd"
    benchmark.pedantic(_CrowdRound.run, setup=setup, rounds=CROWD_ROUNDS, warmup_rounds=0)

    rates = sorted(r.ops_per_sec for r in rounds)
    ops_per_sec = rates[len(rates) // 2]
    jains = sorted(fairpool.fairness(r.window).jain for r in rounds)
    served = min(sum(1 for c in r.window if c) for r in rounds)
    max_wait = max(max(r.longest) for r in rounds)
    info: dict[str, Any] = {
        "threads": threads,
        "pool_size": CROWD_POOL_SIZE,
        "ops_per_sec": ops_per_sec,
        "threads_served": served,
        "jain_threads": jains[len(jains) // 2],
        "max_wait_ms": max_wait * 1000,
    }
    if isinstance(pool, fairpool.ConnectionPool):
        stats = pool.stats()
        info["pool_wait_time_max_ms"] = stats.wait_time_max * 1000  # start-up stampede included
        info["pool_waits"] = stats.waits
        info["pool_reborrows"] = stats.reborrows
        info["pool_timeouts"] = stats.timeouts
    label = "fairpool " + kind if kind in fairpool.Policy._value2member_map_ else kind
    base = figures.get("crowd", {}).get(f"{label} x {CROWD_POOL_SIZE}")
    if threads != CROWD_POOL_SIZE and base:
        info["vs_16_threads"] = round(ops_per_sec / base["ops_per_sec"], 2)
    benchmark.extra_info.update(info)
    figures.setdefault("crowd", {})[f"{label} x {threads}"] = info
    assert all(sum(r.window) > 0 for r in rounds)


# ------------------------------------------------------------------------------------------------
# 4. the proxy-imbalance scenario (fairpool demo)
# ------------------------------------------------------------------------------------------------

FAIRNESS_CONFIG = DemoConfig(proxies=4, burst=32, concurrency=2, duration=2.0, idle_timeout=None)


@pytest.fixture(scope="module")
def proxies() -> Iterator[ServerGroup]:
    """Four servers standing in for proxies (not pinned: the scenario measures shares)."""
    with ServerGroup(FAIRNESS_CONFIG.proxies, name="proxy") as group:
        yield group


@pytest.mark.parametrize("policy", DEFAULT_POLICIES)
def test_fairness(benchmark: Any, proxies: ServerGroup, figures: Figures, policy: str) -> None:
    """Burst of 32 connections over 4 proxies, then 2 threads for 2 s: per-proxy command share."""
    results = []

    def run() -> None:
        results.append(run_scenario(policy, proxies.servers, FAIRNESS_CONFIG))

    benchmark.group = "fairness"
    benchmark.pedantic(run, rounds=1, iterations=1)
    r = results[-1]
    info = {
        "commands": r.commands,
        "shares": [round(s, 4) for s in r.shares],
        "jain": r.jain,
        "max_mean": r.max_mean,
        "ops_per_sec": r.ops_per_sec,
        "connections_end": r.end_connections,
    }
    benchmark.extra_info.update(info)
    figures.setdefault("fairness", {})[policy] = info
    assert r.total > 0
