"""endpoints=[...] in the asyncio pool (tests/test_endpoints.py's twin): balanced dials, the
circuit breaker, the half-open probe and rebalancing on recovery, against real redis-server
processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import fairpool
from fairpool.asyncio import ConnectionPool
from fairpool.tools.servers import RedisServer

from .helpers import assert_back_in_balance, assert_rebalanced, clients_on, ping_calls

NO_RETRY = Retry(NoBackoff(), 0)


def _addresses(servers: list[RedisServer]) -> list[str]:
    return [f"127.0.0.1:{s.port}" for s in servers]


def test_new_connections_spread_evenly(redis_servers: Callable[..., list[RedisServer]]) -> None:
    servers = redis_servers(4, name="proxy")

    async def main() -> None:
        pool = ConnectionPool(endpoints=_addresses(servers), retry=NO_RETRY)
        conns = [await pool.get_connection() for _ in range(10)]
        for c in conns:
            await pool.release(c)
        assert sorted(clients_on(s) for s in servers) == [2, 2, 3, 3]
        assert sorted(pool.stats().endpoint_connections.values()) == [2, 2, 3, 3]
        r = aredis.Redis(connection_pool=pool)
        for _ in range(100):
            await r.ping()
        assert pool.stats().endpoint_fairness.max_mean < 1.25
        await pool.ashutdown()

    asyncio.run(main())


def test_url_form_and_concurrent_dials(redis_servers: Callable[..., list[RedisServer]]) -> None:
    """Dials in flight count for the spread: eight tasks dialling at once land four and four."""
    a, b = redis_servers(2)

    async def main() -> None:
        pool = ConnectionPool.from_url(
            f"redis://127.0.0.1:{a.port}/0?endpoints=127.0.0.1:{a.port},127.0.0.1:{b.port}"
        )
        assert pool.config.endpoints == (("127.0.0.1", a.port), ("127.0.0.1", b.port))
        conns = await asyncio.gather(*(pool.get_connection() for _ in range(8)))
        assert [clients_on(s) for s in (a, b)] == [4, 4]
        for c in conns:
            await pool.release(c)
        await pool.ashutdown()

    asyncio.run(main())


def test_a_dial_to_a_down_endpoint_goes_to_another(
    redis_servers: Callable[..., list[RedisServer]],
) -> None:
    """The caller does not see the failed dial: it gets a connection to an endpoint that is up,
    and the failed one is backed off (tried last) until its probe connects."""
    a, b = redis_servers(2, name="proxy")
    b.stop()

    async def main() -> None:
        pool = ConnectionPool(
            endpoints=_addresses([a, b]), socket_connect_timeout=1, retry=NO_RETRY
        )
        r = aredis.Redis(connection_pool=pool)
        assert await asyncio.gather(*(r.ping() for _ in range(6))) == [True] * 6
        assert clients_on(a) == pool.stats().open
        assert pool.stats().closed_total == 0
        down = ("127.0.0.1", b.port)
        assert pool._endpoints is not None and pool._endpoints.failures(down) == 1
        await pool.ashutdown()

    asyncio.run(main())


@pytest.mark.parametrize("max_connections", [8, 4])
def test_maintain_probes_a_down_endpoint_and_rebalances(
    redis_servers: Callable[..., list[RedisServer]], max_connections: int
) -> None:
    """tests/test_endpoints.py's probe-and-rebalance case, awaited: the same counts."""
    a, b = redis_servers(2, name="proxy")
    b.stop()

    async def main() -> None:
        pool = ConnectionPool(
            endpoints=_addresses([a, b]),
            max_connections=max_connections,
            socket_connect_timeout=1,
            retry=NO_RETRY,
        )
        conns = [await pool.get_connection() for _ in range(4)]  # the dial to b fails: all on a
        for c in conns:
            await pool.release(c)
        endpoints = pool._endpoints
        assert endpoints is not None
        down = ("127.0.0.1", b.port)
        assert endpoints.failures(down) == 1
        await pool.maintain()  # still down: the probe fails (same outage: not counted again)
        assert endpoints.failures(down) == 1 and clients_on(a) == 4
        b.start()
        await pool.maintain()  # probe at once, then rebalance
        assert endpoints.up(down)
        assert_rebalanced(pool, a, b, max_connections)
        await pool.ashutdown()

    asyncio.run(main())


def test_rebalancing_waits_for_a_borrowed_connection(
    redis_servers: Callable[..., list[RedisServer]],
) -> None:
    """At the cap with every connection borrowed, rebalancing retires one to the crowded endpoint
    when it comes back (``rebalance``) and dials its replacement on the recovered endpoint."""
    a, b = redis_servers(2, name="proxy")
    b.stop()

    async def main() -> None:
        pool = ConnectionPool(
            endpoints=_addresses([a, b]),
            max_connections=2,
            socket_connect_timeout=1,
            retry=NO_RETRY,
        )
        held = [await pool.get_connection() for _ in range(2)]
        assert clients_on(a) == 2
        b.start()
        maintenance = asyncio.ensure_future(pool.maintain())
        await asyncio.sleep(0.05)
        assert not maintenance.done()  # waiting for the retired connection to come back
        for c in held:
            await pool.release(c)
        await maintenance
        assert (clients_on(a), clients_on(b)) == (1, 1)
        assert pool.stats().closed["rebalance"] == 1
        await pool.ashutdown()

    asyncio.run(main())


def test_min_idle_refill_spreads_over_endpoints(
    redis_servers: Callable[..., list[RedisServer]],
) -> None:
    servers = redis_servers(3, name="proxy")

    async def main() -> None:
        pool = ConnectionPool(endpoints=_addresses(servers), min_idle=6, retry=NO_RETRY)
        await pool.maintain()
        assert [clients_on(s) for s in servers] == [2, 2, 2]
        assert pool.stats().idle == 6
        await pool.ashutdown()
        assert [clients_on(s) for s in servers] == [0, 0, 0]

    asyncio.run(main())


@pytest.mark.slow
def test_endpoint_failure_and_recovery(redis_servers: Callable[..., list[RedisServer]]) -> None:
    """Four endpoints, sixteen tasks sending PINGs, one endpoint stopped: errors only at the
    moment of failure, the load spread over the other three; once it is back, background
    maintenance (started by releases) probes it and moves connections onto it."""
    servers = redis_servers(4, name="proxy")

    async def main() -> None:
        pool = ConnectionPool(
            endpoints=_addresses(servers),
            max_connections=32,
            socket_timeout=2,
            socket_connect_timeout=1,
        )
        r = aredis.Redis(connection_pool=pool, retry=NO_RETRY)
        conns = [await pool.get_connection() for _ in range(12)]
        for c in conns:
            await pool.release(c)
        assert [clients_on(s) for s in servers] == [3, 3, 3, 3]
        stop = asyncio.Event()
        errors: list[float] = []
        unexpected: list[BaseException] = []

        async def work() -> None:
            while not stop.is_set():
                try:
                    await r.ping()
                except (RedisConnectionError, RedisTimeoutError):
                    errors.append(time.monotonic())
                except BaseException as exc:  # pragma: no cover
                    unexpected.append(exc)
                await asyncio.sleep(0.001)

        tasks = [asyncio.ensure_future(work()) for _ in range(4)]
        await asyncio.sleep(0.5)
        down = servers[1]
        failed_at = time.monotonic()
        await asyncio.to_thread(down.stop)
        await asyncio.sleep(1.5)
        alive = [s for s in servers if s is not down]
        assert all(e - failed_at < 1.0 for e in errors), [round(e - failed_at, 3) for e in errors]
        errors_during_outage = len(errors)
        before = [ping_calls(s) for s in alive]
        await asyncio.sleep(1.0)
        share = [ping_calls(s) - b for s, b in zip(alive, before, strict=True)]
        assert fairpool.fairness(share).jain > 0.9, share
        assert len(errors) == errors_during_outage  # no errors once the failure has passed
        await asyncio.to_thread(down.start)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            counts = [clients_on(s) for s in servers]
            if min(counts) >= 1 and max(counts) - min(counts) <= 1:
                break
            await asyncio.sleep(0.2)
        before = [ping_calls(s) for s in servers]
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*tasks)
        assert_back_in_balance(pool, servers, before, unexpected)
        assert len(errors) == errors_during_outage
        await pool.ashutdown()

    asyncio.run(main())
