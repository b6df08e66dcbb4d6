"""Drop-in to the letter: where redis-py's pools define the behaviour, fairpool's pools (sync and
asyncio) do the same, checked side by side on a real redis-server; and careless input gets a
clear error that names the setting or the fix, leaving the pool usable.

Each side-by-side test runs the same steps on redis-py's pool and on fairpool's and compares what
was observed, so it fails if fairpool does worse.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aredis
from redis.asyncio.connection import Connection as AsyncConnection
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

import fairpool
import fairpool.asyncio
from fairpool.config import MAX_SECONDS, connection_keywords

T = TypeVar("T")

SYNC_POOLS = {"redis-py": redis.ConnectionPool, "fairpool": fairpool.ConnectionPool}
SYNC_BLOCKING = {
    "redis-py": redis.BlockingConnectionPool,
    "fairpool": fairpool.BlockingConnectionPool,
}
ASYNC_POOLS = {"redis-py": aredis.ConnectionPool, "fairpool": fairpool.asyncio.ConnectionPool}
ASYNC_BLOCKING = {
    "redis-py": aredis.BlockingConnectionPool,
    "fairpool": fairpool.asyncio.BlockingConnectionPool,
}


def arun(coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
    """Run ``coro`` in a fresh event loop, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def _side_by_side(pools: dict[str, Any], run: Any) -> dict[str, Any]:
    """``run(pool_class)`` for redis-py's pool and fairpool's; asserts they observed the same."""
    seen = {name: run(cls) for name, cls in pools.items()}
    assert seen["fairpool"] == seen["redis-py"], seen
    return seen["fairpool"]


# ------------------------------------------------------------------ close() is redis-py's close()


def test_from_pool_close_then_ping(redis_url: str) -> None:
    """``r = Redis.from_pool(pool); r.close(); r.ping()``: redis-py's pool reconnects."""

    def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url)
        r = redis.Redis.from_pool(pool)
        r.ping()
        idle = pool.get_connection()
        pool.release(idle)
        r.close()
        after_close = idle._sock is None
        return after_close, r.ping(), r.ping()

    assert _side_by_side(SYNC_POOLS, run) == (True, True, True)


def test_with_pool_disconnects_borrowed_and_stays_usable(redis_url: str) -> None:
    def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url, max_connections=2)
        with pool:
            borrowed = pool.get_connection()
            idle = pool.get_connection()
            pool.release(idle)
        state = (borrowed._sock is None, idle._sock is None)
        borrowed.send_command("PING")  # the borrower may go on: it reconnects
        reply = borrowed.read_response()
        pool.release(borrowed)
        r = redis.Redis(connection_pool=pool)
        return state, reply, r.ping(), len(pool._get_free_connections())

    assert _side_by_side(SYNC_POOLS, run)[0] == (True, True)


def test_close_does_not_fail_waiters(redis_url: str) -> None:
    """A thread waiting at the cap keeps waiting through close(), and gets the connection."""

    def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url, max_connections=1, timeout=10)
        held = pool.get_connection()
        got: queue.Queue[Any] = queue.Queue()

        def waiter() -> None:
            try:
                conn = pool.get_connection()
                conn.send_command("PING")
                got.put(conn.read_response())
                pool.release(conn)
            except Exception as exc:
                got.put(exc)

        t = threading.Thread(target=waiter)
        t.start()
        if isinstance(pool, fairpool.ConnectionPool):
            assert _wait(lambda: pool.stats().waiting == 1)
        pool.close()
        pool.release(held)
        t.join(10)
        return got.get(timeout=1)

    assert _side_by_side(SYNC_BLOCKING, run) == b"PONG"


def test_close_stops_the_maintenance_thread_and_next_use_restarts_it(redis_url: str) -> None:
    pool = fairpool.ConnectionPool.from_url(redis_url, maintenance_interval=0.05)
    first = pool._maintainer
    assert first is not None and first.alive
    pool.close()
    assert pool._maintainer is None and _wait(lambda: not first.alive)
    r = redis.Redis(connection_pool=pool)
    assert r.ping()
    second = pool._maintainer
    assert second is not None and second is not first and second.alive
    pool.shutdown()
    assert pool._maintainer is None and _wait(lambda: not second.alive)


def test_async_arq_like_close_then_reuse(redis_url: str) -> None:
    """arq's ``Worker.close()``: ``await redis.aclose(close_connection_pool=True)``, then the same
    client is used again."""

    async def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url)
        r = aredis.Redis(connection_pool=pool)
        await r.set("dropin:arq", "1")
        await r.aclose(close_connection_pool=True)
        value = await r.get("dropin:arq")
        await r.aclose(close_connection_pool=True)
        return value, await r.ping()

    assert _side_by_side(ASYNC_POOLS, lambda cls: arun(run(cls))) == (b"1", True)


class PlainAsyncConnection(AsyncConnection):
    """``disconnect()`` without ``nowait``, as connection classes written for redis.asyncio may
    define it (redis-py's own test double does)."""

    async def disconnect(self) -> None:  # type: ignore[override]
        await super().disconnect()


@pytest.mark.parametrize("connection_class", [AsyncConnection, PlainAsyncConnection])
def test_async_with_pool_disconnects_borrowed(redis_url: str, connection_class: Any) -> None:
    async def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url, connection_class=connection_class)
        async with pool:
            c = await pool.get_connection()
            await c.connect()
        state = c._writer is None
        await pool.release(c)
        return state, await aredis.Redis(connection_pool=pool).ping()

    assert _side_by_side(ASYNC_POOLS, lambda cls: arun(run(cls))) == (True, True)

    async def shut_down() -> None:
        pool = fairpool.asyncio.ConnectionPool.from_url(
            redis_url, connection_class=connection_class
        )
        c = await pool.get_connection()
        await pool.release(c)
        await pool.ashutdown()
        assert c._writer is None and pool.stats().closed["closed"] == 1

    arun(shut_down())


def test_async_client_aclose_disconnects_two_borrowed(redis_url: str) -> None:
    async def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url)
        r = aredis.Redis.from_pool(pool)
        a = await pool.get_connection()
        b = await pool.get_connection()
        await r.aclose()
        state = (a._writer is None, b._writer is None)
        await pool.release(a)
        await pool.release(b)
        return state, await r.ping()

    assert _side_by_side(ASYNC_POOLS, lambda cls: arun(run(cls))) == ((True, True), True)


def test_async_aclose_does_not_fail_waiters(redis_url: str) -> None:
    async def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url, max_connections=1, timeout=10)
        held = await pool.get_connection()
        waiter = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.05)
        await pool.aclose()
        await pool.release(held)
        conn = await waiter
        await conn.send_command("PING")
        reply = await conn.read_response()
        await pool.release(conn)
        return reply

    assert _side_by_side(ASYNC_BLOCKING, lambda cls: arun(run(cls))) == b"PONG"


def test_async_aclose_stops_maintenance_and_ashutdown_is_terminal(redis_url: str) -> None:
    async def main() -> None:
        pool = fairpool.asyncio.ConnectionPool.from_url(redis_url, maintenance_interval=0.05)
        r = aredis.Redis(connection_pool=pool)
        assert await r.ping()
        task = pool.maintenance_task
        assert task is not None
        await r.aclose(close_connection_pool=True)
        await asyncio.sleep(0)
        assert task.done() and pool.maintenance_task is None and not pool.closed
        assert await r.ping()
        assert pool.maintenance_task is not None
        await pool.ashutdown()
        assert pool.closed
        with pytest.raises(fairpool.PoolClosedError):
            await r.ping()

    arun(main())


# ------------------------------------------------------------------------------------- hooks


def test_async_ensure_connection_and_make_connection_overrides_are_called(redis_url: str) -> None:
    """A subclass overriding ``ensure_connection`` / ``make_connection`` sees them called as
    redis.asyncio's pool calls them: one make per new connection, one ensure per borrow."""

    def subclass(base: Any) -> Any:
        class Hooked(base):  # type: ignore[misc, valid-type]
            calls: list[str]

            def make_connection(self) -> Any:
                self.calls.append("make")
                return super().make_connection()

            async def ensure_connection(self, connection: Any) -> None:
                self.calls.append("ensure")
                await super().ensure_connection(connection)

        return Hooked

    async def run(cls: Any) -> Any:
        pool = subclass(cls).from_url(redis_url)
        pool.calls = []
        r = aredis.Redis(connection_pool=pool)
        for _ in range(3):
            await r.ping()
        a = await pool.get_connection()
        b = await pool.get_connection()
        await pool.release(a)
        await pool.release(b)
        return pool.calls

    calls = _side_by_side(ASYNC_POOLS, lambda cls: arun(run(cls)))
    assert calls.count("make") == 2 and calls.count("ensure") == 5


def test_sync_make_connection_override_is_called(redis_url: str) -> None:
    def run(cls: Any) -> Any:
        class Hooked(cls):  # type: ignore[misc, valid-type]
            made = 0

            def make_connection(self, *args: Any) -> Any:
                type(self).made += 1
                return super().make_connection(*args)

        pool = Hooked.from_url(redis_url)
        a = pool.get_connection()
        b = pool.get_connection()
        pool.release(a)
        pool.release(b)
        redis.Redis(connection_pool=pool).ping()
        return Hooked.made

    assert _side_by_side(SYNC_POOLS, run) == 2


def test_connection_create_time_reported_as_redis_py_does(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each new connection's creation time goes to redis-py's recorder (looked up in
    ``redis.connection`` / ``redis.asyncio.connection`` per call, as redis-py's pools do), with
    the pool and a positive duration; reused connections report nothing."""
    calls: list[tuple[Any, float]] = []

    def record(*, connection_pool: Any, duration_seconds: float) -> None:
        calls.append((connection_pool, duration_seconds))

    async def arecord(*, connection_pool: Any, duration_seconds: float) -> None:
        record(connection_pool=connection_pool, duration_seconds=duration_seconds)

    monkeypatch.setattr(redis.connection, "record_connection_create_time", record)
    monkeypatch.setattr(redis.asyncio.connection, "record_connection_create_time", arecord)

    def run(cls: Any) -> Any:
        calls.clear()
        pool = cls.from_url(redis_url)
        a, b = pool.get_connection(), pool.get_connection()
        pool.release(a)
        pool.release(b)
        pool.release(pool.get_connection())
        return [(p is pool, d > 0) for p, d in calls]

    assert _side_by_side(SYNC_POOLS, run) == [(True, True)] * 2

    async def arun_pool(cls: Any) -> Any:
        calls.clear()
        pool = cls.from_url(redis_url)
        a, b = await pool.get_connection(), await pool.get_connection()
        await pool.release(a)
        await pool.release(b)
        await pool.release(await pool.get_connection())
        return [(p is pool, d > 0) for p, d in calls]

    assert _side_by_side(ASYNC_POOLS, lambda cls: arun(arun_pool(cls))) == [(True, True)] * 2


@pytest.mark.parametrize("value", [-1, "5", 2.5])
@pytest.mark.parametrize(
    "pools", [SYNC_POOLS, SYNC_BLOCKING, ASYNC_POOLS, ASYNC_BLOCKING], ids=lambda p: p["fairpool"]
)
def test_max_connections_error_contains_redis_py_text(pools: dict[str, Any], value: Any) -> None:
    for cls in pools.values():
        with pytest.raises(ValueError, match='"max_connections" must be a positive integer'):
            cls(max_connections=value)
    with pytest.raises(ValueError, match="fairpool setting 'max_connections' must be"):
        pools["fairpool"](max_connections=value)


def _normalised_counts(pool: Any) -> list[tuple[int, dict[str, Any]]]:
    counts = pool.get_connection_count()
    name = redis.observability.attributes.get_pool_name(pool)
    out = []
    for n, attrs in counts:
        attrs = dict(attrs)
        for key, value in attrs.items():
            if value == name:
                attrs[key] = "<pool name>"
        out.append((n, attrs))
    return out


def test_get_connection_count_matches_redis_py(redis_url: str) -> None:
    def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url)
        seen = [_normalised_counts(pool)]
        conns = [pool.get_connection() for _ in range(3)]
        seen.append(_normalised_counts(pool))
        pool.release(conns[0])
        seen.append(_normalised_counts(pool))
        pool.close()
        seen.append(_normalised_counts(pool))
        return seen

    seen = _side_by_side(SYNC_POOLS, run)
    assert [[n for n, _ in s] for s in seen] == [[0, 0], [0, 3], [1, 2], [1, 2]]


def test_async_get_connection_count_matches_redis_py(redis_url: str) -> None:
    async def run(cls: Any) -> Any:
        pool = cls.from_url(redis_url)
        seen = [_normalised_counts(pool)]
        conns = [await pool.get_connection() for _ in range(3)]
        seen.append(_normalised_counts(pool))
        await pool.release(conns[0])
        seen.append(_normalised_counts(pool))
        await pool.aclose()
        seen.append(_normalised_counts(pool))
        return seen

    seen = _side_by_side(ASYNC_POOLS, lambda cls: arun(run(cls)))
    assert [[n for n, _ in s] for s in seen] == [[0, 0], [0, 3], [1, 2], [1, 2]]


# ---------------------------------------------------------------------------- careless input


def _use_sync(pool: Any) -> None:
    a, b = pool.get_connection(), pool.get_connection()  # the whole cap is still there
    pool.release(a)
    pool.release(b)
    assert redis.Redis(connection_pool=pool).ping()


def _use_async(pool: Any) -> None:
    async def use() -> None:
        a, b = await pool.get_connection(), await pool.get_connection()
        await pool.release(a)
        await pool.release(b)
        assert await aredis.Redis(connection_pool=pool).ping()

    arun(use())


@pytest.mark.parametrize(
    ("cls", "wrong_client", "advice", "use"),
    [
        (fairpool.ConnectionPool, aredis.Redis, r"fairpool\.asyncio\.ConnectionPool", _use_sync),
        (fairpool.BlockingConnectionPool, aredis.Redis, r"fairpool\.asyncio\.", _use_sync),
        (fairpool.asyncio.ConnectionPool, redis.Redis, r"fairpool\.ConnectionPool", _use_async),
        (
            fairpool.asyncio.BlockingConnectionPool,
            redis.Redis,
            r"fairpool\.ConnectionPool",
            _use_async,
        ),
    ],
)
def test_pool_given_to_the_other_kind_of_client(
    redis_url: str, cls: Any, wrong_client: Any, advice: str, use: Any
) -> None:
    """A sync pool given to redis.asyncio's client, or the reverse: a clear error naming the
    pool to use, raised when the client is built — repeated tries leak nothing."""
    pool = cls.from_url(redis_url, max_connections=2, timeout=1)
    for _ in range(4):
        with pytest.raises(TypeError, match=f"use {advice}"):
            wrong_client(connection_pool=pool)
        with pytest.raises(TypeError, match=f"use {advice}"):
            wrong_client.from_pool(pool)
    stats = pool.stats()
    assert (stats.open, stats.in_use, stats.borrows) == (0, 0, 0)
    use(pool)


@pytest.mark.parametrize(
    ("cls", "advice", "use"),
    [
        (fairpool.ConnectionPool, r"fairpool\.asyncio\.ConnectionPool", _use_sync),
        (fairpool.asyncio.BlockingConnectionPool, r"fairpool\.ConnectionPool", _use_async),
    ],
)
def test_pool_assigned_to_the_other_kind_of_client(
    redis_url: str, cls: Any, advice: str, use: Any
) -> None:
    """A pool of the wrong kind assigned to an existing client's ``connection_pool`` (the client
    was built with another pool, so the construction check never saw it): the first borrow
    fails with the same clear error, before it takes anything — repeated tries leak nothing."""
    pool = cls.from_url(redis_url, max_connections=2, timeout=1)
    if cls.__module__ == "fairpool.asyncio":
        client = redis.Redis.from_url(redis_url)
        client.connection_pool = pool
        for _ in range(4):
            with pytest.raises(TypeError, match=f"use {advice}"):
                client.ping()
    else:
        aclient = aredis.Redis.from_url(redis_url)
        aclient.connection_pool = pool

        async def tries() -> None:
            for _ in range(4):
                with pytest.raises(TypeError, match=f"use {advice}"):
                    await aclient.ping()

        arun(tries())
    stats = pool.stats()
    assert (stats.open, stats.in_use, stats.borrows) == (0, 0, 0)
    use(pool)


@pytest.mark.parametrize(
    "cls",
    [
        fairpool.ConnectionPool,
        fairpool.BlockingConnectionPool,
        fairpool.asyncio.ConnectionPool,
        fairpool.asyncio.BlockingConnectionPool,
    ],
)
def test_timeout_none_in_url(redis_url: str, cls: Any) -> None:
    pool = cls.from_url(f"{redis_url}?timeout=none&block=true&max_connections=none")
    assert pool.timeout is None and pool.block and pool.max_connections == 100


@pytest.mark.parametrize("value", [1e10, float("inf"), MAX_SECONDS + 1])
@pytest.mark.parametrize(
    "cls", [fairpool.BlockingConnectionPool, fairpool.asyncio.BlockingConnectionPool]
)
def test_huge_timeout_rejected_with_its_bound(cls: Any, value: float) -> None:
    with pytest.raises(ValueError, match=r"'timeout' must be .*31536000.*got"):
        cls(timeout=value)


def test_longest_timeout_accepted_and_waits(redis_url: str) -> None:
    """The bound itself works: a waiter with a one-year timeout waits and is served (no
    ``OverflowError`` from the platform's timer)."""
    pool = fairpool.BlockingConnectionPool.from_url(
        redis_url, max_connections=1, timeout=MAX_SECONDS
    )
    held = pool.get_connection()
    got: queue.Queue[Any] = queue.Queue()
    t = threading.Thread(target=lambda: got.put(pool.get_connection()))
    t.start()
    assert _wait(lambda: pool.stats().waiting == 1)
    pool.release(held)
    t.join(10)
    assert got.get(timeout=1) is held

    async def main() -> None:
        apool = fairpool.asyncio.BlockingConnectionPool.from_url(
            redis_url, max_connections=1, timeout=MAX_SECONDS
        )
        held = await apool.get_connection()
        waiter = asyncio.create_task(apool.get_connection())
        await asyncio.sleep(0.05)
        await apool.release(held)
        assert await waiter is held

    arun(main())


@pytest.mark.parametrize("value", ["lifo", 3, list])
@pytest.mark.parametrize(
    "cls", [fairpool.BlockingConnectionPool, fairpool.asyncio.BlockingConnectionPool]
)
def test_bad_queue_class_names_the_setting(cls: Any, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=r"'queue_class' must be .*queue\.LifoQueue"):
        cls(queue_class=value)


ALL_POOLS = [
    fairpool.ConnectionPool,
    fairpool.BlockingConnectionPool,
    fairpool.asyncio.ConnectionPool,
    fairpool.asyncio.BlockingConnectionPool,
]


@pytest.mark.parametrize("cls", ALL_POOLS)
def test_misspelt_keyword_rejected_with_suggestion(redis_url: str, cls: Any) -> None:
    with pytest.raises(TypeError, match="did you mean 'max_connections'"):
        cls(max_conections=5)
    with pytest.raises(TypeError, match="did you mean 'idle_timeout'"):
        cls.from_url(f"{redis_url}?idle_timout=5")
    with pytest.raises(TypeError, match="did you mean 'socket_timeout'"):
        cls.from_url(redis_url, sockettimeout=5)


def test_cluster_misspelt_keyword_rejected_with_suggestion(redis_url: str) -> None:
    with pytest.raises(TypeError, match="did you mean 'max_connections'"):
        fairpool.cluster(redis_url, max_conections=3)
    with pytest.raises(TypeError, match="did you mean 'idle_timeout'"):
        fairpool.cluster(redis_url, idle_timout=3)


def _every_keyword_with_its_default(connection_class: Any) -> dict[str, Any]:
    """Every keyword with a default in the ``__init__`` signatures along the connection class's
    MRO that the class really accepts (tried on the class itself), with that default."""
    out: dict[str, Any] = {}
    for klass in connection_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        for p in list(inspect.signature(init).parameters.values())[1:]:
            if p.default is not p.empty and p.name not in out:
                try:
                    connection_class(**{**out, p.name: p.default})
                except TypeError:
                    continue  # e.g. a mixin's parameter its subclass fills in itself
                out[p.name] = p.default
    return out


@pytest.mark.parametrize(
    ("pool_cls", "conn_cls"),
    [
        (fairpool.ConnectionPool, Connection),
        (fairpool.ConnectionPool, SSLConnection),
        (fairpool.ConnectionPool, UnixDomainSocketConnection),
        (fairpool.asyncio.ConnectionPool, AsyncConnection),
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # lib_name, lib_version
def test_every_connection_keyword_passes(pool_cls: Any, conn_cls: Any) -> None:
    kwargs = _every_keyword_with_its_default(conn_cls)
    assert len(kwargs) > 20 and set(kwargs) <= (connection_keywords(conn_cls) or set())
    pool = pool_cls(connection_class=conn_cls, **kwargs)
    assert pool.make_connection() is not None


def test_keyword_taken_by_a_kwargs_subclass_passes(redis_url: str) -> None:
    """A connection class taking ``**kwargs`` (as redis-py's Sentinel connection does) may
    accept keywords its signature does not name: they pass."""

    class Tagged(Connection):
        def __init__(self, **kwargs: Any) -> None:
            self.tag = kwargs.pop("tag")
            super().__init__(**kwargs)

    pool = fairpool.ConnectionPool.from_url(redis_url, connection_class=Tagged, tag="x")
    assert redis.Redis(connection_pool=pool).ping()
    with pytest.raises(TypeError, match="unknown keyword argument 'tga'"):
        fairpool.ConnectionPool(connection_class=Tagged, tag="x", tga="y")


def _ignored_releases(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "ignoring release" in r.getMessage()]


def test_foreign_or_double_release_is_harmless_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fairpool")
    pool = fairpool.ConnectionPool.from_url(redis_url, max_connections=2)
    other = redis.ConnectionPool.from_url(redis_url)
    foreign = other.get_connection()
    pool.release(foreign)
    assert (
        len(_ignored_releases(caplog)) == 1
        and "not a connection of this pool" in (_ignored_releases(caplog)[0])
    )
    conn = pool.get_connection()
    pool.release(conn)
    pool.release(conn)
    assert len(_ignored_releases(caplog)) == 2 and "not borrowed" in _ignored_releases(caplog)[1]
    stats = pool.stats()
    assert (stats.open, stats.idle, stats.in_use) == (1, 1, 0)
    a, b = pool.get_connection(), pool.get_connection()
    assert a is not b
    pool.release(a)
    pool.release(b)
    other.release(foreign)


def test_async_foreign_or_double_release_is_harmless_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fairpool")

    async def main() -> None:
        pool = fairpool.asyncio.ConnectionPool.from_url(redis_url, max_connections=2)
        other = aredis.ConnectionPool.from_url(redis_url)
        foreign = await other.get_connection()
        await pool.release(foreign)
        assert len(_ignored_releases(caplog)) == 1
        conn = await pool.get_connection()
        await pool.release(conn)
        await pool.release(conn)
        assert len(_ignored_releases(caplog)) == 2
        stats = pool.stats()
        assert (stats.open, stats.idle, stats.in_use) == (1, 1, 0)
        a, b = await pool.get_connection(), await pool.get_connection()
        assert a is not b
        await pool.release(a)
        await pool.release(b)
        await other.release(foreign)
        await other.aclose()

    arun(main())


def _wait(predicate: Any, timeout: float = 5.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        done.wait(0.01)
    return bool(predicate())
