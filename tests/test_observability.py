"""redis-py's OpenTelemetry connection-count metrics through fairpool, against a real server.

redis-py 8.1 can export ``db.client.connection.count`` (idle / used connections per pool) when
observability is initialised. A drop-in pool must keep those gauges as redis-py's own pool does:
after any mix of borrows (fresh dials, idle hits, hand-overs to waiters) and releases, *used* is
0 and *idle* is the number of open connections.

OpenTelemetry's meter provider is process-global and cannot be reset, so each case runs in a
subprocess with an in-memory metric reader and prints what it read.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from typing import Any

import pytest
import redis.asyncio

pytest.importorskip("redis.observability", reason="this redis-py has no OpenTelemetry metrics")
from redis.observability.attributes import get_pool_name

import fairpool
import fairpool.asyncio
from fairpool.tools.servers import RedisServer

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    import redis
    import redis.asyncio
    import fairpool
    import fairpool.asyncio
    from redis.observability.attributes import get_pool_name
    from redis.observability.config import MetricGroup, OTelConfig
    from redis.observability.providers import get_observability_instance

    kind, port, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    settings = json.loads(sys.argv[4])
    kill = settings.pop("kill", False)  # kill every connection server-side, then go on
    if settings.pop("endpoint", False):  # fairpool's endpoints=[...] dialling path
        settings["endpoints"] = [f"127.0.0.1:{port}"]
    POOLS = {
        "redis-py": redis.BlockingConnectionPool,
        "fairpool": fairpool.BlockingConnectionPool,
        "redis-py-asyncio": redis.asyncio.BlockingConnectionPool,
        "fairpool-asyncio": fairpool.asyncio.BlockingConnectionPool,
    }

    def observe():
        get_observability_instance().init(OTelConfig(metric_groups=[MetricGroup.CONNECTION_BASIC]))

    def read():  # the gauges of the pool under test (the admin client below has its own)
        counts = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "db.client.connection.count":
                        continue
                    for point in metric.data.data_points:
                        if point.attributes.get("db.client.connection.pool.name") != name:
                            continue
                        state = point.attributes.get("db.client.connection.state")
                        counts[state] = counts.get(state, 0) + point.value
        return counts

    def run_threads(pool):
        client = redis.Redis(connection_pool=pool)
        if settings.get("min_idle"):
            pool.maintain()  # the refill dials min_idle idle connections
            assert len(pool._get_free_connections()) == settings["min_idle"]
        client.ping()  # the very first borrow dials (or takes a refilled one)

        def work():
            for _ in range(200):
                client.ping()

        threads = [threading.Thread(target=work) for _ in range(8)]  # 8 threads, 3 connections
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with client.pipeline() as pipe:
            pipe.ping().ping().execute()
        if kill:  # the borrow check finds them dead: closed, and new ones dialled
            with redis.Redis(port=port) as admin:
                admin.client_kill_filter(_type="normal", skipme=True)
            for _ in range(5):
                client.ping()

    async def run_tasks(pool):
        client = redis.asyncio.Redis(connection_pool=pool)
        if settings.get("min_idle"):
            await pool.maintain()  # the refill dials min_idle idle connections
            assert len(pool._get_free_connections()) == settings["min_idle"]
        await client.ping()

        async def work():
            for _ in range(200):
                await client.ping()

        await asyncio.gather(*(work() for _ in range(8)))  # 8 tasks, 3 connections
        async with client.pipeline() as pipe:
            await pipe.ping().ping().execute()

    if when == "early":
        observe()
    pool = POOLS[kind](port=port, max_connections=3, timeout=10, **settings)
    name = get_pool_name(pool)
    if when == "late":  # the pool exists (still empty) before observability is switched on
        observe()
    if "asyncio" in kind:
        asyncio.run(run_tasks(pool))
    else:
        run_threads(pool)
    opened = len(list(pool._get_free_connections())) + len(list(pool._get_in_use_connections()))
    counts = read()
    stats = pool.stats().as_dict() if hasattr(pool, "stats") else {}
    if kind == "redis-py":
        pool.reset()  # what redis-py records when it drops its connections
    elif kind == "fairpool":
        pool.shutdown()  # drops its connections (close() keeps them, as redis-py's does)
    elif kind == "fairpool-asyncio":
        asyncio.run(pool.ashutdown())
    print(json.dumps({"counts": counts, "open": opened, "after_close": read(), "stats": stats}))
    """
)


def _read_counts(
    kind: str, server: RedisServer, when: str, **settings: object
) -> dict[str, object]:
    pytest.importorskip("opentelemetry.sdk.metrics")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, str(server.port), when, json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("when", ["early", "late"])
def test_connection_count_metrics_stay_balanced(shared_redis: RedisServer, when: str) -> None:
    """Observability switched on before the pool is made, or after (with the pool still empty):
    fairpool's gauges end as redis-py's do — nothing used, every open connection idle — and
    closing the pool brings both to zero. The load (8 threads on 3 connections) goes through
    waiting, hand-overs and turns."""
    theirs = _read_counts("redis-py", shared_redis, when)
    assert theirs["counts"] == {"idle": theirs["open"], "used": 0}, theirs
    assert theirs["after_close"] == {"idle": 0, "used": 0}, theirs
    ours = _read_counts("fairpool", shared_redis, when)
    assert ours["counts"] == {"idle": ours["open"], "used": 0}, ours
    assert ours["open"] == 3
    assert ours["after_close"] == {"idle": 0, "used": 0}, ours
    stats = ours["stats"]
    assert isinstance(stats, dict) and stats["waits"] > 0 and stats["reborrows"] > 0, stats


@pytest.mark.parametrize("when", ["early", "late"])
def test_asyncio_connection_count_metrics_stay_balanced(
    shared_redis: RedisServer, when: str
) -> None:
    """The same through redis.asyncio. Checked against the invariant, not against redis-py: in
    this script the gauges of redis-py 8.1's own asyncio ``BlockingConnectionPool`` drift (used
    ended at -1602 after 1602 commands)."""
    ours = _read_counts("fairpool-asyncio", shared_redis, when)
    assert ours["counts"] == {"idle": ours["open"], "used": 0}, ours
    assert ours["open"] == 3
    assert ours["after_close"] == {"idle": 0, "used": 0}, ours


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("fairpool", {"min_idle": 2, "turn_borrows": 1}),
        ("fairpool", {"min_idle": 2, "endpoint": True}),
        ("fairpool-asyncio", {"min_idle": 2}),
        ("fairpool", {"kill": True, "health_check_after": 0.0}),
    ],
    ids=["min_idle", "min_idle-endpoints", "asyncio-min_idle", "dead-connections"],
)
def test_connection_count_metrics_other_paths(
    shared_redis: RedisServer, kind: str, settings: dict[str, object]
) -> None:
    """Connections the ``min_idle`` refill dials (directly or through ``endpoints=``) count as
    idle (redis-py has no such refill); connections the borrow check finds dead leave the
    gauges as they came."""
    ours = _read_counts(kind, shared_redis, "early", **settings)
    assert ours["counts"] == {"idle": ours["open"], "used": 0}, ours
    assert ours["after_close"] == {"idle": 0, "used": 0}, ours
    if settings.get("kill"):
        stats = ours["stats"]
        assert isinstance(stats, dict) and stats["closed"]["health_check"] >= 1, stats


class FakeCollector:
    """Stands in for redis-py's metrics collector: sums each gauge of one pool (other pools of
    the test session, finalised meanwhile, may record too)."""

    def __init__(self) -> None:
        self.pool_name: str | None = None
        self.counts: Counter[str] = Counter()

    def record_connection_count(self, pool_name: str, connection_state: Any, counter: int) -> None:
        if pool_name == self.pool_name:
            self.counts[connection_state.value] += counter


class Boom(Exception):
    pass


def _fail_disconnect(conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the release of ``conn`` do I/O (a reconnect is due) that fails."""
    monkeypatch.setattr(conn, "should_reconnect", lambda: True)
    real = conn.disconnect

    def disconnect(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(conn, "disconnect", real)  # only the first one fails
        raise Boom("disconnect failed")

    monkeypatch.setattr(conn, "disconnect", disconnect)


def test_gauges_when_the_release_io_fails(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The release's own I/O raising: the connection is closed, not lost, and the gauges still
    balance (the release is counted before the close counts it out of idle)."""
    fake = FakeCollector()
    monkeypatch.setattr(fairpool.pool._recorder, "_metrics_collector", fake)
    pool = fairpool.ConnectionPool.from_url(redis_url)
    fake.pool_name = get_pool_name(pool)
    conn = pool.get_connection()
    _fail_disconnect(conn, monkeypatch)
    with pytest.raises(Boom):
        pool.release(conn)
    assert pool.stats().open == 0 and pool.stats().closed["error"] == 1
    assert fake.counts == {"idle": 0, "used": 0}
    pool.close()


def test_asyncio_gauges_when_the_release_io_fails(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeCollector()
    monkeypatch.setattr(fairpool.asyncio._arecorder, "_async_metrics_collector", fake)

    async def main() -> None:
        pool = fairpool.asyncio.ConnectionPool.from_url(redis_url)
        fake.pool_name = get_pool_name(pool)
        conn = await pool.get_connection()
        _fail_disconnect(conn, monkeypatch)
        with pytest.raises(Boom):
            await pool.release(conn)
        assert pool.stats().open == 0 and pool.stats().closed["error"] == 1
        assert fake.counts == {"idle": 0, "used": 0}
        client = redis.asyncio.Redis(connection_pool=pool)
        assert await client.ping()  # the pool goes on
        await pool.ashutdown()
        assert fake.counts == {"idle": 0, "used": 0}

    asyncio.run(main())


class WaitCollector(FakeCollector):
    """Also keeps each borrow's wait time reported for its pool (redis-py 8.x's
    ``BlockingConnectionPool`` reports one on every borrow)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def record_connection_wait_time(self, pool_name: str, duration_seconds: float) -> None:
        if pool_name == self.pool_name:
            self.waits.append(duration_seconds)

    def record_connection_create_time(self, **kwargs: Any) -> None:
        pass


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "plain"])
def test_wait_time_reported_as_redis_py_does(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, blocking: bool
) -> None:
    """With observability on, a ``BlockingConnectionPool`` reports every borrow's wait time
    (new connections and idle ones alike), as redis-py's does; a plain ``ConnectionPool``
    reports none, as redis-py's does not."""
    fake = WaitCollector()
    monkeypatch.setattr(fairpool.pool._recorder, "_metrics_collector", fake)

    def borrow_five(cls: Any) -> list[float]:
        pool = cls.from_url(redis_url)
        fake.pool_name = get_pool_name(pool)
        fake.waits.clear()
        held = [pool.get_connection(), pool.get_connection()]  # two dials
        for conn in held:
            pool.release(conn)
        for _ in range(3):  # idle hits
            pool.release(pool.get_connection())
        pool.disconnect()
        return list(fake.waits)

    import redis as sync_redis

    if blocking:
        theirs = borrow_five(sync_redis.BlockingConnectionPool)
        ours = borrow_five(fairpool.BlockingConnectionPool)
    else:
        theirs = borrow_five(sync_redis.ConnectionPool)
        ours = borrow_five(fairpool.ConnectionPool)
    assert len(ours) == len(theirs) == (5 if blocking else 0)
    assert all(0 <= w < 5 for w in ours)


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "plain"])
def test_asyncio_wait_time_reported_as_redis_py_does(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, blocking: bool
) -> None:
    fake = WaitCollector()
    monkeypatch.setattr(fairpool.asyncio._arecorder, "_async_metrics_collector", fake)

    async def borrow_five(cls: Any) -> list[float]:
        pool = cls.from_url(redis_url)
        fake.pool_name = get_pool_name(pool)
        fake.waits.clear()
        held = [await pool.get_connection(), await pool.get_connection()]
        for conn in held:
            await pool.release(conn)
        for _ in range(3):
            await pool.release(await pool.get_connection())
        await pool.disconnect()
        return list(fake.waits)

    async def main() -> tuple[list[float], list[float]]:
        if blocking:
            theirs = await borrow_five(redis.asyncio.BlockingConnectionPool)
            ours = await borrow_five(fairpool.asyncio.BlockingConnectionPool)
        else:
            theirs = await borrow_five(redis.asyncio.ConnectionPool)
            ours = await borrow_five(fairpool.asyncio.ConnectionPool)
        return theirs, ours

    theirs, ours = asyncio.run(main())
    assert len(ours) == len(theirs) == (5 if blocking else 0)
    assert all(0 <= w < 5 for w in ours)


def test_no_wait_time_without_observability(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Observability off (no collector): a borrow from the idle set reports nothing and asks
    for no collector (the hot path reads one module attribute)."""
    calls: list[str] = []
    monkeypatch.setattr(fairpool.pool._recorder, "_metrics_collector", None)
    monkeypatch.setattr(
        fairpool.pool._recorder, "_get_or_create_collector", lambda: calls.append("x")
    )
    pool = fairpool.BlockingConnectionPool.from_url(redis_url)
    pool.release(pool.get_connection())
    calls.clear()
    for _ in range(10):
        pool.release(pool.get_connection())
    assert calls == []
    pool.shutdown()
