"""fairpool.ConnectionPool as a drop-in for redis.ConnectionPool, against real redis-server."""

from __future__ import annotations

import gc
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.retry import Retry

import fairpool
from fairpool import BlockingConnectionPool, ConnectionPool, Policy
from fairpool.tools.servers import RedisServer

from .compat import (
    needs_caching,
    needs_driver_info,
    needs_events,
    needs_maint_notifications,
)
from .helpers import wait_until

NO_RETRY = Retry(NoBackoff(), 0)


def client_for(server_url: str, **pool_kwargs: Any) -> redis.Redis:
    return redis.Redis(connection_pool=ConnectionPool.from_url(server_url, **pool_kwargs))


def client_ids(r: redis.Redis, n: int) -> list[int]:
    return [int(r.client_id()) for _ in range(n)]


# ------------------------------------------------------------------ policies on the wire


def _open_connections(pool: ConnectionPool, n: int) -> list[Any]:
    conns = [pool.get_connection() for _ in range(n)]
    for c in conns:
        pool.release(c)
    return conns


@pytest.mark.parametrize("policy", list(Policy))
def test_policy_order_over_real_connections(redis_url: str, policy: Policy) -> None:
    pool = ConnectionPool.from_url(redis_url, policy=policy)
    r = redis.Redis(connection_pool=pool)
    _open_connections(pool, 4)
    ids = client_ids(r, 12)
    if policy is Policy.LIFO:
        assert len(set(ids)) == 1  # the top of the stack does all the work
    else:
        assert len(set(ids)) == 4
        assert ids[:4] * 3 == ids  # strict rotation
    stats = pool.stats()
    assert stats.idle == 4 and stats.in_use == 0 and stats.created == 4
    pool.close()


def test_default_policy_is_fifo() -> None:
    pool = ConnectionPool()
    assert pool.policy is Policy.FIFO and pool.max_connections == 100
    assert pool.config.max_idle is None and pool.block is False


# ------------------------------------------------------------------ client features


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("policy", list(Policy))
def test_client_features(redis_url: str, protocol: int, policy: Policy) -> None:
    pool = ConnectionPool.from_url(redis_url, policy=policy, protocol=protocol, max_connections=8)
    r = redis.Redis(connection_pool=pool, decode_responses=False)
    assert r.ping()
    r.set("k", "v")
    assert r.get("k") == b"v"
    assert r.hset("h", mapping={"a": 1, "b": 2}) == 2
    assert r.hgetall("h") == {b"a": b"1", b"b": b"2"}
    # pipeline and transaction with WATCH
    with r.pipeline() as pipe:
        pipe.watch("counter")
        value = int(pipe.get("counter") or 0)
        pipe.multi()
        pipe.set("counter", value + 1)
        pipe.get("counter")
        assert pipe.execute() == [True, b"1"]
    assert r.pipeline(transaction=False).incr("n").incr("n").execute() == [1, 2]
    # Lock
    lock = r.lock("lk", timeout=5, blocking_timeout=1)
    assert lock.acquire()
    assert not r.lock("lk", blocking_timeout=0.05).acquire()
    lock.release()
    # pub/sub: the PubSub disconnects its connection before releasing it
    p = r.pubsub()
    p.subscribe("chan")
    assert p.get_message(timeout=1)["type"] == "subscribe"
    r.publish("chan", "hello")
    msg = None
    deadline = time.monotonic() + 2
    while msg is None and time.monotonic() < deadline:
        msg = p.get_message(ignore_subscribe_messages=True, timeout=0.2)
    assert msg is not None and msg["data"] == b"hello"
    p.close()
    # single-connection client on the same pool
    single = redis.Redis(connection_pool=pool, single_connection_client=True)
    assert single.set("s", 1) and single.get("s") == b"1"
    single.close()
    stats = pool.stats()
    assert stats.in_use == 0
    assert stats.idle + stats.in_use <= 8
    pool.close()


def test_monitor(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url)
    r = redis.Redis(connection_pool=pool)
    with r.monitor() as m:
        redis.Redis.from_url(redis_url).set("monitored", 1)
        for _ in range(10):
            command = m.next_command()
            if "monitored" in command["command"]:
                break
        else:
            pytest.fail("MONITOR did not see the command")
    assert r.ping()
    assert pool.stats().in_use == 0


def test_client_owns_pool_from_pool(redis_url: str) -> None:
    """A client that owns its pool closes it on close(): as with redis-py's pool, that only
    disconnects, and the client keeps working. shutdown() is the terminal close: later use
    refuses clearly, as go-redis and psycopg_pool do."""
    pool = ConnectionPool.from_url(redis_url)
    r = redis.Redis.from_pool(pool)
    assert r.ping()
    r.close()
    assert not pool.closed
    assert r.ping()  # reconnects, as with redis-py's pool
    pool.shutdown()
    assert pool.closed
    with pytest.raises(fairpool.PoolClosedError):
        r.ping()


def test_set_retry_reaches_existing_and_new_connections(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url)
    conns = _open_connections(pool, 3)
    retry = Retry(NoBackoff(), 7)
    pool.set_retry(retry)
    assert all(c.retry is retry for c in conns)
    assert pool.make_connection().retry._retries == 7  # redis-py copies it per connection


@needs_driver_info
@pytest.mark.parametrize("kind", ["sync", "asyncio"])
def test_new_connections_reuse_the_resolved_driver_info(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """redis-py 8.x resolves ``CLIENT SETINFO``'s driver info from the installed packages'
    metadata in every connection's constructor (~0.6 ms of CPU): after a server-side mass
    disconnect fairpool replaces every dead connection with a new object, and that cost made
    each of a burst of concurrent dials take tens of milliseconds. The pool resolves it once per
    connection class; each connection gets its own equal copy, on every endpoint."""
    from redis import utils
    from redis.driver_info import DriverInfo

    import fairpool.asyncio as fasync

    real = utils.get_lib_version
    calls: list[int] = []

    def counted() -> str:
        calls.append(1)
        version: str = real()
        return version

    monkeypatch.setattr(utils, "get_lib_version", counted)
    expected = DriverInfo()
    calls.clear()
    cls = ConnectionPool if kind == "sync" else fasync.ConnectionPool
    pool = cls(host="127.0.0.1", port=1)
    conns = [pool.make_connection() for _ in range(4)]
    conns.append(pool.make_connection(("127.0.0.2", 2)))
    assert len(calls) == 1
    infos = [c.driver_info for c in conns]
    assert all(i == expected for i in infos)
    assert len({id(i) for i in infos}) == len(infos)  # a copy each, as redis-py builds them
    assert conns[-1].host == "127.0.0.2"
    assert "driver_info" not in pool.connection_kwargs


@needs_driver_info
def test_driver_info_chosen_by_the_arguments_is_kept() -> None:
    """A ``driver_info`` (or ``lib_name`` / ``lib_version``) in the connection arguments is
    passed as given, shared by every connection as with redis-py's pool."""
    from redis.driver_info import DriverInfo

    mine = DriverInfo(lib_version="1.2.3").add_upstream_driver("mylib", "4.5")
    pool = ConnectionPool(host="127.0.0.1", port=1, driver_info=mine)
    assert all(pool.make_connection().driver_info is mine for _ in range(3))
    pool = ConnectionPool(host="127.0.0.1", port=1, driver_info=None)
    assert all(pool.make_connection().driver_info is None for _ in range(3))


@needs_driver_info
def test_replacements_of_killed_connections_identify_themselves(
    redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections dialled to replace killed ones send the same ``CLIENT SETINFO`` as the
    first (library name and version, seen in ``CLIENT LIST``) without resolving it again."""
    from redis import utils
    from redis.driver_info import DriverInfo

    expected = DriverInfo()
    pool = ConnectionPool(host=redis_server.host, port=redis_server.port)
    admin = redis.Redis(host=redis_server.host, port=redis_server.port)
    _open_connections(pool, 4)
    real, calls = utils.get_lib_version, []
    monkeypatch.setattr(utils, "get_lib_version", lambda: calls.append(1) or real())
    admin.client_kill_filter(_type="normal", skipme=True)
    time.sleep(0.1)
    _open_connections(pool, 4)  # each borrow finds its connection dead and dials a new one
    assert calls == []
    stats = pool.stats()
    assert stats.closed["health_check"] == 4 and stats.created == 8 and stats.idle == 4
    admin_id = admin.client_id()
    mine = [c for c in admin.client_list(_type="normal") if int(c["id"]) != admin_id]
    assert len(mine) == 4
    if "lib-name" in mine[0]:  # redis-server 7.2+ lists what CLIENT SETINFO set
        assert all(c["lib-name"] == expected.formatted_name for c in mine)
        assert all(c["lib-ver"] == expected.lib_version for c in mine)
    pool.shutdown()
    admin.close()


@needs_events
def test_streaming_reauth(redis_servers: Any) -> None:
    (server,) = redis_servers(1, args=["--requirepass", "s3cret"])

    class Token:
        def try_get(self, key: str) -> str:
            return "default"

        def get_value(self) -> str:
            return "s3cret"

    pool = ConnectionPool(host=server.host, port=server.port, password="s3cret")
    r = redis.Redis(connection_pool=pool)
    idle = _open_connections(pool, 2)
    held = pool.get_connection()
    pool.re_auth_callback(Token())  # AUTHs idle connections now (outside the lock)
    assert held._re_auth_token is not None  # borrowed one: on release
    pool.release(held)  # AfterConnectionReleasedEvent -> re_auth()
    assert held._re_auth_token is None
    assert r.ping() and all(c._sock is not None for c in idle)


@needs_maint_notifications
def test_maintenance_notification_hooks(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url, protocol=3)
    r = redis.Redis(connection_pool=pool)
    assert r.ping()
    conns = _open_connections(pool, 2)
    assert set(pool._get_free_connections()) == set(conns)
    held = pool.get_connection()
    assert pool._get_in_use_connections() == {held}
    with pool._lock:  # redis-py's maintenance handler enters the pool lock (must be an RLock)
        pool.update_active_connections_for_reconnect()
        pool.disconnect_free_connections()
    assert held.should_reconnect()
    pool.release(held)  # should_reconnect -> disconnected, still pooled
    assert held._sock is None
    assert r.ping()  # reconnects transparently
    assert pool.stats().in_use == 0


@needs_caching
def test_client_side_caching_wraps_like_redis_py(redis_url: str) -> None:
    """Client-side caching needs Redis >= 7.4; whatever the server, fairpool behaves exactly as
    redis-py's pool does (same wrapping, same outcome)."""
    from redis.cache import CacheConfig
    from redis.connection import CacheProxyConnection

    outcomes = []
    for cls in (redis.ConnectionPool, ConnectionPool):
        pool = cls.from_url(redis_url, protocol=3, cache_config=CacheConfig())
        assert pool.cache is not None
        assert isinstance(pool.make_connection(), CacheProxyConnection)
        try:
            r = redis.Redis(connection_pool=pool)
            r.set("csc", "1")
            outcomes.append(("ok", r.get("csc"), r.get("csc")))
        except Exception as exc:
            outcomes.append(("error", type(exc).__name__, str(exc)))
    assert outcomes[0] == outcomes[1]


def test_fork_gives_child_fresh_connections(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url)
    r = redis.Redis(connection_pool=pool)
    parent_id = r.client_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            child_id = r.client_id()
            stats = pool.stats()
            ok = child_id != parent_id and stats.created == 1 and pool.pid == os.getpid()
            os.write(write, str(child_id).encode())
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    os.close(write)
    child_id = int(os.read(read, 64) or 0)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert child_id and child_id != parent_id
    assert r.client_id() == parent_id  # the parent's connection is untouched


# ------------------------------------------------------------------ caps and waiting


def test_nonblocking_cap_raises_max_connections_error(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url, max_connections=2)
    a, b = pool.get_connection(), pool.get_connection()
    with pytest.raises(MaxConnectionsError, match="max_connections"):
        pool.get_connection()
    pool.release(a)
    pool.release(b)
    assert pool.stats().idle == 2


def test_blocking_timeout_names_size_and_wait(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.2)
    held = pool.get_connection()
    started = time.monotonic()
    with pytest.raises(RedisConnectionError, match=r"all 1 connections.*waited 0\.2") as info:
        pool.get_connection()
    assert time.monotonic() - started >= 0.2
    assert isinstance(info.value, fairpool.PoolTimeoutError)
    pool.release(held)
    stats = pool.stats()
    assert stats.timeouts == 1 and stats.waiting == 0 and stats.idle == 1


def test_blocking_pool_defaults_and_queue_class() -> None:
    pool = BlockingConnectionPool()
    assert (pool.block, pool.max_connections, pool.timeout) == (True, 50, 20)
    assert BlockingConnectionPool(queue_class=queue.LifoQueue).policy is Policy.LIFO
    assert BlockingConnectionPool(queue_class=queue.Queue).policy is Policy.FIFO
    with pytest.raises(ValueError, match="queue_class"):
        BlockingConnectionPool(queue_class=dict)


def test_waiting_threads_served_in_arrival_order(redis_url: str) -> None:
    # one connection: each grant is observable in order (two in flight could race to `served`)
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=10)
    held = [pool.get_connection()]
    served: list[int] = []
    lock = threading.Lock()

    def waiter(i: int) -> None:
        conn = pool.get_connection()
        with lock:
            served.append(i)
        conn.send_command("PING")
        conn.read_response()
        time.sleep(0.01)
        pool.release(conn)

    threads = []
    for i in range(12):
        t = threading.Thread(target=waiter, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while pool.stats().waiting < i + 1:  # thread i is queued before thread i+1 starts
            assert time.monotonic() < deadline
            time.sleep(0.001)
    for conn in held:
        pool.release(conn)
    for t in threads:
        t.join(10)
    assert served == list(range(12))
    stats = pool.stats()
    assert stats.in_use == 0 and stats.waits == 12 and stats.open == 1


def _hammer(pool: ConnectionPool, key: str, threads: int, per_thread: int, client: bool) -> None:
    """``threads`` threads each borrow, INCR ``key`` and release ``per_thread`` times (and, with
    ``client``, INCR it once more through a ``redis.Redis`` on the pool); fail if a connection is
    ever held by two threads at once, a thread errs, or they do not all finish."""
    r = redis.Redis(connection_pool=pool)
    holders: set[int] = set()
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                conn = pool.get_connection()
                with guard:
                    assert id(conn) not in holders, "one connection handed to two borrowers"
                    holders.add(id(conn))
                conn.send_command("INCR", key)
                conn.read_response()
                with guard:
                    holders.discard(id(conn))
                pool.release(conn)
                if client:
                    r.incr(key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)
    assert not any(t.is_alive() for t in workers), "deadlock"
    assert not errors, errors


def test_threaded_stress_distinct_connections(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=4, timeout=30)
    _hammer(pool, "stress", 32, 150, client=True)
    assert int(redis.Redis(connection_pool=pool).get("stress")) == 32 * 150 * 2
    stats = pool.stats()
    assert stats.in_use == 0 and stats.open <= 4 and stats.waiting == 0
    assert stats.borrows == stats.hits + stats.misses >= 32 * 150 * 2


# ------------------------------------------------------------------ turns (turn_borrows)


class _Waiter(threading.Thread):
    """A thread that borrows once from ``pool`` (recording the connection or the error it got),
    then holds the connection until ``done`` is set and releases it."""

    def __init__(self, pool: ConnectionPool, name: str, log: list[tuple[str, Any]]) -> None:
        super().__init__(name=name, daemon=True)
        self.pool, self.log = pool, log
        self.done = threading.Event()

    def run(self) -> None:
        try:
            conn = self.pool.get_connection()
        except Exception as exc:
            self.log.append((self.name, exc))
            return
        self.log.append((self.name, conn))
        self.done.wait(10)
        self.pool.release(conn)


def _queue_waiters(pool: ConnectionPool, log: list[tuple[str, Any]], *names: str) -> list[_Waiter]:
    """Start one waiter per name, each queued before the next starts."""
    waiters: list[_Waiter] = []
    for name in names:
        w = _Waiter(pool, name, log)
        w.start()
        waiters.append(w)
        wait_until(f"{name} queued", _waiting(pool, len(waiters)), 5, 0.001)
    return waiters


def _waiting(pool: ConnectionPool, n: int) -> Callable[[], bool]:
    return lambda: pool.stats().waiting == n


def test_turn_keeps_the_connection_for_a_tight_loop_then_hands_it_over(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, turn_borrows=3)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    for _ in range(2):  # borrows 2 and 3 of the turn: the same connection, the waiter still waits
        pool.release(conn)
        assert pool.get_connection() is conn
        assert pool.stats().waiting == 1 and not log
    pool.release(conn)  # the turn is over: handed to the waiter within this call
    assert pool.stats().waiting == 0
    wait_until("the waiter got it", lambda: bool(log), 5, 0.001)
    assert log == [("w", conn)]
    w.done.set()
    w.join(5)
    stats = pool.stats()
    assert stats.reborrows == 2 and stats.waits == 1 and stats.in_use == 0 and stats.open == 1


def test_turn_borrows_1_hands_over_on_every_release(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, turn_borrows=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)
    assert pool.stats().waiting == 0
    wait_until("the waiter got it", lambda: bool(log), 5, 0.001)
    w.done.set()
    w.join(5)
    assert pool.stats().reborrows == 0


def test_another_thread_ends_a_turn_and_queues_behind_the_waiters(redis_url: str) -> None:
    """A newcomer's borrow first hands the held connection to the oldest waiter, then queues."""
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w1,) = _queue_waiters(pool, log, "w1")
    pool.release(conn)  # held for this thread's next borrow
    assert pool.stats().waiting == 1
    (newcomer,) = _queue_waiters(pool, log, "newcomer")  # its borrow ends the turn
    wait_until("w1 served", lambda: bool(log), 5, 0.001)
    assert log == [("w1", conn)] and pool.stats().waiting == 1
    w1.done.set()
    wait_until("newcomer served", lambda: len(log) == 2, 5, 0.001)
    assert log[1] == ("newcomer", conn)
    newcomer.done.set()
    for t in (w1, newcomer):
        t.join(5)


def test_held_connection_goes_on_when_its_thread_does_not_come_back(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)  # held; this thread never borrows again and nobody else touches the pool
    assert pool.stats().waiting == 1
    wait_until("the keeper hands it to the waiter", lambda: bool(log), 2, 0.001)
    assert log == [("w", conn)]
    w.done.set()
    w.join(5)
    assert pool.stats().reborrows == 0
    # with no more turns, the keeper thread exits on its own
    wait_until("the keeper exits", lambda: pool._keeper is None, 5)
    assert not [t for t in threading.enumerate() if t.name.startswith("fairpool-turns")]


def test_no_keeper_thread_means_no_turn(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the keeper thread cannot start, the release still succeeds and the waiter is served."""

    def refuse() -> None:
        raise RuntimeError("can't start new thread")

    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    monkeypatch.setattr(fairpool.pool._TurnKeeper, "start", lambda self: refuse())
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)  # does not raise
    assert pool._keeper is None and pool._core.held is None
    wait_until("the waiter got it", lambda: bool(log), 2, 0.001)
    w.done.set()
    w.join(5)


def test_a_pool_with_a_running_keeper_can_be_collected(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)
    wait_until("the waiter got it", lambda: bool(log), 2, 0.001)
    w.done.set()
    w.join(5)
    keeper = pool._keeper
    assert keeper is not None and keeper.alive
    ref = weakref.ref(pool)
    log.clear()
    del pool, conn, w
    gc.collect()
    assert ref() is None  # the keeper holds no reference between its ticks
    wait_until("the keeper exits", lambda: not keeper.alive, 2)


def test_double_release_of_a_held_connection_is_ignored(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)
    pool.release(conn)  # ignored: the connection is held for this thread, not borrowed
    assert pool.get_connection() is conn  # still this thread's turn
    assert pool.stats().in_use == 1 and pool.stats().waiting == 1
    pool.release(conn)
    wait_until("the waiter got it", lambda: bool(log), 2, 0.001)
    w.done.set()
    w.join(5)
    stats = pool.stats()
    assert stats.in_use == 0 and stats.idle == 1 and stats.open == 1


def test_shutdown_while_a_connection_is_held(redis_url: str) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    conn = pool.get_connection()
    log: list[tuple[str, Any]] = []
    (w,) = _queue_waiters(pool, log, "w")
    pool.release(conn)
    pool.shutdown()
    w.join(5)
    assert len(log) == 1 and isinstance(log[0][1], fairpool.PoolClosedError)
    assert conn._sock is None
    stats = pool.stats()
    assert stats.open == 0 and stats.closed["closed"] == 1


@pytest.mark.parametrize("turn_borrows", [1, 4])
def test_crowd_of_threads_in_turns(redis_url: str, turn_borrows: int) -> None:
    """200 threads in tight loops on 4 connections: every command done, no connection handed to
    two threads, nothing left held or waiting; with turns, most borrows are served in turn."""
    pool = BlockingConnectionPool.from_url(
        redis_url, max_connections=4, timeout=30, turn_borrows=turn_borrows
    )
    per_thread = 15
    _hammer(pool, "crowd", 200, per_thread, client=False)
    stats = pool.stats()
    assert int(redis.Redis(connection_pool=pool).get("crowd")) == 200 * per_thread
    assert stats.in_use == 0 and stats.waiting == 0 and stats.open <= 4 and stats.timeouts == 0
    assert pool._core.held is None
    assert stats.borrows == 200 * per_thread
    if turn_borrows == 1:
        assert stats.reborrows == 0
    else:
        assert stats.reborrows > 0


# ------------------------------------------------------------------ misuse


def test_foreign_and_double_release_leave_pool_consistent(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url)
    other = ConnectionPool.from_url(redis_url)
    conn = pool.get_connection()
    foreign = other.get_connection()
    pool.release(foreign)  # ignored
    pool.release(conn)
    pool.release(conn)  # second release ignored
    stats = pool.stats()
    assert stats.idle == 1 and stats.in_use == 0 and stats.open == 1
    assert pool._get_free_connections() == [conn]
    assert pool.get_connection() is conn
    other.release(foreign)
    assert other.stats().idle == 1
    assert foreign._sock is not None  # the foreign release did not close the other pool's socket


def test_use_after_shutdown(redis_url: str) -> None:
    pool = ConnectionPool.from_url(redis_url)
    r = redis.Redis(connection_pool=pool, retry=NO_RETRY)
    held = pool.get_connection()
    assert r.ping()
    pool.shutdown()
    pool.shutdown()  # harmless
    with pytest.raises(fairpool.PoolClosedError, match="closed"):
        pool.get_connection()
    assert pool.stats().idle == 0
    pool.release(held)  # in-use connections are closed when they come back
    assert held._sock is None
    stats = pool.stats()
    assert stats.open == 0 and stats.closed["closed"] == 2


# ------------------------------------------------------------------ settings and URLs


def test_from_url_converts_fairpool_parameters() -> None:
    pool = ConnectionPool.from_url(
        "redis://localhost:6399/0?policy=round_robin&max_idle=8&block=true&timeout=2"
        "&min_idle=1&idle_timeout=30&max_lifetime=600&health_check=ping"
        "&health_check_after=0.5&max_connections=20&turn_borrows=2"
    )
    cfg = pool.config
    assert cfg.policy is Policy.ROUND_ROBIN and cfg.max_idle == 8 and cfg.block is True
    assert cfg.timeout == 2.0 and cfg.min_idle == 1 and cfg.idle_timeout == 30.0
    assert cfg.max_lifetime == 600.0 and cfg.health_check == "ping"
    assert cfg.health_check_after == 0.5 and pool.max_connections == 20
    assert cfg.turn_borrows == 2
    assert "policy" not in pool.connection_kwargs and pool.connection_kwargs["port"] == 6399
    assert BlockingConnectionPool.from_url("redis://localhost?policy=lifo").block is True


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("policy=random", "policy"),
        ("max_idle=-1", "max_idle"),
        ("max_idle=lots", "max_idle"),
        ("block=maybe", "block"),
        ("idle_timeout=0", "idle_timeout"),
        ("health_check=telepathy", "health_check"),
        ("min_idle=500", "min_idle"),
        ("turn_borrows=0", "turn_borrows"),
        ("turn_borrows=many", "turn_borrows"),
    ],
)
def test_from_url_rejects_bad_values(query: str, name: str) -> None:
    with pytest.raises((ValueError, TypeError), match=name):
        ConnectionPool.from_url(f"redis://localhost/0?{query}")


@pytest.mark.parametrize(
    ("kwargs", "name", "exc"),
    [
        ({"policy": "random"}, "policy", ValueError),
        ({"policy": 3}, "policy", TypeError),
        ({"max_connections": 0}, "max_connections", ValueError),
        ({"max_connections": -5}, "max_connections", ValueError),
        ({"max_connections": 2.5}, "max_connections", TypeError),
        ({"max_idle": -1}, "max_idle", ValueError),
        ({"min_idle": -1}, "min_idle", ValueError),
        ({"min_idle": 5, "max_connections": 2}, "min_idle", ValueError),
        ({"min_idle": 3, "max_idle": 2}, "max_idle", ValueError),
        ({"block": "yes"}, "block", TypeError),
        ({"timeout": -1}, "timeout", ValueError),
        ({"timeout": "1"}, "timeout", TypeError),
        ({"idle_timeout": 0}, "idle_timeout", ValueError),
        ({"idle_timeout": float("nan")}, "idle_timeout", ValueError),
        ({"max_lifetime": -3}, "max_lifetime", ValueError),
        ({"lifetime_jitter": 0.9}, "lifetime_jitter", ValueError),
        ({"health_check": "x"}, "health_check", ValueError),
        ({"health_check": 5}, "health_check", TypeError),
        ({"health_check_after": -0.1}, "health_check_after", ValueError),
        ({"maintenance_interval": 0}, "maintenance_interval", ValueError),
        ({"turn_borrows": 0}, "turn_borrows", ValueError),
        ({"turn_borrows": 2.5}, "turn_borrows", TypeError),
    ],
)
def test_bad_settings_name_themselves(kwargs: dict[str, Any], name: str, exc: type) -> None:
    with pytest.raises(exc, match=f"'{name}'.*must be"):
        ConnectionPool(**kwargs)


def test_repr_redacts_password() -> None:
    pool = ConnectionPool(password="hunter2", policy="lifo")
    assert "hunter2" not in repr(pool) and "fairpool.pool.ConnectionPool" in repr(pool)


# ------------------------------------------------------------------ stats


def test_stats_counts_and_endpoints(redis_url: str, shared_redis: RedisServer) -> None:
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=2, timeout=0.05)
    r = redis.Redis(connection_pool=pool)
    for _ in range(10):
        r.ping()
    a, b = pool.get_connection(), pool.get_connection()
    with pytest.raises(RedisConnectionError):
        pool.get_connection()
    pool.release(a)
    pool.release(b)
    s = pool.stats()
    endpoint = f"127.0.0.1:{shared_redis.port}"
    assert s.borrows == 12 and s.misses == 2 and s.hits == 10
    assert s.timeouts == 1 and s.waits == 1 and s.wait_time_max >= 0.05
    assert dict(s.endpoint_borrows) == {endpoint: 12}
    assert dict(s.endpoint_connections) == {endpoint: 2}
    assert s.endpoint_fairness.jain == 1.0
    d = s.as_dict()
    assert d["open"] == 2 and d["endpoint_fairness"]["n"] == 1
    with pytest.raises(AttributeError):
        s.idle = 5  # type: ignore[misc]


def test_on_connect_preloads_scripts_on_every_new_connection(redis_servers: Any) -> None:
    (server,) = redis_servers(1)
    registry = fairpool.ScriptRegistry()
    script = registry.register(fairpool.Script("return ARGV[1]", name="echo"))
    calls: list[Any] = []

    def on_connect(conn: Any) -> None:
        calls.append(conn)
        registry.on_connect(conn)

    pool = ConnectionPool(host=server.host, port=server.port, on_connect=on_connect)
    conns = [pool.get_connection() for _ in range(3)]
    assert calls == conns  # after redis-py's handshake, once per connection
    with server.client() as admin:
        assert admin.script_exists(script.sha) == [True]
        admin.script_flush()
    for c in conns:
        pool.release(c)
    pool.disconnect()  # sockets closed; the next borrow reconnects and preloads again
    conn = pool.get_connection()
    assert calls[-1] is conn and len(calls) == 4
    with server.client() as admin:
        assert admin.script_exists(script.sha) == [True]
    pool.release(conn)
    with pytest.raises(TypeError, match="on_connect"):
        ConnectionPool(on_connect="yes")  # type: ignore[arg-type]


def test_release_never_loses_a_connection_when_reauth_fails(redis_url: str) -> None:
    """A failing AfterConnectionReleasedEvent listener (e.g. a re-auth that errors) must not leak
    the connection: the pool takes it back, closed."""
    event = pytest.importorskip("redis.event", reason="redis-py 5.0 has no events")

    class FailingReAuth(event.EventListenerInterface):  # type: ignore[misc]
        fail = True

        def listen(self, released: Any) -> None:
            if self.fail:
                raise RedisConnectionError("re-auth failed")

    listener = FailingReAuth()
    dispatcher = event.EventDispatcher()
    if hasattr(dispatcher, "register_listeners"):
        dispatcher.register_listeners({event.AfterConnectionReleasedEvent: [listener]})
    else:  # redis-py 5.x: no public registration; the dispatcher's own mapping is what it reads
        dispatcher._event_listeners_mapping[event.AfterConnectionReleasedEvent] = [listener]
    pool = ConnectionPool.from_url(redis_url, event_dispatcher=dispatcher)
    conn = pool.get_connection()
    with pytest.raises(RedisConnectionError, match="re-auth failed"):
        pool.release(conn)
    stats = pool.stats()
    assert stats.in_use == 0 and stats.open == 0 and stats.closed["error"] == 1
    assert conn._sock is None
    listener.fail = False
    assert redis.Redis(connection_pool=pool).ping()


def test_get_connection_arguments_warn_as_redis_py_does(redis_url: str) -> None:
    """redis-py 5.0's clients pass the command name to get_connection(); 5.1+ deprecate it. On
    every redis-py, fairpool's pool warns exactly when redis-py's own pool does."""
    import warnings

    warned = []
    for cls in (redis.ConnectionPool, ConnectionPool):
        pool = cls.from_url(redis_url)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            conn = pool.get_connection("GET")
        pool.release(conn)
        warned.append(any(issubclass(w.category, DeprecationWarning) for w in caught))
        pool.disconnect()
    assert warned[0] == warned[1]
