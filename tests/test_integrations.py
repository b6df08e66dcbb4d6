"""The libraries that build their own redis-py pools, run for real on fairpool pools against the
test session's redis-server (docs/integrations.md). Each test checks that the work completed and
that fairpool's pool did it (its stats moved). A library that is not installed, or that refuses
the installed redis-py, skips with the reason."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

import fairpool
from fairpool.tools.servers import RedisServer

from .helpers import wait_until
from .test_sentinel import SERVICE, Topology, topology  # noqa: F401 (a fixture)


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    """A server of the test's own (integrations leave keys and clients behind)."""
    yield redis_server


def _in_threads(fn: Callable[[int], object], n: int) -> None:
    """Run ``fn(0)`` ... ``fn(n - 1)`` in ``n`` threads at once; re-raise the first failure."""
    with ThreadPoolExecutor(n) as executor:
        for future in [executor.submit(fn, i) for i in range(n)]:
            future.result(timeout=60)


def _url(server: RedisServer, db: int = 0, query: str = "") -> str:
    return f"redis://{server.host}:{server.port}/{db}{'?' + query if query else ''}"


# ---------------------------------------------------------------------------------------- Celery
def _celery_or_skip() -> Any:
    pytest.importorskip("celery")
    kombu_redis = pytest.importorskip("kombu.transport.redis")
    import kombu.exceptions

    try:  # kombu's redis transport refuses some redis-py versions: say which
        kombu_redis.Channel._get_client(object.__new__(kombu_redis.Channel))
    except kombu.exceptions.VersionMismatch as exc:
        pytest.skip(f"kombu: {exc}")
    import fairpool.contrib.celery

    return fairpool.contrib.celery


def test_celery_worker_runs_100_tasks_on_fairpool_pools(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    contrib = _celery_or_skip()
    from celery import Celery
    from celery.contrib.testing.worker import start_worker

    broker_pools: list[fairpool.ConnectionPool] = []
    real_get_pool = contrib.Channel._get_pool

    def recording_get_pool(self: Any, asynchronous: bool = False) -> Any:
        pool = real_get_pool(self, asynchronous)
        broker_pools.append(pool)
        return pool

    monkeypatch.setattr(contrib.Channel, "_get_pool", recording_get_pool)

    app = Celery("fairpool_it", set_as_current=False)
    app.conf.update(
        broker_url=_url(server, 0),
        broker_transport="fairpool.contrib.celery:Transport",
        broker_transport_options={"fairpool": {"policy": "fifo", "max_idle": 4}},
        result_backend="fairpool.contrib.celery:RedisBackend+" + _url(server, 1, "policy=lifo"),
        result_backend_transport_options={"fairpool": {"max_idle": 3}},
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
    )

    @app.task(name="fairpool_it.add")
    def add(x: int, y: int) -> int:
        return x + y

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        results = [add.delay(i, i) for i in range(100)]
        assert [r.get(timeout=30) for r in results] == [2 * i for i in range(100)]

    backend_pool = app.backend.client.connection_pool
    assert type(backend_pool) is fairpool.ConnectionPool
    assert backend_pool.config.policy == "lifo" and backend_pool.config.max_idle == 3
    assert backend_pool.stats().borrows >= 100  # a result stored and read per task
    assert broker_pools and all(type(p) is fairpool.ConnectionPool for p in broker_pools)
    assert all(p.config.policy == "fifo" and p.config.max_idle == 4 for p in broker_pools)
    assert sum(p.stats().borrows for p in broker_pools) >= 100  # published and consumed
    # kombu's Channel caps its pool with its own max_connections transport option (default 10)
    assert {p.config.max_connections for p in broker_pools} == {10}


def test_celery_rejects_unknown_fairpool_setting(server: RedisServer) -> None:
    contrib = _celery_or_skip()
    import kombu

    conn = kombu.Connection(
        _url(server),
        transport=contrib.Transport,
        transport_options={"fairpool": {"polcy": "fifo"}},
    )
    with pytest.raises(ValueError, match=r"unknown fairpool setting.*polcy"):
        conn.default_channel.client.ping()
    conn.release()


# ---------------------------------------------------------------------------------------- Django
def _django_ready() -> None:
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(CACHES={}, USE_TZ=True)


def _hammer_cache(
    cache: Any, lock: Callable[[str], Any], threads: int = 8, rounds: int = 25
) -> None:
    """set/get/incr/delete_many and a lock-protected read-modify-write from ``threads`` threads."""
    cache.set("shared", 0)

    def work(t: int) -> None:
        for i in range(rounds):
            cache.set(f"k:{t}:{i}", i)
            assert cache.get(f"k:{t}:{i}") == i
            if i == 0:
                cache.set(f"n:{t}", 0)
            assert cache.incr(f"n:{t}") == i + 1
            cache.delete_many([f"k:{t}:{i}"])
            assert cache.get(f"k:{t}:{i}") is None
            with lock("fairpool-it-lock"):
                value = cache.get("shared")
                cache.set("shared", value + 1)

    _in_threads(work, threads)
    assert cache.get("shared") == threads * rounds  # the lock serialised every increment
    assert all(cache.get(f"n:{t}") == rounds for t in range(threads))


def test_django_redis_cache_on_fairpool(server: RedisServer) -> None:
    """django-redis with CONNECTION_POOL_CLASS: it calls from_url(url=..., parser_class=...,
    **CONNECTION_POOL_KWARGS), then writes connection_kwargs["password"] and calls reset()."""
    _django_ready()
    pytest.importorskip("django_redis")
    from django_redis.cache import RedisCache

    cache = RedisCache(
        _url(server),
        {
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "CONNECTION_POOL_CLASS": "fairpool.ConnectionPool",
                "CONNECTION_POOL_KWARGS": {"policy": "fifo", "max_connections": 6, "block": True},
            }
        },
    )
    pool = cache.client.get_client(write=True).connection_pool
    assert type(pool) is fairpool.ConnectionPool
    assert pool.config.max_connections == 6 and pool.config.block
    assert "password" in pool.connection_kwargs  # django-redis wrote it, then called reset()
    _hammer_cache(cache, lambda name: cache.lock(name, timeout=10))
    stats = pool.stats()
    assert stats.borrows >= 8 * 25 * 7 and stats.in_use == 0 and stats.open <= 6


def test_django_redis_password_option_authenticates(redis_servers: Any) -> None:
    _django_ready()
    pytest.importorskip("django_redis")
    from django_redis.cache import RedisCache

    (secured,) = redis_servers(1, args=["--requirepass", "s3cret"])
    cache = RedisCache(
        _url(secured),
        {
            "OPTIONS": {
                "PASSWORD": "s3cret",
                "CONNECTION_POOL_CLASS": "fairpool.ConnectionPool",
                "CONNECTION_POOL_KWARGS": {"policy": "round_robin"},
            }
        },
    )
    cache.set("a", 1)
    assert cache.get("a") == 1
    pool = cache.client.get_client(write=True).connection_pool
    assert type(pool) is fairpool.ConnectionPool and pool.stats().borrows >= 2
    assert "s3cret" not in repr(pool)


def test_django_redis_sentinel_on_fairpool(topology: Topology) -> None:  # noqa: F811
    """django-redis's Sentinel setup with fairpool.SentinelConnectionPool; fairpool settings in
    CONNECTION_POOL_KWARGS or in the URL's query."""
    _django_ready()
    pytest.importorskip("django_redis")
    from django_redis.cache import RedisCache

    sentinel = topology.sentinel
    cache = RedisCache(
        f"redis://{SERVICE}/0?max_idle=3",
        {
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "CONNECTION_POOL_CLASS": "fairpool.SentinelConnectionPool",
                "CONNECTION_POOL_KWARGS": {"policy": "round_robin"},
                "SENTINELS": [(sentinel.host, sentinel.port)],
            }
        },
    )
    for i in range(20):
        cache.set(f"s:{i}", i)
    # SentinelClient reads from the replica, which catches up asynchronously
    wait_until(
        "the replica to serve every write",
        lambda: [cache.get(f"s:{i}") for i in range(20)] == list(range(20)),
        timeout=10,
    )
    pool = cache.client.get_client(write=True).connection_pool
    assert type(pool) is fairpool.SentinelConnectionPool
    assert pool.config.policy == "round_robin" and pool.config.max_idle == 3
    assert pool.master_address == (topology.master.host, topology.master.port)
    assert pool.stats().borrows >= 20 and pool.stats().in_use == 0
    replica_pool = cache.client.get_client(write=False).connection_pool
    assert type(replica_pool) is fairpool.SentinelConnectionPool and not replica_pool.is_master
    assert replica_pool.stats().borrows >= 20


def test_django_builtin_redis_cache_on_fairpool(server: RedisServer) -> None:
    """Django's own RedisCache with OPTIONS["pool_class"]: from_url(server, parser_class=...,
    **other OPTIONS)."""
    _django_ready()
    from django.core.cache.backends.redis import RedisCache

    cache = RedisCache(
        _url(server),
        {"OPTIONS": {"pool_class": "fairpool.ConnectionPool", "policy": "fifo", "max_idle": 4}},
    )
    client = cache._cache.get_client(write=True)
    pool = client.connection_pool
    assert type(pool) is fairpool.ConnectionPool and pool.config.max_idle == 4
    _hammer_cache(cache, lambda name: client.lock(name, timeout=10))
    stats = pool.stats()
    assert stats.borrows >= 8 * 25 * 7 and stats.in_use == 0


# -------------------------------------------------------------------------------------------- RQ
def square(x: int) -> int:
    """An RQ job (importable by the worker as ``tests.test_integrations.square``)."""
    return x * x


def test_rq_cli_connection_class_runs_200_jobs_on_fairpool(server: RedisServer) -> None:
    """``rq worker --connection-class fairpool.contrib.rq.Redis --url ...``: the CLI's own config
    object builds the connection, and a burst worker runs 200 jobs on it."""
    pytest.importorskip("rq")
    from rq import Queue, SimpleWorker
    from rq.cli.helpers import CliConfig

    config = CliConfig(
        url=_url(server, 0, "policy=fifo&max_idle=2"), connection_class="fairpool.contrib.rq.Redis"
    )
    connection = config.connection
    pool = connection.connection_pool
    assert type(pool) is fairpool.ConnectionPool and pool.config.max_idle == 2

    queue = Queue("fairpool-it", connection=connection)
    jobs = [queue.enqueue(square, i) for i in range(200)]
    before = pool.stats().borrows
    worker = SimpleWorker([queue], connection=connection)
    assert worker.work(burst=True)
    assert [job.return_value() for job in jobs] == [i * i for i in range(200)]
    stats = pool.stats()
    assert stats.borrows - before >= 200 and stats.in_use == 0
    connection.close()


def test_rq_connection_class_from_settings_builds_fairpool_pool(server: RedisServer) -> None:
    """Without a URL (REDIS_HOST / REDIS_PORT settings) the CLI calls the class itself."""
    pytest.importorskip("rq")
    from rq.cli.helpers import get_redis_from_config

    from fairpool.contrib.rq import Redis

    class FifoRedis(Redis):
        pool_settings = {"policy": "round_robin"}

    connection = get_redis_from_config(
        {"REDIS_HOST": server.host, "REDIS_PORT": server.port}, FifoRedis
    )
    assert connection.ping()
    pool = connection.connection_pool
    assert type(pool) is fairpool.ConnectionPool and pool.config.policy == "round_robin"
    assert pool.stats().borrows == 1
    plain = redis.ConnectionPool(host=server.host, port=server.port)
    assert Redis(connection_pool=plain).connection_pool is plain  # a given pool is kept


# -------------------------------------------------------------------------------------- dramatiq
def test_dramatiq_broker_on_fairpool_runs_100_messages(server: RedisServer) -> None:
    pytest.importorskip("dramatiq")
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends.redis import RedisBackend

    pool = fairpool.ConnectionPool.from_url(_url(server), policy="fifo", max_connections=16)
    results_pool = fairpool.ConnectionPool.from_url(_url(server, 1))
    broker = RedisBroker(connection_pool=pool, namespace="fairpool-it")
    broker.add_middleware(
        Results(backend=RedisBackend(client=redis.Redis(connection_pool=results_pool)))
    )
    previous = dramatiq.get_broker()
    dramatiq.set_broker(broker)
    try:

        @dramatiq.actor(broker=broker, store_results=True, queue_name="fairpool-it")
        def cube(x: int) -> int:
            return x**3

        messages = [cube.send(i) for i in range(100)]
        worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
        worker.start()
        try:
            broker.join("fairpool-it", timeout=60_000)
            worker.join()
        finally:
            worker.stop()
        assert [m.get_result(block=True, timeout=10_000) for m in messages] == [
            i**3 for i in range(100)
        ]
    finally:
        broker.close()
        dramatiq.set_broker(previous)
    assert broker.client.connection_pool is pool
    assert pool.stats().borrows >= 200 and results_pool.stats().borrows >= 100


# ------------------------------------------------------------------------------------------ huey
def test_huey_on_fairpool_runs_100_tasks(server: RedisServer) -> None:
    pytest.importorskip("huey")
    from huey import RedisHuey

    pool = fairpool.ConnectionPool.from_url(_url(server), policy="lifo", max_idle=2)
    huey = RedisHuey("fairpool-it", connection_pool=pool)

    @huey.task()
    def double(x: int) -> int:
        return 2 * x

    handles = [double(i) for i in range(100)]
    assert huey.pending_count() == 100
    ran = 0
    while (task := huey.dequeue()) is not None:  # what the consumer's workers do
        huey.execute(task)
        ran += 1
    assert ran == 100
    assert [h.get() for h in handles] == [2 * i for i in range(100)]
    assert huey.storage.conn.connection_pool is pool
    assert pool.stats().borrows >= 300 and pool.stats().in_use == 0


# ---------------------------------------------------------------------------------------- limits
def _hits_from_threads(limiter: Any, limit: Any, key: str, threads: int, each: int) -> list[bool]:
    """``each`` hits of ``limit`` on ``key`` from each of ``threads`` threads; every outcome."""
    allowed: list[bool] = []
    lock = threading.Lock()

    def hit(_: int) -> None:
        for _ in range(each):
            ok = limiter.hit(limit, "fairpool-it", key)
            with lock:
                allowed.append(ok)

    _in_threads(hit, threads)
    return allowed


def test_limits_allows_exactly_n_of_m_hits_from_8_threads(server: RedisServer) -> None:
    pytest.importorskip("limits")
    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

    pool = fairpool.ConnectionPool.from_url(
        _url(server), policy="fifo", max_connections=4, block=True, timeout=10
    )
    storage = RedisStorage(_url(server), connection_pool=pool)
    for strategy, key in ((FixedWindowRateLimiter, "fixed"), (MovingWindowRateLimiter, "moving")):
        allowed = _hits_from_threads(strategy(storage), parse("37/minute"), key, 8, 25)
        assert len(allowed) == 200 and allowed.count(True) == 37, key
    stats = pool.stats()
    assert storage.storage.connection_pool is pool
    assert stats.borrows >= 400 and stats.open <= 4 and stats.in_use == 0


# ------------------------------------------------------------------------------------------- arq
def test_arq_worker_on_fairpool_runs_100_jobs(server: RedisServer) -> None:
    """arq requires redis-py < 6: CI runs this in the redis-py 5.x pass."""
    pytest.importorskip("arq", reason="arq is not installed (it requires redis-py < 6)")
    import asyncio

    from arq.connections import ArqRedis
    from arq.worker import Worker, func

    import fairpool.asyncio

    async def triple(ctx: dict[str, Any], x: int) -> int:
        return 3 * x

    async def main() -> None:
        pool = fairpool.asyncio.ConnectionPool.from_url(_url(server), policy="fifo")
        arq_redis = ArqRedis(pool_or_conn=pool)
        jobs = [await arq_redis.enqueue_job("triple", i) for i in range(100)]
        worker = Worker(
            functions=[func(triple, name="triple")],
            redis_pool=arq_redis,
            burst=True,
            poll_delay=0.05,
        )
        await worker.main()
        assert worker.jobs_complete == 100 and worker.jobs_failed == 0
        assert [await job.result(timeout=10) for job in jobs if job] == [3 * i for i in range(100)]
        await worker.close()  # closes the client's pool (close_connection_pool=True)...
        assert await arq_redis.ping()  # ...and the application goes on using the client
        assert arq_redis.connection_pool is pool and pool.stats().borrows >= 300
        await arq_redis.aclose()

    asyncio.run(main())
