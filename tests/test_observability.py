"""redis-py's OpenTelemetry connection-count metrics through fairpool, against a real server.

redis-py 8.1 can export ``db.client.connection.count`` (idle / used connections per pool) when
observability is initialised. A drop-in pool must keep those gauges as redis-py's own pool does:
after any mix of borrows (fresh dials, idle hits, hand-overs to waiters) and releases, *used* is
0 and *idle* is the number of open connections.

OpenTelemetry's meter provider is process-global and cannot be reset, so each case runs in a
subprocess with an in-memory metric reader and prints what it read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fairpool.servers import RedisServer

pytest.importorskip("opentelemetry.sdk.metrics")

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
    from redis.observability.config import MetricGroup, OTelConfig
    from redis.observability.providers import get_observability_instance

    kind, port, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    settings = json.loads(sys.argv[4])
    POOLS = {
        "redis-py": redis.BlockingConnectionPool,
        "fairpool": fairpool.BlockingConnectionPool,
        "redis-py-asyncio": redis.asyncio.BlockingConnectionPool,
        "fairpool-asyncio": fairpool.asyncio.BlockingConnectionPool,
    }

    def observe():
        get_observability_instance().init(OTelConfig(metric_groups=[MetricGroup.CONNECTION_BASIC]))

    def read():
        counts = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != "db.client.connection.count":
                        continue
                    for point in metric.data.data_points:
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

    async def run_tasks(pool):
        client = redis.asyncio.Redis(connection_pool=pool)
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
    if when == "late":  # the pool exists (still empty) before observability is switched on
        observe()
    if "asyncio" in kind:
        asyncio.run(run_tasks(pool))
    else:
        run_threads(pool)
    opened = len(list(pool._get_free_connections())) + len(list(pool._get_in_use_connections()))
    counts = read()
    if kind == "redis-py":
        pool.reset()  # what redis-py records when it drops its connections
    elif kind == "fairpool":
        pool.close()
    elif kind == "fairpool-asyncio":
        asyncio.run(pool.aclose())
    print(json.dumps({"counts": counts, "open": opened, "after_close": read()}))
    """
)


def _read_counts(
    kind: str, server: RedisServer, when: str, **settings: object
) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, kind, str(server.port), when, json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("when", ["early", "late"])
def test_connection_count_metrics_stay_balanced(shared_redis: RedisServer, when: str) -> None:
    """Observability switched on before the pool is made, or after (with the pool still empty):
    fairpool's gauges end as redis-py's do — nothing used, every open connection idle — and
    closing the pool brings both to zero."""
    theirs = _read_counts("redis-py", shared_redis, when)
    assert theirs["counts"] == {"idle": theirs["open"], "used": 0}, theirs
    assert theirs["after_close"] == {"idle": 0, "used": 0}, theirs
    ours = _read_counts("fairpool", shared_redis, when)
    assert ours["counts"] == {"idle": ours["open"], "used": 0}, ours
    assert ours["open"] == 3
    assert ours["after_close"] == {"idle": 0, "used": 0}, ours


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


def test_connection_count_metrics_with_min_idle_refill(shared_redis: RedisServer) -> None:
    """Connections the ``min_idle`` refill dials count as idle (redis-py has no such refill)."""
    ours = _read_counts("fairpool", shared_redis, "early", min_idle=2, turn_borrows=1)
    assert ours["counts"] == {"idle": ours["open"], "used": 0}, ours
    assert ours["after_close"] == {"idle": 0, "used": 0}, ours
