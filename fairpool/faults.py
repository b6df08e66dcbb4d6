"""Fault scenarios against real redis-servers, run the same way on fairpool's pools and on
redis-py's (the tests in ``tests/test_faults.py`` and the fault section of ``benchmarks/`` both use
them). Every scenario is bounded in time, sends traffic only to the loopback servers it is given,
and returns plain counts; what is good enough is decided by the caller.

* :func:`kill_storm` / :func:`kill_storm_async` — callers under load while another client
  ``CLIENT KILL TYPE normal``-s every connection at a fixed period: caller errors per killed
  connection (client retries off, so every dead connection handed out shows).
* :func:`cancel_storm` — asyncio tasks borrowing under ``asyncio.wait_for`` with 1-20 ms
  deadlines on a fresh blocking pool: commands completed, connections created.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as ARetry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

__all__ = ["KillStorm", "cancel_storm", "kill_storm", "kill_storm_async"]

_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


def no_retry() -> Retry:
    """Client retries off: a dead connection handed to a caller shows up as an error."""
    return Retry(NoBackoff(), 0)


@dataclass
class KillStorm:
    """The outcome of one kill storm."""

    commands: int
    """Commands that succeeded."""
    errors: int
    """Commands that failed (a connection error reached the caller)."""
    kills: int
    """Client connections the server killed (``CLIENT KILL``'s replies, summed)."""

    @property
    def per_kill(self) -> float:
        """Caller errors per killed connection."""
        return self.errors / max(1, self.kills)


def _kill_loop(host: str, port: int, stop: threading.Event, period: float, out: list[int]) -> None:
    admin = redis.Redis(host=host, port=port)
    try:
        while not stop.wait(period):
            reply = admin.execute_command(  # type: ignore[no-untyped-call]
                "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
            )
            out.append(int(reply))
    finally:
        admin.close()


def kill_storm(
    pool: Any,
    host: str,
    port: int,
    *,
    threads: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
) -> KillStorm:
    """``threads`` threads PING through ``pool`` (sleeping a random 0-``think`` s between
    commands) while every normal client connection is killed every ``period`` s, for ``seconds``.
    """
    client = redis.Redis(connection_pool=pool, retry=no_retry())
    client.ping()
    stop = threading.Event()
    ok = [0] * threads
    bad = [0] * threads
    kills: list[int] = []

    def work(i: int) -> None:
        rnd = random.Random(i)
        while not stop.is_set():
            try:
                client.ping()
                ok[i] += 1
            except _ERRORS:
                bad[i] += 1
            if think:
                time.sleep(rnd.uniform(0, think))

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    killer = threading.Thread(
        target=_kill_loop, args=(host, port, stop, period, kills), daemon=True
    )
    for t in workers:
        t.start()
    time.sleep(min(0.3, seconds / 4))  # every thread in its loop, the pool warm
    killer.start()
    time.sleep(seconds)
    stop.set()
    killer.join(10)
    for t in workers:
        t.join(10)
    return KillStorm(commands=sum(ok), errors=sum(bad), kills=sum(kills))


async def kill_storm_async(
    pool: Any,
    host: str,
    port: int,
    *,
    tasks: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
) -> KillStorm:
    """:func:`kill_storm` for asyncio pools: ``tasks`` tasks PING through ``pool``."""
    client = aredis.Redis(connection_pool=pool, retry=ARetry(NoBackoff(), 0))
    await client.ping()
    stop = asyncio.Event()
    ok = [0] * tasks
    bad = [0] * tasks
    kills: list[int] = []

    async def work(i: int) -> None:
        rnd = random.Random(i)
        while not stop.is_set():
            try:
                await client.ping()
                ok[i] += 1
            except _ERRORS:
                bad[i] += 1
            await asyncio.sleep(rnd.uniform(0, think) if think else 0)

    async def killer() -> None:
        admin = aredis.Redis(host=host, port=port)
        try:
            while True:
                with_timeout = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({with_timeout}, timeout=period)
                if done:
                    return
                with_timeout.cancel()
                reply = await admin.execute_command(  # type: ignore[no-untyped-call]
                    "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
                )
                kills.append(int(reply))
        finally:
            await admin.aclose()

    workers = [asyncio.ensure_future(work(i)) for i in range(tasks)]
    await asyncio.sleep(min(0.3, seconds / 4))
    kill_task = asyncio.ensure_future(killer())
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(kill_task, *workers)
    return KillStorm(commands=sum(ok), errors=sum(bad), kills=sum(kills))


@dataclass
class CancelStorm:
    """The outcome of one cancellation storm."""

    commands: int
    """Commands completed within their deadline."""
    cancelled: int
    """Calls cut off by their deadline."""
    errors: int
    """Calls that failed otherwise."""


async def cancel_storm(
    make_pool: Callable[[], Any],
    *,
    tasks: int = 300,
    seconds: float = 3.0,
    deadline: tuple[float, float] = (0.001, 0.020),
) -> tuple[CancelStorm, Any]:
    """``tasks`` tasks ``GET`` through a fresh pool from ``make_pool()``, each call under
    ``asyncio.wait_for`` with a random deadline in ``deadline`` (seconds), for ``seconds``.
    Returns the counts and the pool (not closed: the caller inspects it, then closes it)."""
    pool = make_pool()
    client = aredis.Redis(connection_pool=pool)
    stop = time.monotonic() + seconds
    done = [0, 0, 0]

    async def work(i: int) -> None:
        rnd = random.Random(i)
        while time.monotonic() < stop:
            try:
                await asyncio.wait_for(client.get(f"k{i % 16}"), rnd.uniform(*deadline))
                done[0] += 1
            except asyncio.TimeoutError:
                done[1] += 1
            except _ERRORS:
                done[2] += 1
                await asyncio.sleep(0.001)

    await asyncio.gather(*(work(i) for i in range(tasks)))
    return CancelStorm(commands=done[0], cancelled=done[1], errors=done[2]), pool


@dataclass
class Outage:
    """The outcome of one endpoint outage (:func:`endpoint_outage`)."""

    errors: int
    """Commands that failed."""
    commands: int
    """Commands that succeeded."""
    recovered_after: float | None
    """Seconds from the server's restart until the pool held its share of connections to it
    (within one of an even spread), or ``None`` if it did not within the time allowed."""
    connections: list[int]
    """Connections per endpoint at the end (the pool's own count, in endpoint order)."""


def endpoint_outage(
    pool: Any,
    servers: list[Any],
    *,
    down: int = 0,
    threads: int = 32,
    think: float = 0.0,
    warmup: float = 0.5,
    outage: float = 3.0,
    allow: float = 8.0,
) -> Outage:
    """``threads`` threads PING through ``pool`` (``endpoints=`` the ``servers``); the server
    ``servers[down]`` is stopped for ``outage`` seconds and started again on the same port. Polls
    the pool's per-endpoint connection counts until the restarted endpoint holds its share (up to
    ``allow`` seconds)."""
    client = redis.Redis(connection_pool=pool, retry=no_retry())
    labels = [f"{s.host}:{s.port}" for s in servers]
    stop = threading.Event()
    ok = [0] * threads
    bad = [0] * threads

    def work(i: int) -> None:
        rnd = random.Random(i)
        while not stop.is_set():
            try:
                client.ping()
                ok[i] += 1
            except _ERRORS:
                bad[i] += 1
                time.sleep(0.001)
            if think:
                time.sleep(rnd.uniform(0, think))

    def spread() -> list[int]:
        per = pool.stats().endpoint_connections
        return [per.get(label, 0) for label in labels]

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    recovered_after = None
    try:
        time.sleep(warmup)
        servers[down].stop()
        time.sleep(outage)
        servers[down].start()
        back = time.monotonic()
        while time.monotonic() - back < allow:
            counts = spread()
            if max(counts) - counts[down] <= 1 and counts[down] > 0:
                recovered_after = time.monotonic() - back
                break
            time.sleep(0.02)
    finally:
        stop.set()
        for t in workers:
            t.join(10)
    return Outage(
        errors=sum(bad), commands=sum(ok), recovered_after=recovered_after, connections=spread()
    )
