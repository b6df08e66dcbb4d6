"""Fixtures for the pool benchmarks (``pytest benchmarks/ --benchmark-only``).

* ``bench_server`` — one ``redis-server`` (:class:`fairpool.tools.servers.RedisServer`) for the
  session.
* ``make_pool`` — factory for the pools under comparison; closes them after the test.
* ``figures`` — a session-wide dict the benchmarks fill with their derived figures (ops/s, Jain,
  max wait...); printed as a summary at the end of the run.

CPU pinning: on a small VM the scheduler sometimes puts the client and the server on different
vCPUs and a round trip costs 2-3 times more, which makes runs bimodal. By default (Linux) the test
process and the server are pinned to the same CPU, so every pool is measured under the same
conditions. ``FAIRPOOL_BENCH_CPU=none`` disables it; ``FAIRPOOL_BENCH_CPU=N`` picks CPU N.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import fairpool
from fairpool.tools.servers import (
    RedisServer,
    ServerBinaryNotFound,
    find_redis_server,
    server_version,
)

KINDS = ("lifo", "fifo", "round_robin", "redis-py", "redis-py-blocking")
"""Pool kinds compared: fairpool's three policies and redis-py's two pools."""

Figures = dict[str, dict[str, dict[str, Any]]]
PoolFactory = Callable[..., redis.ConnectionPool]

_FIGURES: Figures = {}


def _pin_cpu() -> int | None:
    """The CPU to pin to (None = no pinning)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    setting = os.environ.get("FAIRPOOL_BENCH_CPU", "").strip().lower()
    if setting in ("none", "off", "no"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if setting:
        return int(setting)
    return cpus[0] if cpus else None


def _server_version() -> str:
    try:
        return ".".join(map(str, server_version(find_redis_server())))
    except ServerBinaryNotFound as exc:
        return f"NOT FOUND ({str(exc).splitlines()[0]})"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show the server binary, its version and the CPU pinning."""
    try:
        binary = find_redis_server()
    except ServerBinaryNotFound as exc:
        return [f"benchmarks: no redis-server ({str(exc).splitlines()[0]})"]
    version = _server_version()
    cpu = _pin_cpu()
    pin = f"pinned with the server to CPU {cpu}" if cpu is not None else "not pinned"
    return [f"benchmarks: redis-server {binary} (v{version}); client {pin}"]


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """Record the versions that matter in ``--benchmark-json`` output."""
    machine_info["redis_server"] = _server_version()
    machine_info["redis_py"] = redis.__version__
    machine_info["fairpool"] = fairpool.__version__
    machine_info["hiredis"] = _hiredis_version()
    machine_info["cpu_count"] = os.cpu_count()
    machine_info["pinned_cpu"] = _pin_cpu()
    machine_info["platform"] = platform.platform()


def pytest_benchmark_update_json(
    config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]
) -> None:
    """Add the derived figures (see ``figures``) to ``--benchmark-json`` output."""
    output_json["figures"] = _FIGURES


def _hiredis_version() -> str | None:
    try:
        import hiredis
    except ImportError:
        return None
    return str(getattr(hiredis, "__version__", "?"))


@pytest.fixture(scope="session")
def bench_server() -> Iterator[RedisServer]:
    """The session's redis-server (pinned with this process to one CPU, see the module doc)."""
    cpu = _pin_cpu()
    previous = os.sched_getaffinity(0) if cpu is not None else None
    with RedisServer(name="bench") as server:
        if cpu is not None and server.pid is not None:
            os.sched_setaffinity(server.pid, {cpu})
            os.sched_setaffinity(0, {cpu})
        try:
            yield server
        finally:
            if previous is not None:
                os.sched_setaffinity(0, previous)


@pytest.fixture
def make_pool(bench_server: RedisServer) -> Iterator[PoolFactory]:
    """Factory ``make_pool(kind, max_connections=..., block=False, timeout=20)``.

    ``kind`` is a fairpool policy (``block=True`` gives a :class:`fairpool.BlockingConnectionPool`)
    or ``"redis-py"`` / ``"redis-py-blocking"``. Every pool is closed after the test.
    """
    pools: list[redis.ConnectionPool] = []

    def factory(
        kind: str, max_connections: int = 100, block: bool = False, timeout: float = 20
    ) -> redis.ConnectionPool:
        url = bench_server.url
        pool: redis.ConnectionPool
        if kind == "redis-py":
            pool = redis.ConnectionPool.from_url(url, max_connections=max_connections)
        elif kind == "redis-py-blocking":
            pool = redis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout
            )
        elif block:
            pool = fairpool.BlockingConnectionPool.from_url(
                url, policy=kind, max_connections=max_connections, timeout=timeout
            )
        else:
            pool = fairpool.ConnectionPool.from_url(
                url, policy=kind, max_connections=max_connections
            )
        pools.append(pool)
        return pool

    yield factory
    for pool in pools:
        if isinstance(pool, fairpool.ConnectionPool):
            pool.close()
        pool.disconnect()


@pytest.fixture(scope="session")
def figures() -> Figures:
    """``figures[group][name] = {...}``: derived figures, summarised at the end of the run."""
    return _FIGURES


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the derived figures, with the ratios the targets are about."""
    if not _FIGURES:
        return
    tr = terminalreporter
    tr.section("fairpool benchmark figures")
    borrow = _FIGURES.get("borrow_release", {})
    if borrow:
        ref = borrow.get("redis-py", {}).get("us")
        tr.write_line("borrow+release of a warm connection, one thread (median µs; ÷ redis-py):")
        for name, f in borrow.items():
            tr.write_line(f"  {name:<20} {f['us']:8.2f} µs   {_ratio(f['us'], ref)}")
    for group in sorted(g for g in _FIGURES if g.startswith("ping_")):
        rows = _FIGURES[group]
        ref = rows.get("redis-py", {}).get("ops_per_sec")
        tr.write_line(f"{group} (median ops/s; ÷ redis-py ConnectionPool):")
        for name, f in rows.items():
            tr.write_line(
                f"  {name:<20} {f['ops_per_sec']:10,.0f}   {_ratio(f['ops_per_sec'], ref)}"
            )
    crowd = _FIGURES.get("crowd", {})
    if crowd:
        tr.write_line("crowd: T threads on a blocking pool of 16 connections:")
        for name, f in crowd.items():
            tr.write_line(
                f"  {name:<26} {f['ops_per_sec']:10,.0f} ops/s"
                f"  vs16={f.get('vs_16_threads', '-')}"
                f"  served {f['threads_served']}/{f['threads']}"
                f"  Jain(threads) {f['jain_threads']:.2f}"
                f"  max wait {f['max_wait_ms']:.1f} ms"
            )
    faults = _FIGURES.get("faults", {})
    if faults:
        tr.write_line("faults (benchmarks/test_bench_faults.py):")
        for name, f in faults.items():
            tr.write_line(f"  {name:<42} " + "  ".join(f"{k}={v}" for k, v in f.items()))
    fair = _FIGURES.get("fairness", {})
    if fair:
        tr.write_line("fairness scenario (commands per proxy, read from the servers):")
        for name, f in fair.items():
            tr.write_line(
                f"  {name:<12} Jain {f['jain']:.2f}  max/mean {f['max_mean']:.2f}  "
                f"commands {f['commands']}"
            )
