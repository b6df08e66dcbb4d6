"""Running the scenario of ``fairpool demo``: a burst, then a steady load, per policy.

:func:`run_scenario` runs one policy on servers you started; :func:`run_demo` starts the servers
and runs every policy of a :class:`~.model.DemoConfig`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.connection import ConnectionPool as RedisConnectionPool

from ..._compat import borrow_args
from ...pool import ConnectionPool as FairConnectionPool
from ...stats import fairness
from .._load import close_pool, run_workers
from ..servers import RedisServer, ServerGroup, find_redis_server, server_version
from .balancer import BalancedConnection, RoundRobinBalancer
from .measure import ProxyCounters
from .model import (
    POLICY_LABELS,
    REFERENCE,
    DemoConfig,
    DemoInterrupted,
    DemoProgress,
    DemoResult,
    PolicyResult,
    ProgressCallback,
)

__all__ = ["LOAD_KEY", "make_pool", "run_demo", "run_scenario"]

LOAD_KEY = "fairpool:demo"
"""The key the steady load increments."""


def make_pool(
    policy: str,
    balancer: RoundRobinBalancer,
    *,
    max_connections: int = 100,
    idle_timeout: float | None = None,
    min_idle: int = 0,
) -> RedisConnectionPool:
    """A fresh pool for ``policy`` whose connections are spread by ``balancer``.

    ``"redis-py"`` gives redis-py's own ``redis.ConnectionPool`` (``idle_timeout`` and
    ``min_idle`` do not apply); the other names give a :class:`fairpool.ConnectionPool` with that
    policy.
    """
    balanced: dict[str, Any] = {
        "connection_class": BalancedConnection,
        "max_connections": max_connections,
        "balancer": balancer,
    }
    if policy == REFERENCE:
        return RedisConnectionPool(**balanced)
    return FairConnectionPool(
        policy=policy, idle_timeout=idle_timeout, min_idle=min_idle, **balanced
    )


def _burst(
    pool: RedisConnectionPool, n: int, hold: float, stop: threading.Event
) -> list[BaseException]:
    """``n`` threads borrow a connection each, PING, wait until all hold one, hold, release."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker(_: int) -> None:
        conn: Any = None
        try:
            conn = pool.get_connection(*borrow_args(pool))
            conn.send_command("PING")
            conn.read_response()
            barrier.wait(timeout=30)
            stop.wait(hold)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # reported to the caller
            errors.append(exc)
            barrier.abort()
        finally:
            if conn is not None:
                pool.release(conn)

    try:
        run_workers(worker, n, "fairpool-demo-burst", stop)
    finally:
        if stop.is_set():
            barrier.abort()
    return errors


def _load(
    pool: RedisConnectionPool,
    concurrency: int,
    duration: float,
    stop: threading.Event,
    tick: Callable[[float, int], None] | None,
) -> tuple[int, float, list[BaseException]]:
    """``concurrency`` threads INCR through ``redis.Redis`` for ``duration`` seconds.

    Returns (operations, seconds, errors).
    """
    client = redis.Redis(connection_pool=pool)
    counts = [0] * concurrency
    errors: list[BaseException] = []
    start = time.perf_counter()
    deadline = start + duration

    def worker(i: int) -> None:
        incr = client.incr
        n = 0
        try:
            while not stop.is_set() and time.perf_counter() < deadline:
                incr(LOAD_KEY)
                n += 1
                if not n & 63:
                    counts[i] = n
        except BaseException as exc:
            errors.append(exc)
        finally:
            counts[i] = n

    def report() -> None:
        if tick is not None:
            tick(min(time.perf_counter() - start, duration), sum(counts))

    run_workers(worker, concurrency, "fairpool-demo-load", stop, report)
    return sum(counts), time.perf_counter() - start, errors


def run_scenario(
    policy: str,
    servers: Sequence[RedisServer],
    config: DemoConfig,
    *,
    admin: ProxyCounters | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyResult:
    """Run the burst-then-steady-load scenario for one policy on fresh connections.

    ``servers`` must be running and otherwise unused. The servers' stats are reset first
    (``CONFIG RESETSTAT``) and the commands are counted from ``INFO commandstats`` snapshots taken
    after the burst and after the load. The pool is closed and its connections are gone (as far as
    the servers can tell, within 2 s) when this returns.

    Raises:
        DemoInterrupted: ``stop`` was set.
        Exception: the first error a burst or load thread hit.
    """
    stop = stop or threading.Event()
    own_admin = admin is None
    admin = admin or ProxyCounters(servers)
    report = progress or (lambda _event: None)
    balancer = RoundRobinBalancer([(s.host, s.port) for s in servers])
    pool = make_pool(
        policy,
        balancer,
        max_connections=config.max_connections,
        idle_timeout=config.idle_timeout,
        min_idle=config.min_idle,
    )
    try:
        admin.wait_idle()
        admin.reset_stats()
        report(DemoProgress(phase="burst", duration=config.duration, policy=policy))
        errors = _burst(pool, config.burst, config.hold, stop)
        if stop.is_set():
            raise DemoInterrupted()
        if errors:
            raise errors[0]
        burst_connections = admin.connections()
        before = admin.commands()
        timeline: list[tuple[float, int]] = [(0.0, sum(burst_connections))]

        def snapshot(ops: int, seconds: float, final: bool = False) -> PolicyResult:
            """The figures so far, read from the servers (the pool's own stats when final)."""
            connections = admin.connections()
            commands = [max(0, a - b) for a, b in zip(admin.commands(), before, strict=True)]
            timeline.append((round(seconds, 3), sum(connections)))
            fair = fairness(commands)
            pool_stats: dict[str, Any] | None = None
            closed: dict[str, int] | None = None
            created = sum(balancer.dials)
            if final and isinstance(pool, FairConnectionPool):
                st = pool.stats()
                created = st.created
                closed = dict(st.closed)
                pool_stats = st.as_dict()
            return PolicyResult(
                policy=policy,
                label=POLICY_LABELS.get(policy, policy),
                commands=commands,
                client_ops=ops,
                seconds=seconds,
                max_mean=fair.max_mean,
                jain=fair.jain,
                burst_connections=burst_connections,
                end_connections=connections,
                created=created,
                closed=closed,
                pool_stats=pool_stats,
                timeline=list(timeline),
            )

        next_sample = [config.sample_interval]

        def tick(elapsed: float, ops: int) -> None:
            partial = None
            if elapsed >= next_sample[0] and elapsed < config.duration:
                next_sample[0] = elapsed + config.sample_interval
                partial = snapshot(ops, elapsed)
            report(
                DemoProgress("load", elapsed, config.duration, ops, policy=policy, result=partial)
            )

        ops, seconds, errors = _load(pool, config.concurrency, config.duration, stop, tick)
        if stop.is_set():
            raise DemoInterrupted()
        if errors:
            raise errors[0]
        result = snapshot(ops, seconds, final=True)
        report(DemoProgress("done", seconds, config.duration, ops, policy=policy, result=result))
        return result
    finally:
        close_pool(pool)
        if not stop.is_set():
            with contextlib.suppress(Exception):
                admin.wait_idle()
        if own_admin:
            admin.close()


def run_demo(
    config: DemoConfig,
    *,
    binary: str | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    on_servers: Callable[[ServerGroup], None] | None = None,
) -> DemoResult:
    """Start ``config.proxies`` servers, run :func:`run_scenario` for every policy, stop them.

    The servers are stopped whatever happens (an error, ``KeyboardInterrupt``, ``stop`` set).
    ``on_servers`` is called once they are up.

    Raises:
        ServerBinaryNotFound: no ``redis-server`` (see
            :func:`fairpool.tools.servers.find_redis_server`).
        ServerStartError: a server did not start.
        DemoInterrupted: ``stop`` was set.
    """
    binary = binary or find_redis_server()
    version = ".".join(map(str, server_version(binary)))
    stop = stop or threading.Event()
    group = ServerGroup(config.proxies, binary=binary, name="proxy")
    with group:
        if on_servers is not None:
            on_servers(group)
        result = DemoResult(
            config=config,
            server_binary=binary,
            server_version=version,
            proxies=[f"{s.host}:{s.port}" for s in group],
        )
        admin = ProxyCounters(group.servers)
        try:
            for policy in config.policies:
                if stop.is_set():
                    raise DemoInterrupted()
                if progress is not None:
                    progress(DemoProgress(phase="start", duration=config.duration, policy=policy))
                result.results.append(
                    run_scenario(
                        policy, group.servers, config, admin=admin, stop=stop, progress=progress
                    )
                )
        finally:
            admin.close()
    return result
