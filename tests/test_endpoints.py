"""endpoints=[...]: several proxies without a balancer, against real redis-server processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import fairpool
from fairpool import ConnectionPool
from fairpool.endpoints import EndpointSet
from fairpool.tools.servers import RedisServer

from .helpers import NO_RETRY, assert_back_in_balance, assert_rebalanced, clients_on, ping_calls


def test_new_connections_spread_evenly(redis_servers: Callable[..., list[RedisServer]]) -> None:
    servers = redis_servers(4, name="proxy")
    pool = ConnectionPool(endpoints=[f"127.0.0.1:{s.port}" for s in servers], retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(10)]
    for c in conns:
        pool.release(c)
    assert sorted(clients_on(s) for s in servers) == [2, 2, 3, 3]
    stats = pool.stats()
    assert sorted(stats.endpoint_connections.values()) == [2, 2, 3, 3]
    r = redis.Redis(connection_pool=pool)
    for _ in range(100):
        r.ping()
    assert pool.stats().endpoint_fairness.max_mean < 1.25


def test_url_form(redis_servers: Callable[..., list[RedisServer]]) -> None:
    a, b = redis_servers(2)
    pool = ConnectionPool.from_url(
        f"redis://127.0.0.1:{a.port}/0?endpoints=127.0.0.1:{a.port},127.0.0.1:{b.port}"
    )
    assert pool.config.endpoints == (("127.0.0.1", a.port), ("127.0.0.1", b.port))
    conns = [pool.get_connection() for _ in range(4)]
    assert [clients_on(s) for s in (a, b)] == [2, 2]
    for c in conns:
        pool.release(c)


@pytest.mark.slow
def test_endpoint_failure_and_recovery(redis_servers: Callable[..., list[RedisServer]]) -> None:
    servers = redis_servers(4, name="proxy")
    pool = ConnectionPool(
        endpoints=[f"127.0.0.1:{s.port}" for s in servers],
        max_connections=32,
        socket_timeout=2,
        socket_connect_timeout=1,
    )
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(12)]
    for c in conns:
        pool.release(c)
    assert [clients_on(s) for s in servers] == [3, 3, 3, 3]

    stop = threading.Event()
    errors: list[float] = []
    unexpected: list[BaseException] = []

    def work() -> None:
        while not stop.is_set():
            try:
                r.ping()
            except (RedisConnectionError, RedisTimeoutError):
                errors.append(time.monotonic())
            except BaseException as exc:  # pragma: no cover
                unexpected.append(exc)
            time.sleep(0.001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    down = servers[1]
    failed_at = time.monotonic()
    down.stop()
    time.sleep(1.5)
    # connections rebalanced over the other three; errors only at the moment of failure
    alive = [s for s in servers if s is not down]
    assert pool.stats().in_use <= 4
    assert all(e - failed_at < 1.0 for e in errors), [round(e - failed_at, 3) for e in errors]
    errors_during_outage = len(errors)
    before = [ping_calls(s) for s in alive]
    time.sleep(1.0)
    share = [ping_calls(s) - b for s, b in zip(alive, before, strict=True)]
    assert fairpool.fairness(share).jain > 0.9, share
    assert len(errors) == errors_during_outage  # no errors once the failure has passed
    # it comes back: back-off expires, the pool rebalances onto it
    down.start()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        counts = [clients_on(s) for s in servers]
        if min(counts) >= 1 and max(counts) - min(counts) <= 1:
            break
        time.sleep(0.2)
    before = [ping_calls(s) for s in servers]
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert_back_in_balance(pool, servers, before, unexpected)
    assert len(errors) == errors_during_outage
    pool.close()


def test_endpoint_set_backoff_and_order() -> None:
    a, b, c = ("a", 1), ("b", 2), ("c", 3)
    eps = EndpointSet([a, b, c])
    assert eps.dial_order([a, a, b], 0.0)[0] == c  # fewest first
    eps.dialling(c)
    eps.dialled(c, False, 0.0)  # c fails: down for 0.5 s
    assert eps.dial_order([a, b], 0.1)[-1] == c
    assert not eps.up(c) and not eps.healthy(c, 0.4) and eps.healthy(c, 0.5)  # then half-open
    eps.report(c, False, 0.2)  # another failure of the same outage (a reconnect) adds nothing
    assert eps.failures(c) == 1 and eps.healthy(c, 0.5)
    assert eps.probes_due(0.4) == [] and eps.probes_due(0.5) == [c]
    assert eps.probes_due(0.4, force=True) == [c]  # an explicit maintain() probes at once
    assert eps.dial_order([a, b], 0.5)[-1] == c  # half-open: after every endpoint that is up
    eps.dialling(c)  # the probe: one at a time
    assert not eps.healthy(c, 0.6) and eps.probes_due(0.6) == []
    eps.dialled(c, False, 0.6)  # it fails: down again, for twice as long
    assert eps.failures(c) == 2 and not eps.healthy(c, 1.5) and eps.healthy(c, 1.6)
    eps.report(c, False, 1.6)
    assert eps.failures(c) == 3 and not eps.healthy(c, 2.5)  # capped at BACKOFF_MAX (1 s)
    assert eps.healthy(c, 2.6)
    assert eps.rebalance([a, a, a, b, b, b], 2.0) is None  # c is not up
    eps.dialling(c)
    eps.dialled(c, True, 3.0)  # the probe connects: c is up
    assert eps.up(c) and eps.failures(c) == 0 and eps.healthy(c, 3.0)
    assert eps.rebalance([a, a, a, b, b, b], 3.0) == (a, c)
    assert eps.rebalance([a, a, b, b, c], 3.0) is None


@pytest.mark.parametrize("max_connections", [8, 4])
def test_maintain_probes_a_down_endpoint_and_rebalances(
    redis_servers: Callable[..., list[RedisServer]], max_connections: int
) -> None:
    """An explicit maintain() probes an endpoint that is down at once (one dial, even during its
    back-off); when it connects, connections move onto it: with spare capacity (8) by dialling
    there, at the cap (4) by closing idle ones elsewhere (``rebalance``)."""
    a, b = redis_servers(2, name="proxy")
    b.stop()
    pool = ConnectionPool(
        endpoints=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        max_connections=max_connections,
        socket_connect_timeout=1,
        retry=NO_RETRY,
    )
    conns = [pool.get_connection() for _ in range(4)]  # the dial to b fails: all on a
    for c in conns:
        pool.release(c)
    endpoints = pool._endpoints
    assert endpoints is not None
    down = ("127.0.0.1", b.port)
    assert endpoints.failures(down) == 1
    pool.maintain()  # still down: the probe fails within the back-off (same outage: not counted)
    assert endpoints.failures(down) == 1 and clients_on(a) == 4
    b.start()
    pool.maintain()  # probe at once, then rebalance
    assert endpoints.up(down)
    assert_rebalanced(pool, a, b, max_connections)
    pool.close()
