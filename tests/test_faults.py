"""Faults against real redis-servers, fairpool and redis-py's pools side by side on the same input
(issue 16): dead connections on a busy pool, stalls and restarts, a flaky network path, an endpoint
down and back, and a cancellation storm on a fresh asyncio pool. The scenario drivers are in
:mod:`fairpool.tools.faults` (the fault benchmarks use the same ones, for longer)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

import fairpool
import fairpool.asyncio as fasync
from fairpool.tools.faults import (
    FlakyProxy,
    KillStorm,
    alternate,
    alternate_async,
    cancel_storm,
    endpoint_outage,
    excess,
    excess_df,
    restart,
    stall,
    t_quantile,
    under_load,
)
from fairpool.tools.servers import RedisServer

from .helpers import NO_RETRY

Servers = Callable[..., list[RedisServer]]


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def exact(stats: fairpool.PoolStats) -> None:
    """Counters add up: every connection created is open, being closed counted, nothing else."""
    assert stats.created == stats.open + stats.closed_total, stats
    assert stats.open == stats.idle + stats.in_use, stats


# --------------------------------------------------------- 1. dead connections on a busy pool
def test_killed_idle_connections_never_reach_callers_sync(redis_servers: Servers) -> None:
    """The issue's repro: 4 connections idle for 0.1 s (less than health_check_after) are
    killed by the server; 8 PINGs with retries off. redis-py's pool: no error; fairpool: none."""
    (server,) = redis_servers(1)
    errors = {}
    for kind in ("fairpool", "redis-py"):
        cls = fairpool.ConnectionPool if kind == "fairpool" else redis.ConnectionPool
        pool = cls(host=server.host, port=server.port)
        r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
        conns = [pool.get_connection() for _ in range(4)]
        for c in conns:
            pool.release(c)
        with server.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        time.sleep(0.1)
        errors[kind] = 0
        for _ in range(8):
            try:
                r.ping()
            except (redis.ConnectionError, redis.TimeoutError):
                errors[kind] += 1
        pool.disconnect()
    assert errors == {"fairpool": 0, "redis-py": 0}


def test_killed_idle_connections_never_reach_callers_asyncio(redis_servers: Servers) -> None:
    (server,) = redis_servers(1)

    async def run(kind: str) -> int:
        cls = fasync.ConnectionPool if kind == "fairpool" else aredis.ConnectionPool
        pool = cls(host=server.host, port=server.port)
        r = aredis.Redis(connection_pool=pool, retry=AsyncRetry(NoBackoff(), 0))
        conns = [await pool.get_connection() for _ in range(4)]
        for c in conns:
            await pool.release(c)
        with server.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        await asyncio.sleep(0.1)
        errors = 0
        for _ in range(8):
            try:
                await r.ping()
            except (redis.ConnectionError, redis.TimeoutError):
                errors += 1
        await pool.disconnect()
        return errors

    fp = asyncio.run(run("fairpool"))
    rp = asyncio.run(run("redis-py"))
    assert fp == 0 and fp <= rp


class _Counting(redis.Connection):
    closes = 0

    def disconnect(self, *args: Any) -> None:
        type(self).closes += 1
        super().disconnect(*args)


class _ACounting(aredis.Connection):
    closes = 0

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        type(self).closes += 1
        await super().disconnect(*args, **kwargs)


def _dead_idle_closes(stats: fairpool.PoolStats, later: int) -> None:
    """fairpool after the first borrow and its release: one new connection; the six dead ones
    retired by the borrow and closed by the release."""
    assert later == 6
    assert stats.created == 7 and stats.open == 1 and stats.closed["health_check"] == 6
    exact(stats)


def test_first_borrow_after_a_mass_disconnect_dials_at_once_sync(redis_servers: Servers) -> None:
    """Six idle connections killed by the server: the first borrow closes on its own path fewer
    connections than redis-py's pool does (redis-py closes the one it popped and reconnects it
    in place; fairpool retires the one it took and, after one poll of each, the other five, and
    the release closes them), and it dials once."""
    (server,) = redis_servers(1)
    closes = {}
    for kind in ("fairpool", "redis-py"):
        cls = fairpool.ConnectionPool if kind == "fairpool" else redis.ConnectionPool
        pool = cls(host=server.host, port=server.port, connection_class=_Counting)
        conns = [pool.get_connection() for _ in range(6)]
        for c in conns:
            pool.release(c)
        with server.client() as admin:
            assert admin.client_kill_filter(_type="normal", skipme=True) == 6
        time.sleep(0.1)
        _Counting.closes = 0
        conn = pool.get_connection()
        closes[kind] = _Counting.closes
        conn.send_command("PING")
        assert conn.read_response() in (b"PONG", "PONG", True)
        if kind == "fairpool":
            later = len(pool._core.later)
        pool.release(conn)
        if kind == "fairpool":
            _dead_idle_closes(pool.stats(), later)
            assert _Counting.closes == 6
        pool.disconnect()
    assert closes["fairpool"] < closes["redis-py"] == 1


def test_first_borrow_after_a_mass_disconnect_dials_at_once_asyncio(
    redis_servers: Servers,
) -> None:
    """As the sync test; redis.asyncio 7+ may even hand out the first dead connection (it skips
    its "Connection has data" check when maintenance notifications are on)."""
    (server,) = redis_servers(1)

    async def run(kind: str) -> tuple[int, int, int, Any]:
        """Closes on the borrow's path (-1: the connection handed out was dead), deferred closes,
        closes after the release, stats."""
        cls = fasync.ConnectionPool if kind == "fairpool" else aredis.ConnectionPool
        pool = cls(host=server.host, port=server.port, connection_class=_ACounting)
        conns = [await pool.get_connection() for _ in range(6)]
        for c in conns:
            await pool.release(c)
        with server.client() as admin:
            assert admin.client_kill_filter(_type="normal", skipme=True) == 6
        await asyncio.sleep(0.1)
        _ACounting.closes = 0
        conn = await pool.get_connection()
        closes = _ACounting.closes
        try:
            await conn.send_command("PING")
            assert await conn.read_response() in (b"PONG", "PONG", True)
        except redis.ConnectionError:
            # redis.asyncio 7+ skips its "Connection has data" check when maintenance
            # notifications are on (docs/migrating.md): it may hand out a dead connection
            assert kind == "redis-py"
            closes = -1
        later = len(pool._core.later) if kind == "fairpool" else 0
        await pool.release(conn)
        stats = pool.stats() if kind == "fairpool" else None
        after = _ACounting.closes
        await pool.disconnect()
        return closes, later, after, stats

    fp_closes, later, after, stats = asyncio.run(run("fairpool"))
    rp_closes = asyncio.run(run("redis-py"))[0]
    assert fp_closes == 0 and rp_closes in (1, -1)  # -1: redis-py handed out a dead one
    _dead_idle_closes(stats, later)
    assert after == 6


LOADS = {"back_to_back": 0.0, "think_50ms": 0.05, "think_400ms": 0.4}

#: A kill-storm comparison: per pool, STORMS storms of SECONDS (kills every 200 ms), alternating.
STORMS, SECONDS = 4, 0.6

#: One-sided significance level of each kill-storm assertion (see ``not_worse``).
ALPHA = 0.005


def within_noise(count: int, reference: float) -> bool:
    """``count`` is no more than ``reference`` up to counting noise: errors are rare events,
    so three standard deviations of a Poisson count, plus two."""
    return count <= reference + 3 * math.sqrt(reference) + 2


def not_worse(fp: KillStorm, rp: KillStorm) -> None:
    """fairpool against redis-py, each the sum of ``STORMS`` short storms run alternately (ABBA)
    on the same server. Every error is attributed (``KillStorm``): *in flight* or *racing* (the
    caller was under way while the kill ran: no pool can save it), *stale* or *other* (the
    pool's doing). Asserted:

    (i) avoidable (stale + other) errors per killed connection are not above redis-py's;
    (ii) all errors per killed connection — issue 16's measure — are not above redis-py's.

    "Not above" is a one-sided Welch test at level ``ALPHA`` with the storm as the independent
    unit (``excess``: the ratio estimator's standard error over the storms, compared with the
    *t* quantile at the Welch-Satterthwaite degrees of freedom). The storm, not the error, is the
    unit because errors come in clusters — one kill fails every command in flight at once, and
    how many are in flight drifts with the machine's load — so a Poisson bound on error counts
    is far too tight (single 4 s runs of the *same* pool range several-fold), and even kills of
    one storm are correlated (measured: a per-kill standard error gave t = 4.4 between two
    alternations of the same two pools that gave t = -1.9 the run before). The test fails only if
    fairpool is worse by more than chance explains at 0.5 % (per assertion, 12 in all: about 6 %
    of runs would fail somewhere if the pools were exactly equal at every load, much less since
    fairpool is below redis-py at most). It can fail: with ``health_check="none"`` (fairpool
    before issue 16) the avoidable errors at the think-time loads are tens to hundreds per run
    against redis-py's 0, far beyond the bound.
    """
    for measure in ("avoidable", "errors"):
        t = excess(fp, rp, measure, "killed")
        bound = t_quantile(1 - ALPHA, excess_df(fp, rp, measure, "killed"))
        assert t <= bound, (measure, round(t, 2), round(bound, 2), fp, rp)


def _row(storm: KillStorm) -> str:
    return (
        f"errors {storm.errors} (in flight {storm.in_flight}, racing {storm.racing}, "
        f"stale {storm.stale}, other {storm.other}) / killed {storm.kills} = "
        f"{storm.per_kill:.3f}; exposed {storm.exposed}, {storm.per_exposed:.3f} per caller "
        f"under way; commands {storm.commands}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("load", list(LOADS))
def test_kill_storm_errors_per_kill_sync(redis_servers: Servers, load: str) -> None:
    """32 threads, every client connection killed every 200 ms, retries off: caller errors per
    killed connection, fairpool (default settings) against redis-py's ConnectionPool, in
    alternating short storms (see ``not_worse``)."""
    (server,) = redis_servers(1)
    before = fds()
    pools = {
        "fairpool": fairpool.ConnectionPool(host=server.host, port=server.port),
        "redis-py": redis.ConnectionPool(host=server.host, port=server.port),
    }
    out = alternate(
        pools, server.host, server.port, storms=STORMS, think=LOADS[load], seconds=SECONDS
    )
    fp, rp = out["fairpool"], out["redis-py"]
    print(f"\nsync {load}\n  fairpool {_row(fp)}\n  redis-py {_row(rp)}")
    assert fp.kills > 0 and rp.kills > 0 and fp.misrouted == rp.misrouted == 0
    not_worse(fp, rp)
    exact(pools["fairpool"].stats())
    pools["fairpool"].shutdown()
    pools["redis-py"].disconnect()
    assert fds() <= before


@pytest.mark.slow
@pytest.mark.parametrize("load", list(LOADS))
def test_kill_storm_errors_per_kill_asyncio(redis_servers: Servers, load: str) -> None:
    (server,) = redis_servers(1)
    before = fds()

    async def run() -> tuple[dict[str, KillStorm], fairpool.PoolStats]:
        pools = {
            "fairpool": fasync.ConnectionPool(host=server.host, port=server.port),
            "redis-py": aredis.ConnectionPool(host=server.host, port=server.port),
        }
        out = await alternate_async(
            pools, server.host, server.port, storms=STORMS, think=LOADS[load], seconds=SECONDS
        )
        stats = pools["fairpool"].stats()
        await pools["fairpool"].ashutdown()
        await pools["redis-py"].disconnect()
        return out, stats

    out, stats = asyncio.run(run())
    fp, rp = out["fairpool"], out["redis-py"]
    print(f"\nasyncio {load}\n  fairpool {_row(fp)}\n  redis-py {_row(rp)}")
    assert fp.kills > 0 and rp.kills > 0 and fp.misrouted == rp.misrouted == 0
    not_worse(fp, rp)
    exact(stats)
    assert fds() <= before


@pytest.mark.slow
def test_kill_storm_live_connections_per_kill_sync(redis_servers: Servers) -> None:
    """32 threads, think time up to 50 ms, every client connection killed every 200 ms: per kill
    event, fairpool's callers see no more errors than redis-py's ConnectionPool's (same one-sided
    Welch test as ``not_worse``, over more, longer storms). redis-py reconnects its connection
    objects in place; fairpool replaces each dead one with a new object, and a new connection used
    to resolve the driver info (``CLIENT SETINFO``) from the installed packages' metadata — ~0.6 ms
    of CPU each, which made every dial of the burst after a kill take ~20 ms, the burst grow and
    the pool with it: about 22 connections alive at each kill against redis-py's 8."""
    (server,) = redis_servers(1)
    pools = {
        "fairpool": fairpool.ConnectionPool(host=server.host, port=server.port),
        "redis-py": redis.ConnectionPool(host=server.host, port=server.port),
    }
    out = alternate(pools, server.host, server.port, storms=8, think=0.05, seconds=1.0)
    fp, rp = out["fairpool"], out["redis-py"]
    print(f"\nsync think_50ms\n  fairpool {_row(fp)}\n  redis-py {_row(rp)}")
    # What callers meet per kill event: no more errors than with redis-py (Welch, as above).
    t = excess(fp, rp, "errors", "kills")
    bound = t_quantile(1 - ALPHA, excess_df(fp, rp, "errors", "kills"))
    assert t <= bound, ("errors", round(t, 2), round(bound, 2), fp, rp)
    # Connections alive at each kill are reported, not asserted: 1.2-1.9 times redis-py's in
    # runs on a quiet machine (fairpool replaces a dead connection with a new object where
    # redis-py reconnects the old one in place, and its first borrow after a kill discards the
    # dead idle ones, so a few more callers dial). The driver-info lookup that made it 2.3-2.9
    # times is guarded by tests/test_pool.py's driver-info tests.
    alive = [sum(r.killed for r in x.rows) / max(1, sum(r.kills for r in x.rows)) for x in (fp, rp)]
    print(f"  connections alive per kill: fairpool {alive[0]:.1f}, redis-py {alive[1]:.1f}")
    pools["fairpool"].shutdown()
    pools["redis-py"].disconnect()


# ------------------------------------------------------------------- stalls, restarts, network
@pytest.mark.slow
def test_restart_and_stall_fairpool_against_redis_py(redis_servers: Servers) -> None:
    """A server killed and restarted, then stopped (SIGSTOP) for 2 s with socket_timeout=1,
    under 32 threads: fairpool's blocking pool makes no more errors than redis-py's, every
    thread succeeds again after the fault, no fd leaks, counters exact."""
    (server,) = redis_servers(1)
    before = fds()
    results = {}
    for kind in ("fairpool", "redis-py-blocking"):
        for fault, make_fault, timeout in (
            ("restart", lambda: restart(server), 2),
            ("stall", lambda: stall(server, 2.0), 1),
        ):
            cls = (
                fairpool.BlockingConnectionPool
                if kind == "fairpool"
                else redis.BlockingConnectionPool
            )
            pool = cls(host=server.host, port=server.port, max_connections=16, timeout=5)
            pool.connection_kwargs["socket_timeout"] = timeout
            results[kind, fault] = under_load(pool, make_fault(), after=2.5)
            if isinstance(pool, fairpool.ConnectionPool):
                exact(pool.stats())
                pool.shutdown()
            else:
                pool.disconnect()
    for fault in ("restart", "stall"):
        fp, rp = results["fairpool", fault], results["redis-py-blocking", fault]
        assert fp.misrouted == 0 and rp.misrouted == 0
        assert fp.recovered_after is not None, (fault, fp)  # every thread served again
        assert within_noise(fp.errors, rp.errors), (fault, fp, rp)
    assert fds() <= before


@pytest.mark.slow
def test_flaky_proxy_never_misroutes_a_reply(redis_servers: Servers) -> None:
    """Through a proxy that delays chunks (up to 2 ms, socket_timeout 0.5) and resets a connection
    every 50 ms: no reply ever reaches the wrong caller, fairpool's errors are no more than
    redis-py's per reset, and no fd leaks."""
    (server,) = redis_servers(1)
    before = fds()
    results = {}
    with FlakyProxy(server.host, server.port) as proxy:
        for kind in ("redis-py", "fairpool"):
            cls = fairpool.ConnectionPool if kind == "fairpool" else redis.ConnectionPool
            pool = cls(host="127.0.0.1", port=proxy.port, socket_timeout=0.5)
            resets = proxy.resets
            load = under_load(pool, None, threads=16, after=1.5)
            results[kind] = (load, proxy.resets - resets)
            if isinstance(pool, fairpool.ConnectionPool):
                exact(pool.stats())
                pool.shutdown()
            else:
                pool.disconnect()
    (fp, fp_resets), (rp, rp_resets) = results["fairpool"], results["redis-py"]
    assert fp.misrouted == 0 and rp.misrouted == 0
    assert fp.commands > 0 and fp_resets > 0
    assert fp.errors / fp_resets <= rp.errors / max(1, rp_resets) * 1.2 + 0.5, results
    time.sleep(0.1)
    assert fds() <= before


# ----------------------------------------------------------------- 2. an endpoint down and back
@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fifo", "round_robin", "lifo"])
def test_endpoint_down_and_back_gets_its_share_soon(redis_servers: Servers, policy: str) -> None:
    """4 endpoints, 32 busy threads, one endpoint stopped for 3 s: a handful of errors, and soon
    after it is back it holds its share of the connections (8 of 32, within one) under every
    policy. (Measured within ~1 s; the bound is generous for a loaded CI machine.)"""
    servers = redis_servers(4, name="proxy")
    before = fds()
    pool = fairpool.ConnectionPool(
        endpoints=[f"{s.host}:{s.port}" for s in servers],
        max_connections=32,
        policy=policy,
        socket_timeout=2,
        socket_connect_timeout=1,
    )
    outage = endpoint_outage(pool, servers, down=1, outage=3.0, allow=8.0)
    assert outage.recovered_after is not None and outage.recovered_after < 6.0, outage
    # The endpoint's 8 connections fail the commands in flight on them; nothing else should:
    # rebalancing never takes a free place a caller needs (this pool does not block, so that
    # caller would fail; before that fix 6-37 errors per outage, now 0-8).
    assert outage.errors <= 16, outage
    exact(pool.stats())
    pool.shutdown()
    time.sleep(0.1)
    assert fds() <= before


# ---------------------------------------------------------------- 3. asyncio cancellation storm
@pytest.mark.slow
def test_cancellation_storm_warms_the_pool(redis_servers: Servers) -> None:
    """300 tasks, each GET under wait_for with a 1-20 ms deadline, on a fresh
    BlockingConnectionPool(max_connections=50): fairpool completes at least as many commands as
    redis.asyncio's pool (best of two paired runs, for noise) and reaches its cap; nothing
    leaks and the counters are exact after ashutdown()."""
    (server,) = redis_servers(1)
    before = fds()

    async def run(kind: str) -> tuple[int, Any]:
        def make() -> Any:
            cls = (
                fasync.BlockingConnectionPool
                if kind == "fairpool"
                else aredis.BlockingConnectionPool
            )
            return cls(host=server.host, port=server.port, max_connections=50)

        storm, pool = await cancel_storm(make, seconds=2.0)
        stats = None
        if kind == "fairpool":
            stats = pool.stats()
            await pool.ashutdown()
            after = pool.stats()
            assert (after.open, after.dialling) == (0, 0), after
            exact(after)
        else:
            await pool.disconnect()
        return storm.commands, stats

    ok = False
    for _ in range(2):
        rp, _ = asyncio.run(run("redis-py"))
        fp, stats = asyncio.run(run("fairpool"))
        assert stats.created >= 50 and stats.open + stats.dialling == 50, stats  # at the cap
        if fp >= rp:
            ok = True
            break
    assert ok, (fp, rp)
    time.sleep(0.1)
    assert fds() <= before
