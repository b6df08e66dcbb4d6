"""``fairpool bench``: PING throughput and latency through ``redis.Redis`` for each pool.

Compares fairpool's three policies with redis-py's own ``ConnectionPool`` and
``BlockingConnectionPool`` at several thread counts, against an embedded ``redis-server``
(default) or any server given by URL. Every pool gets the same cap (by default one connection per
thread, so nobody waits for a connection and the figures measure the pools' own overhead).

Each measurement: ``threads`` threads each dial their connection with one PING, meet at a barrier,
then PING in a loop for ``duration`` seconds, timing every call. Reported: operations per second
over the whole run and the p50 / p99 / max latency of one call in microseconds.

:func:`run_bench` returns a :class:`BenchResult` (``as_dict()`` for JSON); :func:`render_table`
presents it.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.connection import BlockingConnectionPool as RedisBlockingConnectionPool
from redis.connection import ConnectionPool as RedisConnectionPool

from .demo import parse_choice_list
from .pool import ConnectionPool as FairConnectionPool
from .servers import RedisServer

if TYPE_CHECKING:
    from rich.table import Table

__all__ = [
    "POOL_KINDS",
    "POOL_LABELS",
    "BenchConfig",
    "BenchInterrupted",
    "BenchProgress",
    "BenchResult",
    "BenchRow",
    "make_bench_pool",
    "measure",
    "parse_pools",
    "parse_threads",
    "percentile",
    "render_table",
    "run_bench",
]

POOL_KINDS: tuple[str, ...] = ("lifo", "fifo", "round_robin", "redis-py", "redis-py-blocking")
"""The pools ``fairpool bench`` compares by default."""

POOL_LABELS: dict[str, str] = {
    "lifo": "fairpool lifo",
    "fifo": "fairpool fifo",
    "round_robin": "fairpool round_robin",
    "redis-py": "redis-py ConnectionPool",
    "redis-py-blocking": "redis-py BlockingConnectionPool",
}
"""Human-readable name of each pool kind."""

REFERENCE = "redis-py"
"""The pool the others are compared with in the table."""


class BenchInterrupted(Exception):
    """The run was stopped (its ``stop`` event was set) before it finished."""


def parse_threads(text: str | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"1,8,64"`` into positive thread counts (order kept, duplicates dropped)."""
    items: list[Any] = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
            try:
                n = int(item)
            except ValueError:
                raise ValueError(f"thread count {item!r} is not an integer") from None
        else:
            n = int(item)
        if n < 1:
            raise ValueError(f"thread count must be >= 1; got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("no thread count given")
    return tuple(out)


def parse_pools(text: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"fifo,redis-py"`` into validated pool kinds (see :data:`POOL_KINDS`)."""
    aliases = {k: k for k in POOL_KINDS}
    aliases.update(
        {
            "round-robin": "round_robin",
            "rr": "round_robin",
            "redis_py": "redis-py",
            "redis": "redis-py",
            "redis_py_blocking": "redis-py-blocking",
            "blocking": "redis-py-blocking",
        }
    )
    return parse_choice_list(text, aliases, POOL_KINDS, what="pool")


@dataclass(frozen=True)
class BenchConfig:
    """Parameters of ``fairpool bench``."""

    threads: tuple[int, ...] = (1, 8, 64)
    """Thread counts to measure."""
    duration: float = 2.0
    """Seconds per measurement."""
    pools: tuple[str, ...] = POOL_KINDS
    """Pool kinds to compare (see :data:`POOL_KINDS`)."""
    url: str | None = None
    """Server to use; ``None`` starts an embedded ``redis-server``."""
    max_connections: int | None = None
    """Cap given to every pool; ``None`` = one connection per thread (nobody waits)."""
    cpu: int | None = None
    """Pin this process (and the embedded server) to this CPU (Linux), for steadier figures."""

    def __post_init__(self) -> None:
        """Validate and normalise."""
        object.__setattr__(self, "threads", parse_threads(self.threads))
        object.__setattr__(self, "pools", parse_pools(self.pools))
        if not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.cpu is not None:
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("cpu pinning needs os.sched_setaffinity (Linux)")
            if self.cpu not in os.sched_getaffinity(0):
                raise ValueError(
                    f"cpu {self.cpu} is not available; choose from "
                    f"{sorted(os.sched_getaffinity(0))}"
                )

    def cap(self, threads: int) -> int:
        """The pools' ``max_connections`` for a run with ``threads`` threads."""
        return self.max_connections if self.max_connections is not None else threads


@dataclass(frozen=True)
class BenchRow:
    """One measurement: one pool kind at one thread count."""

    pool: str
    label: str
    threads: int
    max_connections: int
    ops: int
    seconds: float
    ops_per_sec: float
    p50_us: float
    p99_us: float
    max_us: float
    errors: int
    """Calls that raised (counted, not retried; the thread stops at its first error)."""
    pool_stats: dict[str, Any] | None = None
    """``pool.stats().as_dict()`` afterwards (fairpool pools only)."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class BenchResult:
    """All measurements of a ``fairpool bench`` run."""

    config: BenchConfig
    server: str
    """``host:port`` of the server."""
    server_version: str
    rows: list[BenchRow] = field(default_factory=list)

    def row(self, pool: str, threads: int) -> BenchRow:
        """The measurement of ``pool`` at ``threads`` threads (``KeyError`` if absent)."""
        for r in self.rows:
            if r.pool == pool and r.threads == threads:
                return r
        raise KeyError((pool, threads))

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``fairpool bench --json`` output)."""
        cfg = asdict(self.config)
        cfg["threads"] = list(self.config.threads)
        cfg["pools"] = list(self.config.pools)
        return {
            "config": cfg,
            "server": {"address": self.server, "version": self.server_version},
            "results": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class BenchProgress:
    """A progress report to :func:`run_bench`'s callback: ``phase`` is ``"start"``, ``"run"``
    (about ten times a second, with ``elapsed`` and ``ops``) or ``"done"`` (with ``row``)."""

    pool: str
    threads: int
    phase: str
    elapsed: float = 0.0
    duration: float = 0.0
    ops: int = 0
    row: BenchRow | None = None


def make_bench_pool(kind: str, url: str, max_connections: int) -> RedisConnectionPool:
    """A pool of ``kind`` (see :data:`POOL_KINDS`) for ``url`` with the given cap.

    The blocking pool waits up to 20 s (redis-py's default) for a connection.
    """
    if kind == "redis-py":
        return RedisConnectionPool.from_url(url, max_connections=max_connections)
    if kind == "redis-py-blocking":
        return RedisBlockingConnectionPool.from_url(url, max_connections=max_connections)
    return FairConnectionPool.from_url(url, policy=kind, max_connections=max_connections)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, by the nearest-rank method."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])


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

    pool_threads = [
        threading.Thread(target=worker, args=(i,), name=f"fairpool-bench-{i}", daemon=True)
        for i in range(threads)
    ]
    for t in pool_threads:
        t.start()
    while not stop.is_set():
        alive = [t for t in pool_threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(0.1)
        if tick is not None and "start" in clock:
            tick(min(time.perf_counter() - clock["start"], duration), sum(counts))
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


def run_bench(
    config: BenchConfig,
    *,
    stop: threading.Event | None = None,
    progress: Callable[[BenchProgress], None] | None = None,
) -> BenchResult:
    """Measure every pool kind at every thread count (thread counts in the outer loop).

    An embedded server (if no ``config.url``) is stopped whatever happens.

    Raises:
        ServerBinaryNotFound, ServerStartError: no embedded server could be started.
        BenchInterrupted: ``stop`` was set.
    """
    stop = stop or threading.Event()
    report = progress or (lambda _event: None)
    with _server(config.url, config.cpu) as (url, address, version), _pinned(config.cpu):
        result = BenchResult(config=config, server=address, server_version=version)
        for threads in config.threads:
            for kind in config.pools:
                if stop.is_set():
                    raise BenchInterrupted()
                cap = config.cap(threads)
                report(BenchProgress(kind, threads, "start", duration=config.duration))
                pool = make_bench_pool(kind, url, cap)
                try:

                    def tick(elapsed: float, ops: int, kind: str = kind, n: int = threads) -> None:
                        report(BenchProgress(kind, n, "run", elapsed, config.duration, ops))

                    ops, seconds, lat, errors = measure(
                        pool, threads, config.duration, stop=stop, tick=tick
                    )
                    stats = pool.stats().as_dict() if isinstance(pool, FairConnectionPool) else None
                finally:
                    if isinstance(pool, FairConnectionPool):
                        pool.close()
                    pool.disconnect()
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
                )
                result.rows.append(row)
                report(BenchProgress(kind, threads, "done", seconds, config.duration, ops, row))
    return result


def render_table(result: BenchResult) -> Table:
    """A rich table: ops/s, p50 / p99 / max latency and throughput relative to redis-py's
    ``ConnectionPool`` at the same thread count."""
    from rich.table import Table

    cfg = result.config
    table = Table(
        title=(
            f"PING through redis.Redis — {cfg.duration:g} s per run, server "
            f"{result.server} (v{result.server_version})"
            + (f", pinned to CPU {cfg.cpu}" if cfg.cpu is not None else "")
        ),
        caption="vs redis-py: throughput relative to redis-py's ConnectionPool, same thread count.",
    )
    table.add_column("threads", justify="right")
    table.add_column("pool", no_wrap=True)
    table.add_column("ops/s", justify="right")
    table.add_column("vs redis-py", justify="right")
    table.add_column("p50 µs", justify="right")
    table.add_column("p99 µs", justify="right")
    table.add_column("max µs", justify="right")
    table.add_column("errors", justify="right")
    for threads in cfg.threads:
        rows = [r for r in result.rows if r.threads == threads]
        reference = next((r for r in rows if r.pool == REFERENCE), None)
        for r in rows:
            if reference is not None and reference.ops_per_sec > 0:
                ratio = r.ops_per_sec / reference.ops_per_sec
                style = "green" if ratio >= 0.97 else ("yellow" if ratio >= 0.9 else "red")
                rel = f"[{style}]{ratio:.2f}x[/{style}]"
            else:
                rel = "—"
            table.add_row(
                str(threads),
                r.label,
                f"{r.ops_per_sec:,.0f}",
                rel,
                f"{r.p50_us:,.0f}",
                f"{r.p99_us:,.0f}",
                f"{r.max_us:,.0f}",
                str(r.errors) if r.errors else "",
            )
        table.add_section()
    return table
