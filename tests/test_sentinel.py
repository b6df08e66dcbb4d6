"""fairpool.SentinelConnectionPool behind redis-py's Sentinel, against real servers.

The module fixture runs a master, a replica (``--replicaof``) and one sentinel
(``sentinel monitor mymaster 127.0.0.1 <port> 1``, ``down-after-milliseconds 1000``,
``failover-timeout 3000``) with its config file in a temp dir of the test. The failover test is
last: it swaps the roles of master and replica.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from fairpool import ConnectionPool, Policy
from fairpool.sentinel import SentinelConnectionPool
from fairpool.tools.servers import RedisServer

from .helpers import wait_until

SERVICE = "mymaster"


@dataclass
class Topology:
    master: RedisServer
    replica: RedisServer
    sentinel: RedisServer

    def manager(self, **kwargs: Any) -> Sentinel:
        return Sentinel(
            [(self.sentinel.host, self.sentinel.port)],
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            **kwargs,
        )


def _wait(what: str, condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    """``wait_until``, also tolerating ResponseError (a sentinel answers errors mid-failover)."""
    wait_until(
        what,
        condition,
        timeout,
        interval,
        tolerate=(redis.ConnectionError, redis.TimeoutError, redis.ResponseError),
    )


def _link_up(replica: RedisServer) -> bool:
    return replica.info("replication").get("master_link_status") == "up"


def _replica_for(manager: Any) -> Any:
    """``Sentinel.replica_for`` (redis-py 8.x), ``slave_for`` before."""
    return getattr(manager, "replica_for", None) or manager.slave_for


def _close(manager: Any) -> None:
    """``Sentinel.close()`` (redis-py 8.x); before, close each sentinel's client."""
    close = getattr(manager, "close", None)
    if close is not None:
        close()
    else:
        for client in manager.sentinels:
            client.close()


def _sentinel_sees_replica(sentinel: RedisServer, port: int) -> bool:
    with sentinel.client(decode_responses=True) as c:
        replicas = c.execute_command("SENTINEL", "REPLICAS", SERVICE)
    # a dict per replica; a flat [name, value, ...] list where redis-py has no parser for the reply
    replicas = [
        r if isinstance(r, dict) else dict(zip(r[::2], r[1::2], strict=True)) for r in replicas
    ]
    return any(
        int(r["port"]) == port and r["flags"] == "slave" and r["master-link-status"] == "ok"
        for r in replicas
    )


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Master + replica + one sentinel, the replica in sync and known to the sentinel."""
    started: list[RedisServer] = []
    try:
        # No 5 s wait for more replicas before the first (diskless) full sync.
        fast_sync = ["--repl-diskless-sync-delay", "0"]
        master = RedisServer(name="sentinel-master", args=fast_sync).start()
        started.append(master)
        replica = RedisServer(
            name="sentinel-replica",
            args=[*fast_sync, "--replicaof", master.host, str(master.port)],
        ).start()
        started.append(replica)
        _wait("the replica's link to the master", lambda: _link_up(replica), timeout=15)
        conf = tmp_path_factory.mktemp("sentinel") / "sentinel.conf"
        conf.write_text(
            f"sentinel monitor {SERVICE} {master.host} {master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
        )
        sentinel = RedisServer(config_file=conf, args=["--sentinel"], name="sentinel")
        sentinel.start()
        started.append(sentinel)
        _wait(
            "the sentinel to see the replica in sync",
            lambda: _sentinel_sees_replica(sentinel, replica.port),
            timeout=20,
        )
        yield Topology(master, replica, sentinel)
    finally:
        for server in started:
            server.stop()


# ---------------------------------------------------------------------------------- tests


def test_master_for_uses_fairpool(topology: Topology) -> None:
    manager = topology.manager()
    master = manager.master_for(
        SERVICE, connection_pool_class=SentinelConnectionPool, policy="round_robin"
    )
    try:
        pool = master.connection_pool
        assert isinstance(pool, SentinelConnectionPool) and isinstance(pool, ConnectionPool)
        assert pool.policy is Policy.ROUND_ROBIN
        assert pool.connection_class is SentinelManagedConnection
        assert pool.get_master_address() == (topology.master.host, topology.master.port)
        assert pool.master_address == (topology.master.host, topology.master.port)
        for i in range(200):
            assert master.set(f"s:{i}", i)
            assert master.incr("s:counter") == i + 1
        with master.pipeline() as pipe:
            pipe.set("s:p", 1).incr("s:p").get("s:p")
            assert pipe.execute() == [True, 2, b"2"]
        assert master.execute_command("ROLE")[0] == b"master"

        # The policy is in force: idle connections are handed out in turn.
        held = [pool.get_connection() for _ in range(3)]
        for conn in held:
            assert isinstance(conn, SentinelManagedConnection)
            assert (conn.host, conn.port) == pool.master_address
            assert pool.owns_connection(conn)
            pool.release(conn)
        ids = [int(master.client_id()) for _ in range(6)]
        assert len(set(ids)) == 3 and ids[:3] == ids[3:]

        stats = pool.stats()
        assert stats.policy == "round_robin"
        assert stats.borrows >= 400 and stats.in_use == 0 and stats.idle == 3
        assert stats.closed_total == 0
        assert set(stats.endpoint_borrows) == {f"{topology.master.host}:{topology.master.port}"}
    finally:
        master.close()
        _close(manager)
    # The client owns its pool: close() disconnects it (redis-py's close), leaving it usable.
    conns = [*pool._get_free_connections(), *pool._get_in_use_connections()]
    assert conns and all(c._sock is None for c in conns) and not pool.closed


def test_replica_for_reads_from_the_replica(topology: Topology) -> None:
    manager = topology.manager()
    master = manager.master_for(SERVICE, connection_pool_class=SentinelConnectionPool)
    replica = _replica_for(manager)(
        SERVICE, connection_pool_class=SentinelConnectionPool, policy="lifo", max_idle=2
    )
    try:
        master.set("r:key", "replicated")
        pool = replica.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.policy is Policy.LIFO and not pool.is_master
        assert next(iter(pool.rotate_slaves())) == (topology.replica.host, topology.replica.port)
        _wait("the write to replicate", lambda: replica.get("r:key") == b"replicated", 10)
        for _ in range(50):
            assert replica.get("r:key") == b"replicated"
        assert replica.execute_command("ROLE")[0] == b"slave"
        with pytest.raises(redis.ReadOnlyError):
            replica.set("r:key", "nope")
        stats = pool.stats()
        assert stats.borrows >= 52
        assert set(stats.endpoint_borrows) == {f"{topology.replica.host}:{topology.replica.port}"}
    finally:
        replica.close()
        master.close()
        _close(manager)


def test_reset_gives_a_fresh_core_and_forgets_the_master(topology: Topology) -> None:
    manager = topology.manager()
    master = manager.master_for(SERVICE, connection_pool_class=SentinelConnectionPool)
    pool = master.connection_pool
    try:
        master.ping()
        assert pool.master_address is not None and pool.stats().open == 1
        pool.reset()
        assert pool.master_address is None
        st = pool.stats()
        assert st.open == 0 and st.borrows == 0
        assert master.ping()  # a new connection rediscovers the master
        assert pool.master_address == (topology.master.host, topology.master.port)
        # A connection pointing elsewhere is not owned by a master pool.
        conn = pool.get_connection()
        try:
            real = conn.port
            conn.port = real + 1
            assert not pool.owns_connection(conn)
            conn.port = real
            assert pool.owns_connection(conn)
        finally:
            pool.release(conn)
    finally:
        master.close()
        _close(manager)


def _at(pool: SentinelConnectionPool, address: tuple[str, int]) -> bool:
    """Whether every connection the pool holds was last connected to ``address``."""
    return all((slot.conn.host, slot.conn.port) == address for slot in pool._core.slots())


def test_failover_is_followed_and_stale_connections_are_retired(topology: Topology) -> None:
    old, new = topology.master, topology.replica
    old_address, new_address = (old.host, old.port), (new.host, new.port)
    manager = topology.manager()
    options: dict[str, Any] = {
        "connection_pool_class": SentinelConnectionPool,
        "retry": Retry(NoBackoff(), 2),
        "socket_timeout": 2.0,
        "socket_connect_timeout": 1.0,
    }
    # Client A rediscovers explicitly right after the switch; client B is left alone and must
    # find out by itself when the old master is demoted.
    a = manager.master_for(SERVICE, policy="fifo", **options)
    b = manager.master_for(SERVICE, policy="round_robin", **options)
    replica = _replica_for(manager)(SERVICE, connection_pool_class=SentinelConnectionPool)
    pool_a, pool_b = a.connection_pool, b.connection_pool
    assert isinstance(pool_a, SentinelConnectionPool) and isinstance(pool_b, SentinelConnectionPool)
    try:
        # A: four connections to the old master, three idle and one kept borrowed. B: two idle.
        conns = [pool_a.get_connection() for _ in range(4)]
        held = conns.pop()
        for conn in conns:
            pool_a.release(conn)
        for conn in [pool_b.get_connection() for _ in range(2)]:
            pool_b.release(conn)
        assert a.set("f:before", 1) and b.get("f:before") == b"1"
        assert _at(pool_a, old_address) and _at(pool_b, old_address)

        with topology.sentinel.client() as s:
            assert s.execute_command("SENTINEL", "FAILOVER", SERVICE)
        _wait(
            "the sentinel to switch the master",
            lambda: tuple(manager.discover_master(SERVICE)) == new_address,
            timeout=15,
        )

        # A asks (as a connecting connection would): its idle connections to the old master are
        # closed at once, reason "error", instead of being kept for reuse.
        assert pool_a.get_master_address() == new_address
        stats = pool_a.stats()
        assert stats.closed["error"] == 3 and stats.idle == 0 and stats.in_use == 1
        # Its next connections go straight to the new master (no write lands on the old one).
        for i in range(50):
            assert a.incr("f:a") == i + 1
        with new.client() as direct:
            assert int(direct.get("f:a")) == 50
        # The borrowed one is not owned any more: closed when it comes back, not reused.
        assert not pool_a.owns_connection(held)
        pool_a.release(held)
        stats = pool_a.stats()
        assert stats.closed["error"] == 4 and stats.in_use == 0
        assert set(stats.endpoint_connections) == {f"{new.host}:{new.port}"}
        assert _at(pool_a, new_address)

        # B: Sentinel demotes the old master a few seconds after the switch (and kills its
        # clients); until then B's writes may still land there. Within a bound, they reach the
        # new master, and B holds no connection to the old one any more.
        marker = [0]

        def b_writes_reach_new_master() -> bool:
            marker[0] += 1
            try:
                b.set("f:marker", marker[0])
            except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError):
                return False
            with new.client() as direct:
                return direct.get("f:marker") == str(marker[0]).encode()

        _wait("B's writes to reach the new master", b_writes_reach_new_master, 30, interval=0.2)
        assert pool_b.master_address == new_address
        for i in range(50):
            assert b.incr("f:b") == i + 1
        assert b.execute_command("ROLE")[0] == b"master"
        assert _at(pool_b, new_address)
        stats_b = pool_b.stats()
        assert stats_b.closed_total >= 1 and stats_b.in_use == 0
        assert set(stats_b.endpoint_connections) == {f"{new.host}:{new.port}"}

        # Replicas are rediscovered too: the demoted master now serves reads.
        _wait("the old master to replicate", lambda: _link_up(old), timeout=20)
        _wait("B's writes to replicate", lambda: replica.get("f:b") == b"50", timeout=10)
        assert replica.execute_command("ROLE")[0] == b"slave"
    finally:
        replica.close()
        a.close()
        b.close()
        _close(manager)
