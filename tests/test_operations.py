"""The operator controls against real redis-server processes, in both shells (issue 15):
``leak_timeout``, ``max_waiting`` with :class:`fairpool.PoolOverloadedError`, ``pool.resize()``
and ``pool.drain()``, and their ``stats()`` fields — including the races: resize while callers
wait, drain while commands run (no caller error, every connection replaced), a leak reported
exactly once, shedding counted exactly.

One test body drives either shell through :class:`Harness`: the asyncio pool runs on an event
loop in a background thread, and the test's "callers" are threads (sync) or tasks (asyncio).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import fairpool
import fairpool.asyncio
from fairpool.tools.servers import RedisServer

from .helpers import clients_on

KINDS = ["sync", "asyncio"]
WAIT = 10.0  # seconds: the longest any step may take before the test fails


def until(check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Harness:
    """A pool of either shell, its client, and blocking helpers usable from the test thread."""

    def __init__(self, kind: str, url: str, **settings: Any) -> None:
        self.kind = kind
        self.threads = concurrent.futures.ThreadPoolExecutor(64)
        if kind == "sync":
            self.pool: Any = fairpool.ConnectionPool.from_url(url, **settings)
            self.client: Any = redis.Redis(connection_pool=self.pool)
            return
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def build() -> None:
            self.pool = fairpool.asyncio.ConnectionPool.from_url(url, **settings)
            self.client = redis.asyncio.Redis(connection_pool=self.pool)

        self.submit(build).result(WAIT)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Start ``fn(*args)`` as a concurrent caller: a thread, or a task on the loop (``fn``
        may then return an awaitable)."""
        if self.kind == "sync":
            return self.threads.submit(fn, *args)

        async def call() -> Any:
            result = fn(*args)
            return await result if inspect.isawaitable(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self.loop)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the shell's world, waited for (sync: in the calling thread)."""
        if self.kind == "sync":
            return fn(*args)
        return self.submit(fn, *args).result(WAIT)

    def sleep(self, seconds: float) -> Any:
        return asyncio.sleep(seconds) if self.kind == "asyncio" else time.sleep(seconds)

    async def _hold_async(self, seconds: float) -> int:
        conn = await self.pool.get_connection()
        try:
            await conn.send_command("CLIENT", "ID")
            client_id = int(await conn.read_response())
            await asyncio.sleep(seconds)
            return client_id
        finally:
            await self.pool.release(conn)

    def hold(self, seconds: float) -> Any:
        """Borrow a connection, run a command on it, keep it ``seconds``, give it back; the
        server-side client id of the connection used."""
        if self.kind == "asyncio":
            return self._hold_async(seconds)
        conn = self.pool.get_connection()
        try:
            conn.send_command("CLIENT", "ID")
            client_id = int(conn.read_response())
            time.sleep(seconds)
            return client_id
        finally:
            self.pool.release(conn)

    def stats(self) -> fairpool.PoolStats:
        return self.call(self.pool.stats)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.kind == "sync":
            self.pool.shutdown()
        else:
            self.call(self.pool.ashutdown)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()
        self.threads.shutdown(wait=False, cancel_futures=True)


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(url: str, **settings: Any) -> Harness:
        h = Harness(request.param, url, **settings)
        made.append(h)
        return h

    yield factory
    for h in made:
        h.close()


def server_ids(server: RedisServer) -> set[int]:
    """Client ids of the connections on the server, not counting the one asking."""
    with server.client() as admin:
        me = admin.client_id()
        return {int(c["id"]) for c in admin.client_list()} - {me}


# --------------------------------------------------------------------- leak detection
def test_leak_reported_exactly_once_with_where_it_was_borrowed(
    make: Callable[..., Harness], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fairpool")
    h = make(redis_url, leak_timeout=0.2)
    conn = h.call(h.pool.get_connection)
    ok = h.call(h.client.ping)  # another borrow, released at once: never reported
    assert ok

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "fairpool" and r.levelno == logging.WARNING]

    until(lambda: len(warnings()) >= 1)
    time.sleep(0.5)  # several more leak checks: still reported once
    (record,) = warnings()
    message = record.getMessage()
    assert "possible connection leak" in message and "leak_timeout=0.2" in message
    assert "test_operations.py" in message  # where it was borrowed
    assert h.stats().leaks == 1
    h.call(h.pool.release, conn)
    back = [r for r in caplog.records if "reported as leaked came back" in r.getMessage()]
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert len(warnings()) == 1 and h.stats().leaks == 1


def test_pubsub_and_single_connection_clients_are_exempt(
    make: Callable[..., Harness], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fairpool")
    h = make(redis_url, leak_timeout=0.1)
    pubsub = h.client.pubsub()
    h.call(pubsub.subscribe, "channel")
    if h.kind == "sync":
        single: Any = redis.Redis(connection_pool=h.pool, single_connection_client=True)
        assert single.ping()
    else:

        async def single_client() -> Any:
            client = redis.asyncio.Redis(connection_pool=h.pool, single_connection_client=True)
            await client.ping()
            return client

        single = h.call(single_client)
    assert h.stats().in_use == 2
    time.sleep(0.5)  # five leak timeouts
    assert h.stats().leaks == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    conn = h.call(h.pool.get_connection)  # a plain borrow is still watched
    h.call(h.pool.exempt_from_leak_detection, conn)  # ... unless exempted
    time.sleep(0.3)
    assert h.stats().leaks == 0
    h.call(h.pool.release, conn)
    h.call(pubsub.aclose if h.kind == "asyncio" else pubsub.close)
    h.call(single.aclose if h.kind == "asyncio" else single.close)


def test_leak_timeout_off_captures_nothing(make: Callable[..., Harness], redis_url: str) -> None:
    h = make(redis_url)
    conn = h.call(h.pool.get_connection)
    # the plain method: no per-borrow cost (once the asyncio pool's first-borrow check is done)
    assert "get_connection" not in vars(h.pool)
    assert h.pool._core.slot_of(conn).borrower is None
    h.call(h.pool.release, conn)


# --------------------------------------------------------------------- load shedding
def test_shedding_fails_at_once_and_is_counted_exactly(
    make: Callable[..., Harness], redis_url: str
) -> None:
    h = make(redis_url, max_connections=1, block=True, timeout=WAIT, max_waiting=2)
    conn = h.call(h.pool.get_connection)
    waiters = [h.submit(h.pool.get_connection) for _ in range(2)]
    until(lambda: h.stats().waiting == 2)
    shed = [h.submit(h.pool.get_connection) for _ in range(3)]
    for fut in shed:
        with pytest.raises(fairpool.PoolOverloadedError, match="2 callers already wait"):
            fut.result(2.0)  # at once, not after the timeout
    assert issubclass(fairpool.PoolOverloadedError, fairpool.PoolExhaustedError)
    assert h.stats().sheds == 3
    h.call(h.pool.release, conn)
    first = waiters[0].result(WAIT)
    h.call(h.pool.release, first)
    h.call(h.pool.release, waiters[1].result(WAIT))
    stats = h.stats()
    assert stats.sheds == 3 and stats.waits == 2 and stats.timeouts == 0


def test_shedding_races_with_releases_and_stays_exact(
    make: Callable[..., Harness], redis_url: str
) -> None:
    """Many callers hammer a 2-connection pool with max_waiting=3: each call either succeeds or
    is shed; the shed count the callers see is exactly the pool's."""
    h = make(redis_url, max_connections=2, block=True, timeout=WAIT, max_waiting=3)

    def one() -> Any:
        return h.hold(0.002)

    futures = [h.submit(one) for _ in range(200)]
    shed = ok = 0
    for fut in futures:
        try:
            fut.result(WAIT * 3)
            ok += 1
        except fairpool.PoolOverloadedError:
            shed += 1
    assert ok + shed == 200 and ok >= 5
    assert h.stats().sheds == shed and h.stats().in_use == 0


# ------------------------------------------------------------------------------- resize
def test_resize_while_callers_wait(make: Callable[..., Harness], redis_server: RedisServer) -> None:
    h = make(redis_server.url, max_connections=2, block=True, timeout=WAIT)
    held = [h.call(h.pool.get_connection) for _ in range(2)]
    waiters = [h.submit(h.hold, 0.3) for _ in range(4)]
    until(lambda: h.stats().waiting == 4)
    h.call(h.pool.resize, 6)  # grow: every waiter dials now, nobody released anything
    done, _ = concurrent.futures.wait(waiters, timeout=WAIT)
    assert len(done) == 4 and all(f.exception() is None for f in done)
    assert h.stats().open == 6 and clients_on(redis_server) == 6
    h.call(h.pool.resize, 2)  # shrink: the 4 idle ones close now
    assert h.stats().open == 2 and h.stats().closed["resize"] == 4
    assert h.pool.max_connections == 2
    more = h.submit(h.hold, 0.0)
    until(lambda: h.stats().waiting == 1)  # at the new cap
    for conn in held:
        h.call(h.pool.release, conn)
    more.result(WAIT)
    until(lambda: clients_on(redis_server) <= 2)
    assert h.stats().open <= 2


def test_resize_shrinks_borrowed_connections_on_release(
    make: Callable[..., Harness], redis_server: RedisServer
) -> None:
    h = make(redis_server.url, max_connections=5)
    held = [h.call(h.pool.get_connection) for _ in range(5)]
    h.call(h.pool.resize, 2, None, 1)  # max_connections=2, max_idle=1
    assert h.stats().open == 5  # borrowed ones are never taken away
    for conn in held:
        h.call(h.pool.release, conn)
    stats = h.stats()
    assert stats.open == 1 and stats.closed["resize"] == 3 and stats.closed["max_idle"] == 1
    until(lambda: clients_on(redis_server) == 1)
    with pytest.raises(ValueError, match="'min_idle' must be integer 0 … `max_connections`"):
        h.call(h.pool.resize, 2, 3)
    assert h.pool.max_connections == 2


# -------------------------------------------------------------------------------- drain
def test_drain_while_commands_run_replaces_every_connection(
    make: Callable[..., Harness], redis_server: RedisServer
) -> None:
    h = make(redis_server.url, max_connections=8, block=True, timeout=WAIT, min_idle=2)
    stop = time.monotonic() + 1.5
    seen_before: set[int] = set()
    drained = threading.Event()

    def work() -> Any:
        if h.kind == "asyncio":
            return work_async()
        used = []
        while time.monotonic() < stop:
            used.append((drained.is_set(), h.hold(0.001)))
        return used

    async def work_async() -> Any:
        used = []
        while time.monotonic() < stop:
            used.append((drained.is_set(), await h._hold_async(0.001)))
        return used

    workers = [h.submit(work) for _ in range(6)]
    time.sleep(0.5)
    seen_before |= server_ids(redis_server)
    assert len(seen_before) >= 2
    replaced = h.call(h.pool.drain)
    drained.set()
    assert replaced == len(seen_before)
    results = [w.result(WAIT) for w in workers]  # no caller failed
    after = {cid for used in results for d, cid in used if d}
    now_open = server_ids(redis_server)
    assert not now_open & seen_before, "a connection from before the drain is still open"
    stats = h.stats()
    assert stats.drains == 1 and stats.closed["drain"] == len(seen_before)
    assert stats.closed_total == stats.closed["drain"]
    assert after and len(after - seen_before) >= 1
    # borrowed ones were handed to nobody after the drain: at most the borrow in flight at the
    # drain by each worker used an old connection
    stale_uses = sum(1 for used in results for d, cid in used if d and cid in seen_before)
    assert stale_uses <= 6


def test_drain_one_endpoint(make: Callable[..., Harness], redis_server: RedisServer) -> None:
    h = make(redis_server.url, max_connections=4)
    held = [h.call(h.pool.get_connection) for _ in range(3)]
    for conn in held:
        h.call(h.pool.release, conn)
    assert h.call(h.pool.drain, "127.0.0.1:1") == 0  # no connection there
    assert h.stats().open == 3
    assert h.call(h.pool.drain, f"127.0.0.1:{redis_server.port}") == 3
    assert h.stats().open == 0 and h.stats().drains == 2
    with pytest.raises(ValueError, match="host:port"):
        h.call(h.pool.drain, "nonsense")
    assert h.call(h.client.ping)


def test_drain_one_of_several_endpoints(
    make: Callable[..., Harness], redis_servers: Callable[..., list[RedisServer]]
) -> None:
    """``endpoints=[...]`` (both pools): draining one proxy, named as configured, replaces its
    connections and leaves the other's."""
    a, b = redis_servers(2)
    h = make(a.url, endpoints=[f"{a.host}:{a.port}", f"{b.host}:{b.port}"], max_connections=4)
    held = [h.call(h.pool.get_connection) for _ in range(4)]
    for conn in held:
        h.call(h.pool.release, conn)
    assert clients_on(a) == clients_on(b) == 2
    old_a, old_b = server_ids(a), server_ids(b)
    assert h.call(h.pool.drain, f"{a.host}:{a.port}") == 2
    # a's connections are replaced (rebalancing may dial fresh ones to it); b's stay
    until(lambda: not server_ids(a) & old_a)
    stats = h.stats()
    assert server_ids(b) >= old_b or stats.closed["rebalance"]
    assert stats.closed["drain"] == 2 and stats.drains == 1
    assert h.call(h.pool.drain, (b.host, b.port)) >= 1  # a (host, port) pair works too
    with pytest.raises(ValueError, match="not one of the pool's endpoints"):
        h.call(h.pool.drain, f"{a.host}:1")
    assert h.call(h.client.ping)


# ----------------------------------------------------------------------------- settings
def test_settings_from_url_and_validation(redis_url: str) -> None:
    pool = fairpool.ConnectionPool.from_url(redis_url + "?leak_timeout=1.5&max_waiting=3")
    assert pool.config.leak_timeout == 1.5 and pool.config.max_waiting == 3
    pool = fairpool.ConnectionPool.from_url(redis_url + "?leak_timeout=none&max_waiting=none")
    assert pool.config.leak_timeout is None and pool.config.max_waiting is None
    with pytest.raises(ValueError, match="'max_waiting' must be `None` or integer ≥ 0"):
        fairpool.asyncio.ConnectionPool(max_waiting=-1)
    with pytest.raises(ValueError, match="'leak_timeout'"):
        fairpool.BlockingConnectionPool(leak_timeout=0)
