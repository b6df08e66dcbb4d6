"""The asyncio pools (fairpool.asyncio) on real redis-server processes.

No pytest-asyncio: each test is a plain function that runs its coroutine with :func:`arun`.
The rules themselves (policies, caps, waiter queue, lifecycle) are the core's and are covered by
the core's property suite; these tests check the asyncio shell around it — real connections,
redis.asyncio's client features, cancellation, server restarts and the fair shrinking over
several servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import MaxConnectionsError

from fairpool import Policy, PoolClosedError
from fairpool.asyncio import BlockingConnectionPool, ConnectionPool
from fairpool.tools.servers import RedisServer

from .compat import needs_events, needs_maint_notifications

T = TypeVar("T")
RedisServersFactory = Callable[..., list[RedisServer]]


def arun(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def client_id(conn: Any) -> int:
    """The server-side id of a borrowed connection (CLIENT ID on that very connection)."""
    await conn.send_command("CLIENT", "ID")
    return int(await conn.read_response())


def local_addr(conn: Any) -> str | None:
    """``ip:port`` of the connection's local end (as the server's CLIENT LIST shows it)."""
    writer = getattr(conn, "_writer", None)
    if writer is None:
        return None
    host, port = writer.get_extra_info("sockname")[:2]
    return f"{host}:{port}"


def server_addrs(server: RedisServer, name: str) -> set[str]:
    """Addresses of the server's clients called ``name``."""
    with server.client() as admin:
        return {c["addr"] for c in admin.client_list() if c.get("name") == name}


def server_addrs_for(url: str, name: str) -> set[str]:
    """Addresses of the clients called ``name`` of the server at ``url``."""
    with redis.Redis.from_url(url) as admin:
        return {c["addr"] for c in admin.client_list() if c.get("name") == name}


def pool_addrs(pool: ConnectionPool) -> set[str]:
    """Local addresses of the pool's connected connections."""
    conns = pool._get_free_connections() + list(pool._get_in_use_connections())
    return {a for a in map(local_addr, conns) if a is not None}


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --------------------------------------------------------------------------------- hand-out order
@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # three connections c1, c2, c3 (created in that order), released as c2, c1, c3
        ("lifo", [3, 3, 3, 3, 3, 3]),  # the most recently released, again and again
        ("fifo", [2, 1, 3, 2, 1, 3]),  # the least recently released: release order, rotating
        ("round_robin", [1, 2, 3, 1, 2, 3]),  # creation order, after the last one handed out (c3)
    ],
)
def test_policy_hand_out_order(redis_url: str, policy: str, expected: list[int]) -> None:
    async def main() -> list[int]:
        pool = ConnectionPool.from_url(redis_url, policy=policy)
        conns = [await pool.get_connection() for _ in range(3)]
        ids = [await client_id(c) for c in conns]
        for i in (1, 0, 2):
            await pool.release(conns[i])
        client = aredis.Redis(connection_pool=pool)
        seen = [await client.client_id() for _ in range(6)]
        await pool.aclose()
        return [ids.index(s) + 1 for s in seen]

    assert arun(main()) == expected


# -------------------------------------------------------------------- redis.asyncio's features
@pytest.mark.parametrize("protocol", [2, 3])
def test_commands_pipelines_pubsub_lock(redis_url: str, protocol: int) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url, protocol=protocol, decode_responses=True)
        r = aredis.Redis(connection_pool=pool)
        assert await r.set("k", "v")
        assert await r.get("k") == "v"
        await r.hset("h", mapping={"a": "1", "b": "2"})
        assert await r.hgetall("h") == {"a": "1", "b": "2"}
        async with r.pipeline(transaction=True) as pipe:
            pipe.incr("n").incr("n").get("n")
            assert await pipe.execute() == [1, 2, "2"]
        async with r.pipeline(transaction=False) as pipe:
            pipe.set("x", 1).get("x")
            assert await pipe.execute() == [True, "1"]

        pubsub = r.pubsub()
        await pubsub.subscribe("chan")
        assert await r.publish("chan", "hello") == 1
        message = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message:
                break
        assert message is not None and message["data"] == "hello"
        await pubsub.aclose()

        lock = r.lock("lock", timeout=5)
        assert await lock.acquire(blocking=False)
        assert not await r.lock("lock").acquire(blocking=False)
        await lock.release()
        async with r.lock("lock", timeout=5):
            assert await r.exists("lock") == 1

        # watch/multi on a pipeline that holds its connection
        async with r.pipeline() as pipe:
            await pipe.watch("n")
            current = int(await pipe.get("n"))
            pipe.multi()
            pipe.set("n", current + 10)
            assert await pipe.execute() == [True]
        assert await r.get("n") == "12"

        stats = pool.stats()
        assert stats.in_use == 0 and stats.waiting == 0
        hello = await r.execute_command("HELLO")
        proto = (
            hello["proto"]
            if isinstance(hello, dict)
            else dict(zip(hello[::2], hello[1::2], strict=True))["proto"]
        )
        assert int(proto) == protocol
        await r.aclose()
        await pool.aclose()

    arun(main())


def test_client_from_pool_closes_it(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url)
        r = aredis.Redis.from_pool(pool)
        assert await r.ping()
        await r.aclose()  # as with redis.asyncio's pool: disconnects, the pool stays usable
        assert not pool.closed
        assert await r.ping()
        await pool.ashutdown()  # the terminal close
        assert pool.closed
        with pytest.raises(PoolClosedError):
            await pool.get_connection()

    arun(main())


# ----------------------------------------------------------------------------- caps and waits
def test_non_blocking_cap_raises_max_connections_error(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url, max_connections=2)
        held = [await pool.get_connection() for _ in range(2)]
        with pytest.raises(MaxConnectionsError, match="2 connections"):
            await pool.get_connection()
        with pytest.raises(MaxConnectionsError):
            await aredis.Redis(connection_pool=pool).ping()
        await pool.release(held.pop())
        assert await aredis.Redis(connection_pool=pool).ping()
        await pool.release(held.pop())
        assert pool.stats().in_use == 0
        await pool.aclose()

    arun(main())


def test_blocking_timeout_raises_connection_error_naming_size_and_wait(redis_url: str) -> None:
    async def main() -> None:
        pool = BlockingConnectionPool.from_url(redis_url, max_connections=2, timeout=0.2)
        held = [await pool.get_connection() for _ in range(2)]
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError) as info:
            await pool.get_connection()
        waited = time.monotonic() - start
        assert 0.18 <= waited < 2.0
        message = str(info.value)
        assert "2 connections" in message and "waited 0.2" in message and "timeout=0.2" in message
        stats = pool.stats()
        assert stats.timeouts == 1 and stats.waiting == 0
        for conn in held:
            await pool.release(conn)
        await pool.aclose()

    arun(main())


def test_blocking_pool_defaults_and_from_url_settings(redis_url: str) -> None:
    pool = BlockingConnectionPool()
    assert (pool.block, pool.max_connections, pool.timeout, pool.policy) == (
        True,
        50,
        20,
        Policy.FIFO,
    )
    assert BlockingConnectionPool(queue_class=asyncio.LifoQueue).policy is Policy.LIFO
    assert BlockingConnectionPool(queue_class=asyncio.Queue).policy is Policy.FIFO
    url = (
        redis_url + "?policy=round_robin&max_connections=7&max_idle=3&min_idle=1&block=true"
        "&timeout=1.5&idle_timeout=30&max_lifetime=600&health_check=ping&health_check_after=0"
    )
    cfg = ConnectionPool.from_url(url).config
    assert cfg.policy is Policy.ROUND_ROBIN
    assert (cfg.max_connections, cfg.max_idle, cfg.min_idle, cfg.block) == (7, 3, 1, True)
    assert (cfg.timeout, cfg.idle_timeout, cfg.max_lifetime) == (1.5, 30.0, 600.0)
    assert (cfg.health_check, cfg.health_check_after) == ("ping", 0.0)
    with pytest.raises(ValueError, match="max_idle"):
        ConnectionPool(max_idle=-1)
    with pytest.raises(ValueError, match="policy"):
        ConnectionPool.from_url(redis_url + "?policy=random")


def test_waiters_are_served_in_arrival_order(redis_url: str) -> None:
    async def main() -> list[int]:
        pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=5)
        first = await pool.get_connection()
        order: list[int] = []

        async def borrower(i: int) -> None:
            conn = await pool.get_connection()
            order.append(i)
            await asyncio.sleep(0)
            await pool.release(conn)

        tasks = []
        for i in range(10):
            tasks.append(asyncio.create_task(borrower(i)))
            assert await wait_until(lambda i=i: pool.stats().waiting == i + 1)
        await pool.release(first)
        await asyncio.gather(*tasks)
        await pool.aclose()
        return order

    assert arun(main()) == list(range(10))


class ArrivalOrderPool(BlockingConnectionPool):
    """Tickets every borrow as it arrives and notes, for the borrows that had to wait, the order
    in which they get their connection. The ticket is taken in the same step as the pool's own
    critical section (nothing is awaited in between), so ticket order is the queue's order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tickets = itertools.count()
        self.served: list[int] = []  # tickets of the borrows that waited, in the order served

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        ticket = next(self.tickets)
        waits = not self.can_get_connection()  # no idle connection, no room, or others waiting
        conn = await super().get_connection(*args, **kwargs)
        if waits:
            self.served.append(ticket)
        return conn


def test_1000_tasks_on_16_connections_are_served_in_turn(redis_url: str) -> None:
    """A crowd of 1000 tasks looping on 16 connections: every borrow that has to wait gets its
    connection strictly in arrival order, and all but a few borrows wait.

    The order is read where each task gets its connection back from ``get_connection``: the pool
    wakes waiters in queue order and the event loop resumes woken tasks in the order they were
    woken, so load and timing cannot change it, and one waiter served out of turn fails the
    test. How far the tasks drift apart is not asserted: a task queues for its next round once
    its reply has been read, and under CPU load the replies on the 16 connections are read out
    of the order the commands were sent (bursts come back reversed), so a task can fall a round
    behind tasks served after it while every waiter is served in turn."""
    rounds, tasks, size = 5, 1000, 16

    async def main() -> None:
        pool = ArrivalOrderPool.from_url(
            redis_url, max_connections=size, timeout=20, client_name="fp-crowd"
        )
        r = aredis.Redis(connection_pool=pool)

        async def worker() -> None:
            for _ in range(rounds):
                await r.incr("served")

        await asyncio.gather(*(worker() for _ in range(tasks)))
        assert await r.get("served") == str(rounds * tasks).encode()
        stats = pool.stats()
        assert stats.created == size and stats.open == size and stats.in_use == 0
        assert len(server_addrs_for(redis_url, "fp-crowd")) == size
        # the waiting borrows, each counted once by the pool too
        assert stats.waits == len(pool.served)
        # Only the first `size` borrows dial; once the queue has drained, the tasks then holding
        # a connection (at most `size`) borrow their remaining rounds without waiting.
        assert len(pool.served) >= rounds * tasks - size - size * (rounds - 1)
        served = pool.served
        late = [(a, b) for a, b in itertools.pairwise(served) if b < a]
        assert not late, (
            f"waiters served out of arrival order (ticket, then an older one): {late[:5]}"
        )
        await pool.aclose()

    arun(main())


# ------------------------------------------------------------------------------- cancellation
def test_cancelled_waiter_gives_back_a_connection_handed_to_it(redis_url: str) -> None:
    async def main() -> None:
        pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=None)
        conn = await pool.get_connection()
        b = asyncio.create_task(pool.get_connection())
        c = asyncio.create_task(pool.get_connection())
        assert await wait_until(lambda: pool.stats().waiting == 2)
        await pool.release(conn)  # handed straight to b ...
        b.cancel()  # ... which is cancelled before it could run
        with pytest.raises(asyncio.CancelledError):
            await b
        got = await asyncio.wait_for(c, 2)  # b gave it back: c gets it
        assert got is conn
        await pool.release(got)
        stats = pool.stats()
        assert (stats.in_use, stats.idle, stats.waiting, stats.open) == (0, 1, 0, 1)
        await pool.aclose()

    arun(main())


def test_grant_racing_the_timeout_is_used(redis_url: str) -> None:
    async def main() -> None:
        pool = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.05)
        conn = await pool.get_connection()
        waiter = asyncio.create_task(pool.get_connection())
        assert await wait_until(lambda: pool.stats().waiting == 1)
        time.sleep(0.1)  # block the loop: the deadline passes while nothing can run ...
        await pool.release(conn)  # ... and the release hands the connection over first
        assert await waiter is conn
        assert pool.stats().timeouts == 0
        await pool.release(conn)
        await pool.aclose()

    arun(main())


class SlowConnection(Connection):
    """Takes 0.3 s to connect."""

    async def connect(self) -> None:
        if self._writer is None:
            await asyncio.sleep(0.3)
        await super().connect()


def test_cancelled_dial_finishes_in_the_background(redis_url: str) -> None:
    """A caller cancelled while its dial is in progress does not throw the dial away: it
    finishes, and the connection goes to the next waiter (or the idle set)."""

    async def main() -> None:
        pool = BlockingConnectionPool.from_url(
            redis_url, connection_class=SlowConnection, max_connections=1, timeout=5
        )
        task = asyncio.create_task(pool.get_connection())
        assert await wait_until(lambda: pool.stats().dialling == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().dialling == 1  # still dialling, for whoever comes next
        waiter = asyncio.create_task(pool.get_connection())
        conn = await waiter  # handed the connection the cancelled caller started
        stats = pool.stats()
        assert (stats.created, stats.dialling, stats.in_use, stats.waiting) == (1, 0, 1, 0)
        await pool.release(conn)
        await pool.aclose()

        # with nobody waiting, an abandoned dial joins the idle set
        pool = BlockingConnectionPool.from_url(redis_url, connection_class=SlowConnection)
        task = asyncio.create_task(pool.get_connection())
        assert await wait_until(lambda: pool.stats().dialling == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await wait_until(lambda: pool.stats().idle == 1)
        stats = pool.stats()
        assert (stats.created, stats.dialling, stats.in_use, stats.borrows) == (1, 0, 0, 0)
        await pool.aclose()

    arun(main())


def test_cancelled_reconnect_finishes_in_the_background(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url, connection_class=SlowConnection)
        conn = await pool.get_connection()
        await pool.release(conn)
        await pool.disconnect()  # the idle connection must reconnect on its next borrow
        task = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.stats().in_use == 1  # the reconnect goes on ...
        assert await wait_until(lambda: pool.stats().idle == 1)  # ... and gives it back
        assert await pool.get_connection() is conn
        stats = pool.stats()
        assert (stats.created, stats.closed_total, stats.in_use) == (1, 0, 1)
        await pool.release(conn)
        await pool.aclose()

    arun(main())


def test_disconnect_during_abandoned_dials_keeps_counts_exact(redis_url: str) -> None:
    """disconnect() closes the sockets the pool holds; a dial still running for a caller that
    gave up lands afterwards as a fresh idle connection; ashutdown() then closes everything."""

    async def main() -> None:
        fds = len(os.listdir("/proc/self/fd"))
        pool = ConnectionPool.from_url(redis_url, connection_class=SlowConnection)
        conn = await pool.get_connection()
        task = asyncio.create_task(pool.get_connection())
        assert await wait_until(lambda: pool.stats().dialling == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await pool.release(conn)
        await pool.disconnect()
        assert await wait_until(lambda: pool.stats().dialling == 0 and pool.stats().idle == 2)
        stats = pool.stats()
        assert (stats.created, stats.open, stats.closed_total) == (2, 2, 0)
        assert await aredis.Redis(connection_pool=pool).ping()
        await pool.ashutdown()
        stats = pool.stats()
        assert (stats.open, stats.closed["closed"]) == (0, 2)
        assert len(os.listdir("/proc/self/fd")) == fds

    arun(main())


def test_ashutdown_stops_abandoned_dials(redis_url: str) -> None:
    async def main() -> None:
        fds = len(os.listdir("/proc/self/fd"))
        pool = ConnectionPool.from_url(redis_url, connection_class=SlowConnection)
        tasks = [asyncio.create_task(pool.get_connection()) for _ in range(3)]
        assert await wait_until(lambda: pool.stats().dialling == 3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.ashutdown()
        stats = pool.stats()
        assert (stats.dialling, stats.open, stats.created) == (0, 0, 0)
        await asyncio.sleep(0.4)  # past the dial time: nothing comes back to life
        assert (pool.stats().open, pool.stats().created) == (0, 0)
        assert len(os.listdir("/proc/self/fd")) == fds

    arun(main())


@needs_maint_notifications
def test_cancelled_release_during_reconnect_io_still_releases(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url)
        conn = await pool.get_connection()
        conn.mark_for_reconnect()  # release must disconnect it first (an await)
        task = asyncio.create_task(pool.release(conn))
        await asyncio.sleep(0)  # let it start and suspend inside disconnect()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = pool.stats()
        assert stats.in_use == 0
        assert stats.closed["error"] == 1  # half-disconnected: closed rather than reused
        assert await aredis.Redis(connection_pool=pool).ping()

        # a second release while the first is still disconnecting is ignored
        conn = await pool.get_connection()
        conn.mark_for_reconnect()
        first = asyncio.create_task(pool.release(conn))
        await asyncio.sleep(0)
        await pool.release(conn)
        assert pool.stats().in_use == 1  # still the first release's
        await first
        stats = pool.stats()
        assert (stats.in_use, stats.idle, stats.closed["error"]) == (0, 1, 1)
        await pool.aclose()

    arun(main())


def test_cancellation_storm_leaks_and_duplicates_nothing(
    redis_url: str, shared_redis: RedisServer
) -> None:
    name = "fp-storm"

    async def main() -> None:
        pool = BlockingConnectionPool.from_url(
            redis_url, max_connections=8, timeout=0.03, client_name=name, health_check_after=0
        )
        r = aredis.Redis(connection_pool=pool)
        held: set[int] = set()
        duplicates: list[Any] = []
        rng = random.Random(7)
        running = True

        async def direct_user() -> None:
            while running:
                try:
                    conn = await pool.get_connection()
                except redis.ConnectionError:
                    continue  # timed out in the queue
                try:
                    if id(conn) in held:
                        duplicates.append(conn)
                    held.add(id(conn))
                    await conn.send_command("PING")
                    assert await conn.read_response() in (b"PONG", "PONG")
                    await asyncio.sleep(rng.random() * 0.003)
                finally:
                    held.discard(id(conn))
                    await pool.release(conn)

        async def client_user() -> None:
            while running:
                try:
                    await r.incr("storm")
                    await asyncio.sleep(rng.random() * 0.002)
                except redis.ConnectionError:
                    pass

        factories = [direct_user, client_user]
        tasks = [asyncio.create_task(factories[i % 2]()) for i in range(60)]
        deadline = time.monotonic() + 2.5
        cancelled = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(rng.random() * 0.004)
            i = rng.randrange(len(tasks))
            tasks[i].cancel()
            cancelled += 1
            tasks.append(asyncio.create_task(factories[i % 2]()))
            tasks[i], tasks[-1] = tasks[-1], tasks[i]
        running = False
        # Python < 3.12's asyncio.wait_for (which redis.asyncio uses to send) can swallow a
        # cancellation that races with completion, so a cancelled task may carry on: stop the
        # loops with a flag and cancel until everything has ended.
        pending = {t for t in tasks if not t.done()}
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

        assert not duplicates
        stats = pool.stats()
        print("storm: cancelled", cancelled, "tasks;", stats)
        assert cancelled > 300
        assert stats.timeouts > 0  # queue timeouts fired in the storm too
        assert (stats.in_use, stats.waiting, stats.dialling) == (0, 0, 0), stats
        assert stats.open <= 8
        # every connection the server still sees is one the pool holds, and vice versa
        # (closed sockets take a moment to be noticed by the server)
        ok = await wait_until(lambda: server_addrs(shared_redis, name) == pool_addrs(pool))
        assert ok, (server_addrs(shared_redis, name), pool_addrs(pool))
        # and the pool still works at full width
        assert all(await asyncio.gather(*(r.ping() for _ in range(32))))
        await pool.aclose()
        assert await wait_until(lambda: not server_addrs(shared_redis, name))

    arun(main())


# -------------------------------------------------------------------------- server failures
@pytest.mark.parametrize("kill", [False, True], ids=["restart", "kill-restart"])
def test_recovers_after_server_restart_with_retries_off(
    redis_server: RedisServer, kill: bool
) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_server.url, retry=Retry(NoBackoff(), 0))
        r = aredis.Redis(connection_pool=pool)
        await asyncio.gather(*(r.incr("n") for _ in range(6)))
        before = pool.stats()
        assert before.open >= 2
        await asyncio.to_thread(redis_server.restart, kill=kill)
        await asyncio.sleep(0.3)  # > health_check_after: every idle connection is checked
        results = await asyncio.gather(*(r.incr("n") for _ in range(10)))
        assert sorted(results) == list(range(1, 11))  # the restarted server starts empty
        after = pool.stats()
        assert after.closed["health_check"] >= before.open
        assert after.created > before.created
        await pool.aclose()

    arun(main())


def test_ping_health_check_and_async_callable_check(redis_server: RedisServer) -> None:
    async def main() -> None:
        calls: list[Any] = []

        async def check(conn: Any) -> bool:
            calls.append(conn)
            await conn.send_command("PING")
            return await conn.read_response() == b"PONG" and len(calls) > 1

        pool = ConnectionPool.from_url(redis_server.url, health_check=check, health_check_after=0)
        r = aredis.Redis(connection_pool=pool)
        await r.ping()
        await r.ping()  # first check fails: that connection is closed and a new one dialled
        assert pool.stats().closed["health_check"] == 1 and pool.stats().created == 2
        await pool.aclose()

        pool = ConnectionPool.from_url(
            redis_server.url, health_check="ping", health_check_after=0, retry=Retry(NoBackoff(), 0)
        )
        r = aredis.Redis(connection_pool=pool)
        await r.ping()
        await asyncio.to_thread(redis_server.restart)
        assert await r.ping()
        assert pool.stats().closed["health_check"] == 1
        await pool.aclose()

    arun(main())


# ----------------------------------------------------------------------- lifecycle settings
def test_max_idle_max_lifetime_and_idle_timeout(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url, max_idle=1)
        conns = [await pool.get_connection() for _ in range(3)]
        for conn in conns:
            await pool.release(conn)
        assert pool.stats().closed["max_idle"] == 2 and pool.stats().open == 1
        await pool.aclose()

        pool = ConnectionPool.from_url(redis_url, max_lifetime=0.2, lifetime_jitter=0)
        conn = await pool.get_connection()
        await asyncio.sleep(0.25)
        await pool.release(conn)
        assert pool.stats().closed["lifetime"] == 1 and pool.stats().open == 0
        await pool.aclose()

        pool = ConnectionPool.from_url(redis_url, policy="lifo", idle_timeout=0.2)
        conns = [await pool.get_connection() for _ in range(3)]
        for conn in conns:
            await pool.release(conn)
        await asyncio.sleep(0.3)
        await pool.maintain()
        assert pool.stats().closed["idle"] == 3 and pool.stats().open == 0
        await pool.aclose()

    arun(main())


def test_background_maintenance_task_refills_min_idle_and_stops_on_aclose(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url, min_idle=2, maintenance_interval=0.05)
        task = pool.maintenance_task
        assert task is not None  # started at once: the pool was built inside a running loop
        assert await wait_until(lambda: pool.stats().idle == 2)
        assert pool.stats().borrows == 0
        waiting = BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=None)
        held = await waiting.get_connection()
        blocked = asyncio.create_task(waiting.get_connection())
        assert await wait_until(lambda: waiting.stats().waiting == 1)
        await waiting.ashutdown()
        with pytest.raises(PoolClosedError):
            await blocked
        await waiting.release(held)
        assert waiting.stats().open == 0

        await pool.aclose()  # stops the task; the next use starts it again
        await asyncio.sleep(0)
        assert task.done() and pool.maintenance_task is None
        await pool.release(await pool.get_connection())
        restarted = pool.maintenance_task
        assert restarted is not None and not restarted.done()
        await pool.ashutdown()
        await asyncio.sleep(0)
        assert restarted.done() and pool.maintenance_task is None
        with pytest.raises(PoolClosedError):
            await pool.get_connection()
        await pool.ashutdown()  # twice is harmless

    arun(main())

    # built outside a loop: the task starts on first use
    pool = ConnectionPool.from_url(redis_url, maintenance_interval=0.05)
    assert pool.maintenance_task is None

    async def use() -> None:
        await aredis.Redis(connection_pool=pool).ping()
        assert pool.maintenance_task is not None and not pool.maintenance_task.done()
        await pool.aclose()

    arun(use())


def test_disconnect_keeps_connections_and_release_ignores_strangers(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url)
        r = aredis.Redis(connection_pool=pool)
        await asyncio.gather(*(r.ping() for _ in range(3)))
        created = pool.stats().created
        await pool.disconnect()
        assert all(c._writer is None for c in pool._get_free_connections())
        assert await r.ping()
        assert pool.stats().created == created  # reconnected, not replaced

        conn = await pool.get_connection()
        await pool.release(conn)
        await pool.release(conn)  # a second release is ignored
        stranger = Connection(host="127.0.0.1", port=1)
        await pool.release(stranger)  # so is a connection the pool does not own
        stats = pool.stats()
        assert stats.in_use == 0 and stats.idle == created
        await pool.aclose()

    arun(main())


# --------------------------------------------------------------- fair and shrinking, 4 servers
def balanced_connection_class(ports: list[int]) -> type[Connection]:
    """A connection class that dials the next port on each new connection, as an L4 balancer in
    front of several proxies would spread them."""
    turn = itertools.cycle(ports)

    class Balanced(Connection):
        def __init__(self, **kwargs: Any) -> None:
            kwargs["port"] = next(turn)
            super().__init__(**kwargs)

    return Balanced


@pytest.mark.parametrize("policy", ["fifo", "round_robin"])
def test_fair_and_shrinking_over_four_servers(
    redis_servers: RedisServersFactory, policy: str
) -> None:
    servers = redis_servers(4)
    name = f"fp-shrink-{policy}"

    def counts() -> list[int]:
        result = []
        for server in servers:
            with server.client() as admin:
                result.append(int(admin.get("k") or 0))
        return result

    def conns_per_server() -> list[int]:
        return [len(server_addrs(s, name)) for s in servers]

    async def main() -> None:
        pool = ConnectionPool(
            balanced_connection_class([s.port for s in servers]),
            host="127.0.0.1",
            max_connections=32,
            policy=policy,
            idle_timeout=1,
            client_name=name,
        )
        r = aredis.Redis(connection_pool=pool)
        # a burst opens 32 connections, 8 per server
        burst = [await pool.get_connection() for _ in range(32)]
        for conn in burst:
            await pool.release(conn)
        assert conns_per_server() == [8, 8, 8, 8]

        # then 2 tasks of steady load
        stop = asyncio.Event()

        async def load() -> None:
            while not stop.is_set():
                await r.incr("k")
                await asyncio.sleep(0)

        workers = [asyncio.create_task(load()) for _ in range(2)]
        await asyncio.sleep(3.2)  # a few idle_timeout windows
        first = await asyncio.to_thread(counts)
        await asyncio.sleep(1.0)
        last = await asyncio.to_thread(counts)
        stop.set()
        await asyncio.gather(*workers)

        stats = pool.stats()
        per_server = await asyncio.to_thread(conns_per_server)
        assert stats.open <= 4 and sum(per_server) == stats.open, (stats, per_server)
        assert stats.closed["demand"] >= 28
        assert max(per_server) - min(per_server) <= 1  # spread evenly over the servers
        # the commands are spread evenly over the connections that remain
        share = [b - a for a, b in zip(first, last, strict=True)]
        active = [s / n for s, n in zip(share, per_server, strict=True) if n]
        assert min(active) > 0
        assert max(active) / (sum(active) / len(active)) < 1.3, (share, per_server)
        assert sum(s for s, n in zip(share, per_server, strict=True) if not n) == 0
        print(policy, "connections per server", per_server, "INCRs in the last second", share)
        await pool.aclose()

    arun(main())


# ------------------------------------------------------------- redis.asyncio's pool surface
@needs_maint_notifications
def test_pool_lock_holders_and_reconnect_marks_are_honoured(redis_url: str) -> None:
    async def main() -> None:
        pool = ConnectionPool.from_url(redis_url)
        r = aredis.Redis(connection_pool=pool)
        await asyncio.gather(*(r.ping() for _ in range(2)))
        # redis.asyncio's maintenance-notification handlers rewrite pool state under _lock
        async with pool._lock:
            borrow = asyncio.create_task(pool.get_connection())
            await asyncio.sleep(0.05)
            assert not borrow.done()
        conn = await borrow
        await pool.update_active_connections_for_reconnect()  # marks borrowed connections
        assert conn.should_reconnect()
        await pool.release(conn)
        assert conn._writer is None and not conn.should_reconnect()  # disconnected on release
        assert pool.stats().idle == 2 and pool.stats().closed_total == 0  # kept: reconnects
        assert [n for n, _ in pool.get_connection_count()] == [2, 0]
        assert await r.ping()
        await pool.aclose()

    arun(main())


class _Token:
    """A stand-in for a streaming credential provider's token (AUTH <oid> <value>)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user, password

    def try_get(self, key: str) -> str:
        return self.user

    def get_value(self) -> str:
        return self.password


@needs_events
def test_re_auth_idle_now_and_borrowed_on_release(redis_servers: RedisServersFactory) -> None:
    (server,) = redis_servers(1, args=["--requirepass", "old"])

    async def main() -> None:
        pool = ConnectionPool.from_url(server.url, password="old")
        r = aredis.Redis(connection_pool=pool)
        await asyncio.gather(*(r.ping() for _ in range(3)))
        borrowed = await pool.get_connection()
        with server.client(password="old") as admin:

            def auth_calls() -> int:
                return int(admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0))

            admin.config_set("requirepass", "new")
            before = auth_calls()
            await pool.re_auth_callback(_Token("default", "new"))  # the 2 idle ones, now
            assert auth_calls() - before == 2
            assert borrowed._re_auth_token is not None  # the borrowed one: on release
            await pool.release(borrowed)
            assert borrowed._re_auth_token is None and auth_calls() - before == 3
        ids = {await r.client_id() for _ in range(6)}  # every connection still works
        assert len(ids) == 3 and pool.stats().closed_total == 0
        await pool.aclose()

    arun(main())


def test_get_connection_arguments_warn_as_redis_py_does(redis_url: str) -> None:
    import warnings

    async def main() -> list[bool]:
        warned = []
        for cls in (aredis.ConnectionPool, ConnectionPool):
            pool = cls.from_url(redis_url)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                conn = await pool.get_connection("GET")
            await pool.release(conn)
            warned.append(any(issubclass(w.category, DeprecationWarning) for w in caught))
            await pool.disconnect()
        return warned

    warned = arun(main())
    assert warned[0] == warned[1]


def test_a_reply_left_unread_never_reaches_the_next_caller(redis_url: str) -> None:
    """A connection released with a reply nobody read (within health_check_after, so no
    configured check is due): the next borrowers get their own replies (the sync twin is in
    tests/test_lifecycle.py)."""

    async def main() -> list[Any]:
        pool = ConnectionPool.from_url(redis_url, policy="fifo", health_check_after=60)
        r = aredis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        conns = [await pool.get_connection() for _ in range(3)]
        await r.set("k", "v")
        await conns[0].send_command("ECHO", "stray")
        await asyncio.sleep(0.05)
        for c in conns:
            await pool.release(c)
        got = [await r.get("k") for _ in range(6)]
        await pool.disconnect()
        return got

    assert arun(main()) == [b"v"] * 6
