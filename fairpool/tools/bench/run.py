"""Measuring for ``fairpool bench``: PING from N threads through one pool (:func:`measure`), and
every pool kind at every thread count, interleaved over the repeats (:func:`run_bench`)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import redis
from redis.connection import BlockingConnectionPool as RedisBlockingConnectionPool
from redis.connection import ConnectionPool as RedisConnectionPool

from ...pool import ConnectionPool as FairConnectionPool
from .._load import close_pool, run_workers
from ..servers import RedisServer
from .config import POOL_LABELS, BenchConfig, BenchInterrupted
from .results import BenchProgress, BenchResult, BenchRow, percentile

__all__ = ["make_bench_pool", "measure", "run_bench"]


def make_bench_pool(kind: str, url: str, max_connections: int) -> RedisConnectionPool:
    """A pool of ``kind`` (see :data:`POOL_KINDS`) for ``url`` with the given cap.

    The blocking pool waits up to 20 s (redis-py's default) for a connection.
    """
    if kind == "redis-py":
        return RedisConnectionPool.from_url(url, max_connections=max_connections)
    if kind == "redis-py-blocking":
        return RedisBlockingConnectionPool.from_url(url, max_connections=max_connections)
    return FairConnectionPool.from_url(url, policy=kind, max_connections=max_connections)


def measure(
    pool: RedisConnectionPool,
    threads: int,
    duration: float,
    *,
    stop: threading.Event | None = None,
    tick: Callable[[float, int], None] | None = None,
) -> tuple[int, float, list[int], int]:
    """PING through ``redis.Redis(connection_pool=pool)`` from ``threads`` threads.

    Returns ``(ops, seconds, latencies_ns, errors)``; latencies are unsorted, one per call.
    """
    stop = stop or threading.Event()
    client = redis.Redis(connection_pool=pool)
    latencies: list[list[int]] = [[] for _ in range(threads)]
    counts = [0] * threads
    errors = [0]
    clock: dict[str, float] = {}

    def started() -> None:
        clock["start"] = time.perf_counter()
        clock["deadline"] = clock["start"] + duration

    barrier = threading.Barrier(threads, action=started)

    def worker(i: int) -> None:
        ping = client.ping
        now_ns = time.perf_counter_ns
        lat = latencies[i]
        append = lat.append
        try:
            ping()  # dial this thread's connection before the clock starts
            barrier.wait(timeout=60)
            deadline = clock["deadline"]
            perf = time.perf_counter
            n = 0
            while perf() < deadline and not stop.is_set():
                t0 = now_ns()
                ping()
                append(now_ns() - t0)
                n += 1
                if not n & 255:
                    counts[i] = n
            counts[i] = n
        except threading.BrokenBarrierError:
            pass
        except Exception:
            errors[0] += 1
            barrier.abort()

    def report() -> None:
        if tick is not None and "start" in clock:
            tick(min(time.perf_counter() - clock["start"], duration), sum(counts))

    run_workers(worker, threads, "fairpool-bench", stop, report)
    if stop.is_set():
        barrier.abort()
        raise BenchInterrupted()
    end = time.perf_counter()
    seconds = end - clock.get("start", end)
    merged = [x for lat in latencies for x in lat]
    return len(merged), seconds, merged, errors[0]


def _server_version(url: str) -> str:
    with redis.Redis.from_url(url, socket_timeout=10) as client:
        info = client.info("server")
    return str(info.get("redis_version", "?"))


@contextlib.contextmanager
def _pinned(cpu: int | None) -> Iterator[None]:
    """Pin this process to ``cpu`` for the duration (no-op when None)."""
    if cpu is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


@contextlib.contextmanager
def _server(url: str | None, cpu: int | None = None) -> Iterator[tuple[str, str, str]]:
    """(url, host:port, version) of the server to use: ``url``, or an embedded one (pinned to
    ``cpu`` if given)."""
    if url is not None:
        pool = RedisConnectionPool.from_url(url)
        kw = pool.connection_kwargs
        address = str(kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}")
        pool.disconnect()
        yield url, address, _server_version(url)
        return
    with RedisServer(name="bench") as server:
        if cpu is not None and server.pid is not None:
            os.sched_setaffinity(server.pid, {cpu})
        yield server.url, f"{server.host}:{server.port}", ".".join(map(str, server.version))


def _rotated(items: Sequence[str], k: int) -> list[str]:
    k %= max(1, len(items))
    return list(items[k:]) + list(items[:k])


def run_bench(
    config: BenchConfig,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[BenchProgress], None] | None = None,
) -> BenchResult:
    """Measure every pool kind at every thread count, ``config.repeats`` times, interleaved: each
    repeat measures every thread count and pool kind once (the pools in an order rotated by one
    per repeat), so that a slow spell of a shared machine hits all pools alike.

    An embedded server (if no ``config.url``) is stopped whatever happens.

    Raises:
        ServerBinaryNotFound, ServerStartError: no embedded server could be started.
        BenchInterrupted: ``stop`` was set.
    """
    stop = stop or threading.Event()
    report = progress or (lambda _event: None)
    cpu = config.pinned_cpu
    count = config.repeats * len(config.threads) * len(config.pools)
    index = 0
    with _server(config.url, cpu) as (url, address, version), _pinned(cpu):
        result = BenchResult(
            config=config,
            server=address,
            server_version=version,
            pinned_cpu=cpu,
            server_pinned=cpu is not None and config.url is None,
        )
        for repeat in range(config.repeats):
            for threads in config.threads:
                for kind in _rotated(config.pools, repeat):
                    if stop.is_set():
                        raise BenchInterrupted()
                    row = _measure_one(
                        kind, threads, url, config, stop, report, repeat, index, count
                    )
                    result.rows.append(row)
                    index += 1
    return result


def _measure_one(
    kind: str,
    threads: int,
    url: str,
    config: BenchConfig,
    stop: threading.Event,
    report: Callable[[BenchProgress], None],
    repeat: int,
    index: int,
    count: int,
) -> BenchRow:
    cap = config.cap(threads)

    def event(phase: str, elapsed: float = 0.0, ops: int = 0, row: BenchRow | None = None) -> None:
        report(
            BenchProgress(
                phase,
                elapsed,
                config.duration,
                ops,
                pool=kind,
                threads=threads,
                row=row,
                repeat=repeat,
                index=index,
                count=count,
            )
        )

    event("start")
    pool = make_bench_pool(kind, url, cap)
    try:

        def tick(elapsed: float, ops: int) -> None:
            event("run", elapsed, ops)

        ops, seconds, lat, errors = measure(pool, threads, config.duration, stop=stop, tick=tick)
        stats = pool.stats().as_dict() if isinstance(pool, FairConnectionPool) else None
    finally:
        close_pool(pool)
    lat.sort()
    row = BenchRow(
        pool=kind,
        label=POOL_LABELS[kind],
        threads=threads,
        max_connections=cap,
        ops=ops,
        seconds=seconds,
        ops_per_sec=ops / seconds if seconds > 0 else 0.0,
        p50_us=percentile(lat, 0.50) / 1000,
        p99_us=percentile(lat, 0.99) / 1000,
        max_us=(lat[-1] / 1000) if lat else 0.0,
        errors=errors,
        pool_stats=stats,
        repeat=repeat,
    )
    event("done", seconds, ops, row)
    return row
