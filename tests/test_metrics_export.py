"""The exporters against real pools on a real redis-server: Prometheus (``prometheus_client``'s
HTTP server scraped with a real HTTP client and parsed with its parser) and OpenTelemetry (the
SDK's in-memory reader), checked against ``pool.stats()`` after a known workload; and
``stats(reset=True)`` windows through both shells."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

import fairpool
import fairpool.asyncio
from fairpool.metrics.histogram import BUCKETS
from fairpool.stats import PoolStats
from fairpool.tools.servers import RedisServer

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from fairpool.metrics.prometheus import Collector  # noqa: E402

SINGLE = 10  # single-caller borrows
THREADS, PER_THREAD = 6, 20  # contended borrows on a 2-connection pool


def _sync_workload(pool: fairpool.ConnectionPool) -> int:
    """Both connections borrowed, a third caller waits for one (a certain wait); then
    single-caller and contended borrows. Returns the number of borrows."""
    client = redis.Redis(connection_pool=pool)
    held = [pool.get_connection(), pool.get_connection()]
    waiter = threading.Thread(target=client.ping)
    waiter.start()
    while pool.stats().waiting == 0:
        time.sleep(0.001)
    for conn in held:
        pool.release(conn)
    waiter.join()
    for _ in range(SINGLE):
        client.ping()

    def work() -> None:
        for _ in range(PER_THREAD):
            client.ping()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 3 + SINGLE + THREADS * PER_THREAD


async def _async_workload(pool: fairpool.asyncio.ConnectionPool) -> int:
    """As :func:`_sync_workload`, with tasks."""
    client = redis.asyncio.Redis(connection_pool=pool)
    held = [await pool.get_connection(), await pool.get_connection()]
    waiter = asyncio.ensure_future(client.ping())
    while pool.stats().waiting == 0:
        await asyncio.sleep(0)
    for conn in held:
        await pool.release(conn)
    await waiter
    for _ in range(SINGLE):
        await client.ping()

    async def work() -> None:
        for _ in range(PER_THREAD):
            await client.ping()

    await asyncio.gather(*(work() for _ in range(THREADS)))
    return 3 + SINGLE + THREADS * PER_THREAD


@pytest.fixture
def pools(shared_redis: RedisServer) -> Iterator[tuple[Any, Any, int]]:
    """A sync pool "sync-a" and an asyncio pool "async-b", both after a known workload."""
    sync_pool = fairpool.BlockingConnectionPool(
        port=shared_redis.port, max_connections=2, timeout=10, name="sync-a"
    )
    async_pool = fairpool.asyncio.BlockingConnectionPool(
        port=shared_redis.port, max_connections=2, timeout=10, name="async-b", policy="lifo"
    )
    n = _sync_workload(sync_pool)
    assert asyncio.run(_async_workload(async_pool)) == n
    yield sync_pool, async_pool, n
    sync_pool.shutdown()
    asyncio.run(async_pool.ashutdown())


def _check_invariants(s: PoolStats, borrows: int) -> None:
    """What the workload makes certain, whatever the scheduling."""
    assert s.borrows == borrows and s.in_use == 0 and s.waiting == 0
    assert s.hold_histogram.count == borrows  # every borrow was released
    assert s.wait_histogram.count == s.waits > 0  # contended: some waited
    assert s.wait_histogram.sum == pytest.approx(s.wait_time_total)
    assert s.wait_histogram.max == s.wait_time_max
    assert s.dial_histogram.count == s.misses == s.created == 2


def _scrape(registry: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def _get(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_prometheus_scrape_matches_stats(pools: tuple[Any, Any, int], shared_redis: Any) -> None:
    sync_pool, async_pool, n = pools
    registry = prometheus_client.CollectorRegistry()
    registry.register(Collector([sync_pool, async_pool]))
    samples = _scrape(registry)
    endpoint = f"127.0.0.1:{shared_redis.port}"
    for pool, policy in ((sync_pool, "fifo"), (async_pool, "lifo")):
        s = pool.stats()
        _check_invariants(s, n)
        name = pool.config.name
        assert _get(samples, "fairpool_pool_info", pool=name, policy=policy) == 1.0
        for field in ("borrows", "hits", "misses", "waits", "timeouts", "reborrows"):
            assert _get(samples, f"fairpool_{field}_total", pool=name) == getattr(s, field)
        assert _get(samples, "fairpool_connections_created_total", pool=name) == s.created
        for field in ("leaks", "sheds", "drains"):
            assert _get(samples, f"fairpool_{field}_total", pool=name) == 0
        assert _get(samples, "fairpool_max_connections", pool=name) == 2
        assert _get(samples, "fairpool_waiting", pool=name) == 0
        assert _get(samples, "fairpool_wait_seconds_max", pool=name) == s.wait_time_max
        assert _get(samples, "fairpool_connections", pool=name, state="idle") == s.idle == 2
        assert _get(samples, "fairpool_connections", pool=name, state="in_use") == 0
        for reason, count in s.closed.items():
            assert (
                _get(samples, "fairpool_connections_closed_total", pool=name, reason=reason)
                == count
            )
        for metric, hist in (
            ("fairpool_wait_seconds", s.wait_histogram),
            ("fairpool_hold_seconds", s.hold_histogram),
            ("fairpool_dial_seconds", s.dial_histogram),
        ):
            assert _get(samples, f"{metric}_count", pool=name) == hist.count
            assert _get(samples, f"{metric}_sum", pool=name) == pytest.approx(hist.sum)
            assert _get(samples, f"{metric}_bucket", pool=name, le="+Inf") == hist.count
            cumulative = dict(hist.cumulative())
            for bound in BUCKETS:
                le = prometheus_client.utils.floatToGoString(bound)
                assert _get(samples, f"{metric}_bucket", pool=name, le=le) == cumulative[bound]
        assert _get(samples, "fairpool_endpoint_borrows_total", pool=name, endpoint=endpoint) == n
        assert _get(samples, "fairpool_endpoint_connections", pool=name, endpoint=endpoint) == 2
        assert _get(samples, "fairpool_endpoint_share", pool=name, endpoint=endpoint) == 1.0
        assert _get(samples, "fairpool_endpoint_fairness_jain", pool=name) == 1.0
        assert _get(samples, "fairpool_endpoint_fairness_max_mean", pool=name) == 1.0
    # a scrape never resets a window
    assert sync_pool.stats().window.borrows == n


def test_prometheus_default_collector_sees_every_pool(pools: tuple[Any, Any, int]) -> None:
    registry = prometheus_client.CollectorRegistry()
    registry.register(Collector())
    samples = _scrape(registry)
    names = {dict(labels)["pool"] for (name, labels) in samples if name == "fairpool_borrows_total"}
    assert {"sync-a", "async-b"} <= names


def test_otel_in_memory_reader_matches_stats(pools: tuple[Any, Any, int]) -> None:
    pytest.importorskip("opentelemetry.sdk.metrics")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from fairpool.metrics.otel import instrument

    sync_pool, async_pool, n = pools
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrument(sync_pool, meter_provider=provider)
    instrument(async_pool, meter_provider=provider)
    instrument(sync_pool, meter_provider=provider)  # twice: no duplicate instruments
    points: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, frozenset(point.attributes.items()))
                    assert key not in points
                    points[key] = point.value  # type: ignore[union-attr]
    provider.shutdown()
    for pool in (sync_pool, async_pool):
        s = pool.stats()
        _check_invariants(s, n)
        name = pool.config.name

        def get(metric: str, name: str = name, **attrs: str) -> float:
            return points[(metric, frozenset({"pool.name": name, **attrs}.items()))]

        assert get("fairpool.pool.borrows") == n
        for field in ("hits", "misses", "waits", "timeouts", "reborrows", "leaks", "sheds"):
            assert get(f"fairpool.pool.{field}") == getattr(s, field)
        assert get("fairpool.pool.connections_created") == s.created
        assert get("fairpool.pool.connections", state="idle") == s.idle
        assert get("fairpool.pool.connections_closed", reason="error") == s.closed["error"]
        assert get("fairpool.pool.max_connections") == 2
        assert get("fairpool.pool.wait_seconds_max") == s.wait_time_max
        assert get("fairpool.pool.wait_seconds.count") == s.wait_histogram.count
        assert get("fairpool.pool.wait_seconds.sum") == pytest.approx(s.wait_histogram.sum)
        assert get("fairpool.pool.hold_seconds.count") == n
        assert get("fairpool.pool.hold_seconds.max") == s.hold_histogram.max
        assert get("fairpool.pool.dial_seconds.bucket", le="+Inf") == 2
        assert get("fairpool.pool.endpoint_fairness_jain") == 1.0
        (endpoint,) = s.endpoint_borrows
        assert get("fairpool.pool.endpoint_share", endpoint=endpoint) == 1.0
        assert get("fairpool.pool.endpoint_borrows", endpoint=endpoint) == n


def _check_windows(first: PoolStats, second: PoolStats, third: PoolStats, n: int) -> None:
    """``first = stats(reset=True)`` after the workload of ``n`` borrows, ``second =
    stats(reset=True)`` after three uncontended borrows, ``third = stats()``."""
    assert first.window.borrows == n and first.window.wait_histogram.count == first.waits
    assert first.window.wait_time_max == first.wait_time_max > 0.0
    assert (second.window.borrows, second.window.hits, second.window.misses) == (3, 3, 0)
    assert second.window.waits == 0 and second.window.wait_time_max == 0.0
    assert second.window.hold_histogram.count == 3 and second.window.created == 0
    assert second.borrows == n + 3 and second.wait_time_max == first.wait_time_max
    assert second.window.seconds > 0.0
    assert third.window.borrows == 0 and third.borrows == n + 3


def test_stats_reset_windows_sync(pools: tuple[Any, Any, int]) -> None:
    sync_pool, _, n = pools
    first = sync_pool.stats(reset=True)
    client = redis.Redis(connection_pool=sync_pool)
    for _ in range(3):
        client.ping()
    _check_windows(first, sync_pool.stats(reset=True), sync_pool.stats(), n)


def test_stats_reset_windows_asyncio(shared_redis: RedisServer) -> None:
    async def main() -> None:
        pool = fairpool.asyncio.BlockingConnectionPool(
            port=shared_redis.port, max_connections=2, timeout=10
        )
        n = await _async_workload(pool)
        first = pool.stats(reset=True)
        client = redis.asyncio.Redis(connection_pool=pool)
        for _ in range(3):
            await client.ping()
        _check_windows(first, pool.stats(reset=True), pool.stats(), n)
        await pool.ashutdown()

    asyncio.run(main())
