"""Lifecycle against real redis-server processes: fair *and* shrinking pools behind stand-in
proxies, dead idle connections never reaching callers, server restarts under load, lifetime,
min_idle refill, the maintenance thread, close semantics."""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections.abc import Callable

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

import fairpool
from fairpool import ConnectionPool, Policy
from fairpool.tools.servers import RedisServer

from .helpers import NO_RETRY, balanced_connection_class, clients_on, ping_calls


def steady_load(r: redis.Redis, threads: int, seconds: float) -> list[BaseException]:
    errors: list[BaseException] = []
    stop = time.monotonic() + seconds

    def work() -> None:
        try:
            while time.monotonic() < stop:
                r.ping()
                time.sleep(0.0005)
        except BaseException as exc:  # pragma: no cover - reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 10)
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("policy", list(Policy))
def test_fair_and_shrinking_behind_four_proxies(
    redis_servers: Callable[..., list[RedisServer]], policy: Policy
) -> None:
    servers = redis_servers(4, name="proxy")
    pool = ConnectionPool(
        connection_class=balanced_connection_class(servers),
        host="127.0.0.1",
        policy=policy,
        max_connections=64,
        idle_timeout=1.0,
    )
    r = redis.Redis(connection_pool=pool)
    burst = [pool.get_connection() for _ in range(32)]  # the burst: 8 per proxy
    for conn in burst:
        pool.release(conn)
    assert [clients_on(s) for s in servers] == [8, 8, 8, 8]
    before = [ping_calls(s) for s in servers]
    assert not steady_load(r, threads=2, seconds=4.0)  # ~4 idle_timeout windows
    open_on_servers = sum(clients_on(s) for s in servers)
    assert open_on_servers <= 4, f"{policy}: {open_on_servers} connections still open"
    stats = pool.stats()
    assert stats.open == open_on_servers
    if policy is Policy.LIFO:
        assert stats.closed["idle"] >= 28
        return
    assert stats.closed["demand"] >= 28
    # the share of commands stayed even while shrinking ...
    shrinking = [ping_calls(s) - b for s, b in zip(servers, before, strict=True)]
    assert fairpool.fairness(shrinking).jain > 0.95, shrinking
    # ... and after
    before = [ping_calls(s) for s in servers]
    assert not steady_load(r, threads=2, seconds=1.0)
    after = [ping_calls(s) - b for s, b in zip(servers, before, strict=True)]
    assert fairpool.fairness(after).jain > 0.95, after
    assert pool.stats().endpoint_fairness.jain > 0.95
    pool.close()


@pytest.mark.parametrize("how", ["client_kill", "server_timeout"])
def test_dead_idle_connections_never_reach_callers(
    redis_servers: Callable[..., list[RedisServer]], how: str
) -> None:
    (server,) = redis_servers(1)
    pool = ConnectionPool(host=server.host, port=server.port, policy="fifo")
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(4)]
    for c in conns:
        pool.release(c)
    if how == "client_kill":
        with server.client() as admin:
            admin.client_kill_filter(_type="normal", skipme=True)
        time.sleep(0.3)  # longer than health_check_after: the pool will peek
    else:
        with server.client() as admin:
            admin.config_set("timeout", 1)
        time.sleep(2.5)  # the server closes idle clients after ~1 s
    for _ in range(10):
        assert r.ping()  # retries are off: a dead connection would raise here
    stats = pool.stats()
    assert stats.closed["health_check"] == 4 and stats.in_use == 0


def epoll_fds() -> int:
    """This process's epoll descriptors (garbage from earlier tests collected first, so that
    nothing closes one meanwhile)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
    return count


def pings_after_a_kill(server: RedisServer, client: redis.Redis, pings: int) -> None:
    """Every client connection is killed; then ``pings`` PINGs, retries off, all succeed: the
    borrow check catches every dead connection."""
    with server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.05)
    for _ in range(pings):
        assert client.ping()  # retries are off: a dead connection would raise here


@pytest.fixture(params=["epoll", "poll"])
def borrow_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sync borrow check's two mechanisms: an epoll instance per connection (Linux), and
    poll() (elsewhere, or when epoll cannot get a descriptor: simulated by failing it)."""
    import fairpool.threads

    if request.param == "poll":

        def no_descriptor(sizehint: int = -1) -> object:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(fairpool.threads, "_epoll", no_descriptor)
    elif fairpool.threads._epoll is None:
        pytest.skip("no select.epoll on this platform")
    return str(request.param)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_borrow_check_catches_a_kill_and_stray_bytes_and_closes_with_the_connection(
    redis_url: str, shared_redis: RedisServer, borrow_check: str
) -> None:
    """Recently used idle connections (no configured check due): a server-side close and a reply
    nobody read are both seen by the borrow check, whichever mechanism it uses; its descriptors
    (epoll: one per connection) are gone after disconnect() and after shutdown()."""
    before = epoll_fds()
    pool = ConnectionPool.from_url(redis_url, policy="fifo", health_check_after=60)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(4)]
    assert epoll_fds() - before == (4 if borrow_check == "epoll" else 0)
    r.set("k", "v")
    conns[0].send_command("ECHO", "stray")  # released with its reply unread
    time.sleep(0.05)
    for c in conns:
        pool.release(c)
    time.sleep(0.05)
    assert [r.get("k") for _ in range(8)] == [b"v"] * 8  # never the stray reply
    pings_after_a_kill(shared_redis, r, 8)
    assert pool.stats().closed["health_check"] >= 4
    pool.disconnect()
    assert epoll_fds() == before
    assert r.ping()
    pool.shutdown()
    assert epoll_fds() == before


def test_recently_used_connection_killed_is_caught_by_suspect_marking(
    redis_servers: Callable[..., list[RedisServer]],
) -> None:
    """health_check='ping' with a long health_check_after: connections are not checked while
    fresh, but once one is found dead the older ones are verified before reuse."""
    (server,) = redis_servers(1)
    pool = ConnectionPool(host=server.host, port=server.port, policy="lifo", health_check_after=0.0)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(3)]
    for c in conns:
        pool.release(c)
    with server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.05)
    assert r.ping()
    assert pool.stats().closed["health_check"] == 3


@pytest.mark.slow
def test_server_restart_under_load(redis_servers: Callable[..., list[RedisServer]]) -> None:
    (server,) = redis_servers(1)
    pool = fairpool.BlockingConnectionPool(
        host=server.host, port=server.port, max_connections=16, timeout=5, socket_timeout=2
    )
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    assert r.ping()
    fds_before = len(os.listdir("/proc/self/fd"))
    outage = threading.Event()
    recovered = threading.Event()
    stop = threading.Event()
    unexpected: list[BaseException] = []
    successes_after: dict[int, int] = {}

    def work(i: int) -> None:
        while not stop.is_set():
            try:
                r.incr(f"k{i}")
                if recovered.is_set():
                    successes_after[i] = successes_after.get(i, 0) + 1
            except (RedisConnectionError, RedisTimeoutError):
                if not outage.is_set():
                    unexpected.append(RuntimeError("error outside the outage"))
                time.sleep(0.01)
            except BaseException as exc:  # pragma: no cover
                unexpected.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    outage.set()
    server.restart(kill=True)
    time.sleep(0.3)  # let the error burst drain
    recovered.set()
    deadline = time.monotonic() + 10
    while len(successes_after) < 32 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(15)
    assert not unexpected, unexpected[:3]
    assert len(successes_after) == 32, "some threads never succeeded after the restart"
    stats = pool.stats()
    assert stats.in_use == 0 and stats.open <= 16
    pool.close()
    assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_max_lifetime_retires_connections(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url, max_lifetime=0.3, lifetime_jitter=0.2)
    r = redis.Redis(connection_pool=pool)
    first = r.client_id()
    time.sleep(0.35)
    assert r.client_id() != first  # retired when found idle; a new one was dialled
    stats = pool.stats()
    assert stats.closed["lifetime"] == 1 and stats.created == 2
    conn = pool.get_connection()
    time.sleep(0.35)
    pool.release(conn)  # retired on release
    assert pool.stats().closed["lifetime"] == 2 and pool.stats().open == 0


def test_min_idle_refill_and_maintenance_thread(
    redis_servers: Callable[..., list[RedisServer]],
) -> None:
    (server,) = redis_servers(1)
    pool = ConnectionPool(
        host=server.host,
        port=server.port,
        min_idle=3,
        idle_timeout=0.5,
        maintenance_interval=0.1,
        retry=NO_RETRY,
    )
    assert pool._maintainer is not None and pool._maintainer.alive
    deadline = time.monotonic() + 5
    # dialled by the thread (the server may count a client before its dial has finished)
    while (clients_on(server) < 3 or pool.stats().idle < 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert clients_on(server) == 3 and pool.stats().idle == 3
    # burst, then pruning back to min_idle without any borrow or release
    conns = [pool.get_connection() for _ in range(8)]
    for c in conns:
        pool.release(c)
    deadline = time.monotonic() + 5
    while pool.stats().open > 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pool.stats().open == 3 and clients_on(server) == 3
    # failures are refilled too
    with server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    time.sleep(0.3)
    assert r.ping()
    deadline = time.monotonic() + 5
    while clients_on(server) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert clients_on(server) == 3
    maintainer = pool._maintainer
    pool.close()
    deadline = time.monotonic() + 2
    while maintainer.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not maintainer.alive
    assert clients_on(server) == 0


def test_lazy_maintenance_prunes_on_release(redis_url: str, shared_redis: RedisServer) -> None:
    pool = ConnectionPool.from_url(redis_url, policy="lifo", idle_timeout=0.2)
    conns = [pool.get_connection() for _ in range(5)]
    for c in conns:
        pool.release(c)
    time.sleep(0.3)
    r = redis.Redis(connection_pool=pool)
    r.ping()  # the release after this command runs the due maintenance
    stats = pool.stats()
    assert stats.closed["idle"] == 4 and stats.open == 1 and pool._maintainer is None


def test_max_idle_closes_surplus_on_release(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url, max_idle=2)
    conns = [pool.get_connection() for _ in range(5)]
    for c in conns:
        pool.release(c)
    stats = pool.stats()
    assert stats.idle == 2 and stats.closed["max_idle"] == 3
    assert all(c._sock is None for c in conns[2:])


def test_connect_failure_counts_error_and_frees_capacity() -> None:
    port = fairpool.tools.servers.free_port()
    pool = ConnectionPool(port=port, max_connections=1, retry=NO_RETRY)
    for _ in range(3):
        with pytest.raises(RedisConnectionError):
            pool.get_connection()
    stats = pool.stats()
    assert stats.open == 0 and stats.dialling == 0  # no capacity leaked by failed dials


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc")
def test_borrow_checks_hold_at_most_their_share_of_descriptors(
    redis_url: str, shared_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-connection epoll instances stop at their share of the descriptor limit
    (simulated: one more than are open now); the connections beyond it use poll(), and every
    borrow check still catches a kill. The places come back when connections close, and when a
    probe is dropped without being closed."""
    import fairpool.threads as threads

    if threads._epoll is None:
        pytest.skip("no select.epoll on this platform")
    assert threads._epoll_limit() >= 1  # an eighth of the real soft limit
    before = epoll_fds()  # (collects the garbage of earlier tests first: their probes too)
    budget = threads._epolls
    start = budget.open
    monkeypatch.setattr(threads, "_epoll_limit", lambda: start + 1)
    pool = ConnectionPool.from_url(redis_url, policy="fifo", health_check_after=60)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(3)]
    assert epoll_fds() - before == 1 and budget.open == start + 1
    for c in conns:
        pool.release(c)
    pings_after_a_kill(shared_redis, r, 6)
    assert pool.stats().closed["health_check"] >= 3
    pool.shutdown()
    assert epoll_fds() == before and budget.open == start
    conn = redis.Connection(host=shared_redis.host, port=shared_redis.port)
    conn.connect()
    probe = threads.Probe(conn, True)
    assert budget.open == start + 1
    del probe  # dropped without close()
    gc.collect()
    assert budget.open == start
    conn.disconnect()


def test_a_kill_is_caught_one_by_one_where_push_messages_may_arrive(
    redis_url: str, shared_redis: RedisServer
) -> None:
    """Under RESP3 (with redis-py's maintenance notifications on, as by default on 7+) pending
    data on an idle connection may be a push message, so an event seen by the borrow check is not
    proof of death: each connection is peeked, and no batch is retired on a poll alone. Killed
    connections are still all caught."""
    pool = ConnectionPool.from_url(redis_url, protocol=3, health_check_after=60)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    conns = [pool.get_connection() for _ in range(4)]
    for c in conns:
        pool.release(c)
    batch = not pool._pushes_expected()  # redis-py < 7: RESP3 without notifications
    with shared_redis.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.05)
    conn = pool.get_connection()
    assert len(pool._core.later) == (4 if batch else 0)
    pool.release(conn)
    for _ in range(4):
        assert r.ping()
    assert pool.stats().closed["health_check"] == 4
    pool.shutdown()
