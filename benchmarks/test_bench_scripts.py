"""Script benchmarks: ``fairpool.Script`` against redis-py's ``register_script``, and the origin
story at scale. Run with ``pytest benchmarks/test_bench_scripts.py --benchmark-only``.

1. ``test_call_overhead`` — the Python cost of one call, on a client whose ``execute_command``
   returns at once (no I/O): what each runner adds on top of the command itself.
2. ``test_call`` — one script call on a real server (EVALSHA round trip included).
3. ``test_pipeline`` — 1 and 100 script calls in one pipeline: redis-py adds a ``SCRIPT EXISTS``
   round trip to every ``execute()``, fairpool none once the script is known to be loaded.
4. ``test_permits_crowd`` — threads taking permits from
   :class:`fairpool.scripting.ratelimit.SmoothBursty` (rate high enough never to bind) through a
   blocking fairpool pool of 16 connections: 1000 threads against 10; for context, 1000 threads on
   redis-py's BlockingConnectionPool(16) and on an unbounded redis-py pool, which opens a connection
   per thread (the origin story's redigo pool without MaxActive).

Derived figures go to ``benchmark.extra_info`` and ``figures["scripts_*"]`` (in
``--benchmark-json`` output) and are printed at the end of each test. docs/scripting.md records
a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import fairpool
from fairpool.scripting import Script
from fairpool.scripting.ratelimit import SmoothBursty
from fairpool.tools.servers import RedisServer

Figures = dict[str, dict[str, dict[str, Any]]]  # the ``figures`` fixture (see conftest.py)

SOURCE = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
RUNNERS = ("fairpool", "redis-py")


class _NoIO(redis.Redis):
    """A client whose commands return at once: isolates the runners' own Python cost."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return 1


def _runner(kind: str, client: redis.Redis) -> Callable[[], Any]:
    keys, args = ["k"], [1]
    if kind == "fairpool":
        script = Script(SOURCE, name="incrby")
        return lambda: script(client, keys, args)
    registered = client.register_script(SOURCE)
    return lambda: registered(keys, args)


@pytest.fixture
def client(bench_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain client on the benchmark server, script cache warm for SOURCE."""
    c = bench_server.client()
    c.script_load(SOURCE)
    yield c
    c.close()


def _report(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}: " + ", ".join(f"{k}={v}" for k, v in rows.items()))


# ------------------------------------------------------------------------------------------------
# 1-3. per call
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RUNNERS)
def test_call_overhead(benchmark: Any, figures: Figures, kind: str) -> None:
    """One call through each runner on a client that does no I/O."""
    call = _runner(kind, _NoIO())
    benchmark.group = "script_call_overhead"
    benchmark.pedantic(call, rounds=200, iterations=500, warmup_rounds=10)
    us = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["us_per_call"] = us
    figures.setdefault("scripts_overhead", {})[kind] = {"us": us}
    _report(f"call overhead, no I/O, {kind}", {"us": f"{us:.2f}"})


@pytest.mark.parametrize("kind", RUNNERS)
def test_call(benchmark: Any, figures: Figures, client: redis.Redis, kind: str) -> None:
    """One script call on the real server."""
    call = _runner(kind, client)
    call()
    benchmark.group = "script_call"
    benchmark.pedantic(call, rounds=100, iterations=50, warmup_rounds=5)
    us = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["us_per_call"] = us
    figures.setdefault("scripts_call", {})[kind] = {"us": us}
    _report(f"call on a server, {kind}", {"us": f"{us:.1f}"})


@pytest.mark.parametrize("size", [1, 100])
@pytest.mark.parametrize("kind", RUNNERS)
def test_pipeline(
    benchmark: Any, figures: Figures, client: redis.Redis, kind: str, size: int
) -> None:
    """``size`` script calls in one (non-transactional) pipeline."""
    keys, args = ["k"], [1]
    if kind == "fairpool":
        script = Script(SOURCE, name="incrby")

        def run() -> Any:
            pipe = client.pipeline(transaction=False)
            for _ in range(size):
                script(pipe, keys, args)
            return pipe.execute()

    else:
        registered = client.register_script(SOURCE)

        def run() -> Any:
            pipe = client.pipeline(transaction=False)
            for _ in range(size):
                registered(keys, args, client=pipe)
            return pipe.execute()

    assert len(run()) == size
    benchmark.group = f"script_pipeline_{size}"
    benchmark.pedantic(run, rounds=50, iterations=5, warmup_rounds=2)
    us = benchmark.stats.stats.median * 1e6
    benchmark.extra_info["us_per_pipeline"] = us
    figures.setdefault(f"scripts_pipeline_{size}", {})[kind] = {"us": us}
    _report(f"pipeline of {size} calls, {kind}", {"us": f"{us:.0f}"})


# ------------------------------------------------------------------------------------------------
# 4. the origin story: a crowd of threads taking permits
# ------------------------------------------------------------------------------------------------

CROWD_POOL_SIZE = 16
CROWD_WARMUP = 0.5  # seconds after the start before counting: every thread is in its loop
CROWD_WINDOW = 2.0  # seconds counted
CROWD_ROUNDS = 3
RATE = 1e8  # permits/s: never binds, so the pool and the server set the pace


def _crowd_round(limiter: SmoothBursty, threads: int) -> tuple[float, int]:
    """``threads`` threads acquire in a loop; returns (permits/s in the window, threads served).

    Steady state: permits are counted from CROWD_WARMUP after the start for CROWD_WINDOW seconds,
    so the start-up stampede of 1000 threads is not what is measured.
    """
    go = threading.Event()
    stop = threading.Event()
    counts = [0] * threads

    def worker(i: int) -> None:
        acquire = limiter.acquire
        go.wait()
        while not stop.is_set():
            acquire()
            counts[i] += 1

    old_stack = threading.stack_size(256 * 1024)
    try:
        workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for t in workers:
            t.start()
    finally:
        threading.stack_size(old_stack)
    go.set()
    time.sleep(CROWD_WARMUP)
    first, t0 = sum(counts), time.perf_counter()
    time.sleep(CROWD_WINDOW)
    last, t1 = sum(counts), time.perf_counter()
    stop.set()
    for t in workers:
        t.join()
    return (last - first) / (t1 - t0), sum(1 for c in counts if c)


@pytest.mark.parametrize(
    ("pool_kind", "threads"),
    [
        ("fairpool-blocking-16", 10),
        ("fairpool-blocking-16", 1000),
        ("redis-py-blocking-16", 1000),
        ("redis-py-unbounded", 1000),
    ],
)
def test_permits_crowd(
    benchmark: Any, bench_server: RedisServer, figures: Figures, pool_kind: str, threads: int
) -> None:
    """``threads`` threads take permits through SmoothBursty for CROWD_WINDOW seconds."""
    pool: redis.ConnectionPool
    if pool_kind == "fairpool-blocking-16":
        pool = fairpool.BlockingConnectionPool(
            max_connections=CROWD_POOL_SIZE,
            timeout=20,
            host=bench_server.host,
            port=bench_server.port,
        )
    elif pool_kind == "redis-py-blocking-16":
        pool = redis.BlockingConnectionPool(
            max_connections=CROWD_POOL_SIZE,
            timeout=20,
            host=bench_server.host,
            port=bench_server.port,
        )
    else:
        pool = redis.ConnectionPool(
            host=bench_server.host, port=bench_server.port, max_connections=2**31
        )
    client = redis.Redis(connection_pool=pool)
    limiter = SmoothBursty(client, f"crowd:{pool_kind}:{threads}", RATE)
    limiter.acquire()  # load the script, dial one connection
    rates: list[float] = []
    served: list[int] = []
    connections = [0]

    def run() -> None:
        permits_per_sec, threads_served = _crowd_round(limiter, threads)
        rates.append(permits_per_sec)
        served.append(threads_served)

    try:
        benchmark.group = "script_permits_crowd"
        benchmark.pedantic(run, rounds=CROWD_ROUNDS, iterations=1, warmup_rounds=0)
        connections[0] = int(client.info("clients")["connected_clients"])
    finally:
        client.close()
        if isinstance(pool, fairpool.ConnectionPool):
            pool.close()
        pool.disconnect()
    rates.sort()
    ops = rates[len(rates) // 2]
    info: dict[str, Any] = {
        "threads": threads,
        "permits_per_sec": round(ops),
        "threads_served": min(served),
        "server_connections": connections[0],
    }
    label = f"{pool_kind} x {threads}"
    base = figures.get("scripts_crowd", {}).get("fairpool-blocking-16 x 10")
    if base and label != "fairpool-blocking-16 x 10":
        info["vs_10_threads"] = round(ops / base["permits_per_sec"], 2)
    benchmark.extra_info.update(info)
    figures.setdefault("scripts_crowd", {})[label] = info
    _report(f"permits crowd, {label}", info)
    assert min(served) > 0
