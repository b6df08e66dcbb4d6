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
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.connection import BlockingConnectionPool as RedisBlockingConnectionPool
from redis.connection import ConnectionPool as RedisConnectionPool

from ..pool import ConnectionPool as FairConnectionPool
from .demo import parse_choice_list
from .display import mask_url
from .servers import RedisServer

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = [
    "POOL_KINDS",
    "POOL_LABELS",
    "BenchConfig",
    "BenchInterrupted",
    "BenchProgress",
    "BenchResult",
    "BenchRow",
    "BenchSummary",
    "default_cpu",
    "make_bench_pool",
    "measure",
    "parse_pools",
    "parse_threads",
    "percentile",
    "render_report",
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


AUTO = "auto"
"""``BenchConfig.cpu`` default: pin to :func:`default_cpu` where the platform allows."""


def default_cpu() -> int | None:
    """The CPU ``fairpool bench`` pins to by default: the lowest one this process may run on
    (``None`` where ``os.sched_setaffinity`` does not exist, e.g. macOS and Windows)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0] if cpus else None


@dataclass(frozen=True)
class BenchConfig:
    """Parameters of ``fairpool bench``."""

    threads: tuple[int, ...] = (1, 8, 64)
    """Thread counts to measure."""
    duration: float = 1.0
    """Seconds per measurement."""
    pools: tuple[str, ...] = POOL_KINDS
    """Pool kinds to compare (see :data:`POOL_KINDS`)."""
    url: str | None = None
    """Server to use; ``None`` starts an embedded ``redis-server``."""
    max_connections: int | None = None
    """Cap given to every pool; ``None`` = one connection per thread (nobody waits)."""
    cpu: int | str | None = AUTO
    """Pin this process (and the embedded server) to this CPU (Linux), for steadier figures:
    ``"auto"`` (default) = :func:`default_cpu`, ``None`` = no pinning."""
    repeats: int = 3
    """Interleaved repeats of every measurement (median and range are reported)."""

    def __post_init__(self) -> None:
        """Validate and normalise."""
        object.__setattr__(self, "threads", parse_threads(self.threads))
        object.__setattr__(self, "pools", parse_pools(self.pools))
        if not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1; got {self.repeats}")
        if isinstance(self.cpu, str) and self.cpu != AUTO:
            raise ValueError(f"cpu must be a CPU number, {AUTO!r} or None; got {self.cpu!r}")
        if isinstance(self.cpu, int):
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("cpu pinning needs os.sched_setaffinity (Linux)")
            if self.cpu not in os.sched_getaffinity(0):
                raise ValueError(
                    f"cpu {self.cpu} is not available; choose from "
                    f"{sorted(os.sched_getaffinity(0))}"
                )

    @property
    def pinned_cpu(self) -> int | None:
        """The CPU the run is pinned to (``None``: not pinned)."""
        return default_cpu() if self.cpu == AUTO else self.cpu  # type: ignore[return-value]

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
    repeat: int = 0
    """Which repeat (0-based) this measurement belongs to."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class BenchSummary:
    """One pool kind at one thread count over all repeats: medians and ranges."""

    pool: str
    label: str
    threads: int
    repeats: int
    ops_per_sec: float
    """Median ops/s over the repeats."""
    ops_per_sec_min: float
    ops_per_sec_max: float
    ratio: float | None
    """Median over the repeats of ops/s ÷ redis-py's ``ConnectionPool`` in the same repeat
    (``None`` when redis-py's pool was not measured)."""
    ratio_min: float | None
    ratio_max: float | None
    p50_us: float
    """Median over the repeats of the p50 latency."""
    p99_us: float
    """Median over the repeats of the p99 latency."""
    max_us: float
    """Highest latency seen in any repeat."""
    errors: int
    """Errors over all repeats."""

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
    pinned_cpu: int | None = None
    """The CPU the client (and the embedded server) ran on; ``None``: not pinned."""
    server_pinned: bool = False
    """Whether the server was pinned too (only an embedded one can be)."""

    def row(self, pool: str, threads: int, repeat: int = 0) -> BenchRow:
        """The measurement of ``pool`` at ``threads`` threads in ``repeat`` (``KeyError`` if
        absent)."""
        for r in self.rows:
            if r.pool == pool and r.threads == threads and r.repeat == repeat:
                return r
        raise KeyError((pool, threads, repeat))

    def summary(self) -> list[BenchSummary]:
        """Median and range over the repeats, per thread count and pool kind (config order)."""
        out = []
        for threads in self.config.threads:
            for kind in self.config.pools:
                rows = [r for r in self.rows if r.pool == kind and r.threads == threads]
                if not rows:
                    continue
                ratios = []
                for r in rows:
                    ref = next(
                        (
                            x
                            for x in self.rows
                            if x.pool == REFERENCE and x.threads == threads and x.repeat == r.repeat
                        ),
                        None,
                    )
                    if ref is not None and ref.ops_per_sec > 0:
                        ratios.append(r.ops_per_sec / ref.ops_per_sec)
                ops = [r.ops_per_sec for r in rows]
                out.append(
                    BenchSummary(
                        pool=kind,
                        label=POOL_LABELS[kind],
                        threads=threads,
                        repeats=len(rows),
                        ops_per_sec=statistics.median(ops),
                        ops_per_sec_min=min(ops),
                        ops_per_sec_max=max(ops),
                        ratio=statistics.median(ratios) if ratios else None,
                        ratio_min=min(ratios) if ratios else None,
                        ratio_max=max(ratios) if ratios else None,
                        p50_us=statistics.median(r.p50_us for r in rows),
                        p99_us=statistics.median(r.p99_us for r in rows),
                        max_us=max(r.max_us for r in rows),
                        errors=sum(r.errors for r in rows),
                    )
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``fairpool bench --json`` output); a password in the URL is
        masked."""
        cfg = asdict(self.config)
        cfg["threads"] = list(self.config.threads)
        cfg["pools"] = list(self.config.pools)
        cfg["url"] = mask_url(self.config.url) if self.config.url else None
        return {
            "config": cfg,
            "server": {"address": self.server, "version": self.server_version},
            "pinning": {"cpu": self.pinned_cpu, "server_pinned": self.server_pinned},
            "summary": [s.as_dict() for s in self.summary()],
            "results": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True)
class BenchProgress:
    """A progress report to :func:`run_bench`'s callback: ``phase`` is ``"start"``, ``"run"``
    (about ten times a second, with ``elapsed`` and ``ops``) or ``"done"`` (with ``row``).
    ``index`` counts the measurements from 0 up to ``count``."""

    pool: str
    threads: int
    phase: str
    elapsed: float = 0.0
    duration: float = 0.0
    ops: int = 0
    row: BenchRow | None = None
    repeat: int = 0
    index: int = 0
    count: int = 0


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
                kind, threads, phase, elapsed, config.duration, ops, row, repeat, index, count
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
        if isinstance(pool, FairConnectionPool):
            pool.shutdown()
        else:
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
        repeat=repeat,
    )
    event("done", seconds, ops, row)
    return row


def _pinning_note(result: BenchResult) -> str:
    cpu = result.pinned_cpu
    cfg = result.config
    if cpu is None:
        if cfg.cpu is None:
            return "Not pinned to a CPU (--cpu none)."
        return "Not pinned to a CPU: this platform has no os.sched_setaffinity."
    who = "Client and server" if result.server_pinned else "Client (not the --url server)"
    how = "by default; --cpu none turns it off" if cfg.cpu == AUTO else "--cpu"
    return f"{who} pinned to CPU {cpu} ({how}), as the benchmark suite does."


def _ratio_cell(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    style = "green" if ratio >= 0.97 else ("yellow" if ratio >= 0.9 else "red")
    return f"[{style}]{ratio:.2f}x[/{style}]"


def render_table(result: BenchResult) -> Table:
    """A rich table in the demo's style, one row per thread count and pool kind: median ops/s,
    the median ratio to redis-py's ``ConnectionPool`` (same repeat) with its range over the
    repeats, and the median p50 / p99 latency."""
    from .display import table as new_table

    table = new_table(
        ("threads", "right"),
        ("pool", "left"),
        ("ops/s", "right"),
        ("vs redis-py", "right"),
        ("range", "right"),
        ("p50 µs", "right"),
        ("p99 µs", "right"),
    )
    previous: int | None = None
    for s in result.summary():
        if previous is not None and s.threads != previous:
            table.add_section()
        spread = (
            f"{s.ratio_min:.2f}-{s.ratio_max:.2f}"
            if s.ratio_min is not None
            and s.ratio_max is not None
            and s.repeats > 1
            and s.pool != REFERENCE
            else ""
        )
        table.add_row(
            str(s.threads) if s.threads != previous else "",
            s.pool,
            f"{s.ops_per_sec:,.0f}",
            _ratio_cell(s.ratio),
            spread,
            f"{s.p50_us:,.0f}",
            f"[red]{s.p99_us:,.0f}*[/red]" if s.errors else f"{s.p99_us:,.0f}",
        )
        previous = s.threads
    return table


def render_report(result: BenchResult) -> RenderableType:
    """The whole ``fairpool bench`` output: title, :func:`render_table` and notes, each paragraph
    wrapped at the console's width."""
    from .display import report

    cfg = result.config
    title = (
        f"fairpool bench: PING through redis.Redis, {cfg.repeats} interleaved repeat"
        f"{'s' if cfg.repeats != 1 else ''} of {cfg.duration:g} s per pool and thread count; "
        f"server {result.server} (v{result.server_version})"
    )
    notes = [
        _pinning_note(result),
        "ops/s, p50, p99: medians over the repeats. vs redis-py: throughput ÷ redis-py's "
        "ConnectionPool measured in the same repeat, median; range: lowest to highest over the "
        "repeats (a range that spans 1.00x shows no difference that this run can measure). "
        "redis-py-blocking is redis-py's BlockingConnectionPool; lifo, fifo and round_robin "
        "are fairpool.ConnectionPool's policies.",
    ]
    failed = [f"{s.pool} x {s.threads}: {s.errors}" for s in result.summary() if s.errors]
    if failed:
        notes.append("* Calls that raised (each stops its thread): " + ", ".join(failed) + ".")
    return report(title, render_table(result), notes)
