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

from .helpers import NO_RETRY, clients_on, ping_calls


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
    share = [ping_calls(s) - b for s, b in zip(servers, before, strict=True)]
    counts = [clients_on(s) for s in servers]
    assert not unexpected, unexpected
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1, counts
    assert fairpool.fairness(share).jain > 0.9, share
    assert len(errors) == errors_during_outage
    stats = pool.stats()
    assert stats.closed["rebalance"] >= 1
    pool.close()


def test_endpoint_set_backoff_and_order() -> None:
    a, b, c = ("a", 1), ("b", 2), ("c", 3)
    eps = EndpointSet([a, b, c])
    assert eps.dial_order([a, a, b], 0.0)[0] == c  # fewest first
    eps.dialling(c)
    eps.dialled(c, False, 0.0)  # c fails: backed off 0.5 s, then 1 s, ...
    assert eps.dial_order([a, b], 0.1)[-1] == c
    assert eps.healthy(c, 0.5)
    eps.report(c, False, 0.5)
    assert not eps.healthy(c, 1.4) and eps.healthy(c, 1.5)
    assert eps.rebalance([a, a, a, b, b, b], 1.0) is None  # c still backed off
    assert eps.rebalance([a, a, a, b, b, b], 2.0) == (a, c)
    eps.report(c, True, 2.0)
    assert eps.healthy(c, 2.0)
    assert eps.rebalance([a, a, b, b, c], 3.0) is None
