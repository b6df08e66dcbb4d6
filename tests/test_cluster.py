"""fairpool pools behind redis-py's RedisCluster, against a real 3-master Redis Cluster.

The cluster is built by the module fixture: three ``redis-server --cluster-enabled yes`` processes
(node timeout 1 s; ``cluster-require-full-coverage no`` so that a dead master takes only its own
slots down), slots assigned with ``CLUSTER ADDSLOTSRANGE`` (``ADDSLOTS`` in chunks before 7.0),
joined with ``CLUSTER MEET``. Each node's ``nodes.conf`` lives in a directory of the test (not the
server's private directory, which ``RedisServer`` removes on kill/stop), so a killed master
restarted on the same port rejoins with its identity and slots.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from fairpool import BlockingConnectionPool, ConnectionPool, Policy
from fairpool.cluster import (
    NodePoolFactory,
    RedisCluster,
    _split_pool_settings,
    cluster,
    cluster_stats,
)
from fairpool.metrics import labelled, registered
from fairpool.scripting import CrossSlotError, Script, ScriptRegistry
from fairpool.scripting.ratelimit import GCRA
from fairpool.tools.servers import RedisServer

from .compat import CLUSTER_KEEPS_NODE_POOLS
from .helpers import wait_until

NODE_TIMEOUT_MS = 1000
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))


# --------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    servers: list[RedisServer]
    ids: list[str]

    @property
    def url(self) -> str:
        return f"redis://{self.servers[0].host}:{self.servers[0].port}"

    def server_of(self, node_name: str) -> RedisServer:
        return next(s for s in self.servers if f"{s.host}:{s.port}" == node_name)

    def id_of(self, server: RedisServer) -> str:
        return self.ids[self.servers.index(server)]


def _cluster_info(server: RedisServer) -> dict[str, str]:
    with server.client(decode_responses=True) as c:
        text = c.execute_command("CLUSTER INFO")
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).split() if ":" in line)


def _cluster_ok(servers: list[RedisServer]) -> bool:
    for server in servers:
        info = _cluster_info(server)
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != "3":
            return False
    return True


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters, slots split evenly, ``cluster_state:ok`` on every node."""
    confdir: Path = tmp_path_factory.mktemp("cluster-conf")
    servers = [
        RedisServer(
            name=f"cluster-{i}",
            args=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                os.fspath(confdir / f"nodes-{i}.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage",
                "no",
            ],
        )
        for i in range(3)
    ]
    try:
        for server in servers:
            server.start()
        ids = []
        for server, (low, high) in zip(servers, SLOT_RANGES, strict=True):
            with server.client(decode_responses=True) as c:
                ids.append(str(c.execute_command("CLUSTER MYID")))
                if server.version >= (7, 0, 0):
                    c.execute_command("CLUSTER ADDSLOTSRANGE", low, high)
                else:
                    for start in range(low, high + 1, 1000):
                        c.execute_command(
                            "CLUSTER ADDSLOTS", *range(start, min(start + 1000, high + 1))
                        )
        with servers[0].client() as c:
            for server in servers[1:]:
                c.execute_command("CLUSTER MEET", server.host, server.port)
        wait_until("cluster_state:ok on all nodes", lambda: _cluster_ok(servers), timeout=20)
        yield Cluster(servers, ids)
    finally:
        for server in servers:
            server.stop()


def _node_name(server: RedisServer) -> str:
    return f"{server.host}:{server.port}"


def _fast_fail(**kwargs: Any) -> dict[str, Any]:
    """Client options for fault tests: no backoff, bounded socket waits."""
    options: dict[str, Any] = {
        "retry": Retry(NoBackoff(), 1),
        "socket_timeout": 2.0,
        "socket_connect_timeout": 0.5,
    }
    options.update(kwargs)
    return options


# ------------------------------------------------------------------------- no server needed


def test_url_query_settings_are_taken_out_and_converted() -> None:
    url, settings = _split_pool_settings(
        "redis://h:7000/0?policy=lifo&max_idle=4&block=true&timeout=2.5&socket_timeout=1"
        "&max_connections=8"
    )
    assert url == "redis://h:7000/0?socket_timeout=1"
    assert settings == {
        "policy": "lifo",
        "max_idle": 4,
        "block": True,
        "timeout": 2.5,
        "max_connections": 8,
    }
    assert _split_pool_settings("redis://h:7000") == ("redis://h:7000", {})


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"policy": "bogus"}, ValueError),
        ({"max_idle": -1}, ValueError),
        ({"block": "yes"}, TypeError),
        ({"queue_class": object}, TypeError),
        ({"connection_pool_class": redis.ConnectionPool}, TypeError),
    ],
)
def test_bad_settings_fail_before_connecting(kwargs: dict[str, Any], error: type) -> None:
    # Port 1: nothing listens; the settings must be rejected before any connection is tried.
    with pytest.raises(error):
        cluster("redis://127.0.0.1:1", **kwargs)


def test_bad_setting_in_url_fails_before_connecting() -> None:
    with pytest.raises(ValueError, match="max_idle"):
        cluster("redis://127.0.0.1:1?max_idle=lots")


def test_startup_node_forms() -> None:
    with pytest.raises(ValueError):
        cluster(["no-port-here"])
    with pytest.raises(TypeError):
        cluster([42])  # type: ignore[list-item]


def test_factory_binds_settings_and_tracks_pools() -> None:
    factory = NodePoolFactory(ConnectionPool, {"policy": "lifo", "max_connections": 3})
    pool = factory(host="127.0.0.1", port=1, max_connections=100)
    assert isinstance(pool, ConnectionPool)
    assert pool.policy is Policy.LIFO and pool.max_connections == 3
    assert factory.pools() == [pool]
    assert "lifo" in repr(factory)
    # Named after the node: the name setting (by default fairpool-<n>, one n for the factory)
    # then @host:port; a long name is cut short so that the node part stays.
    assert pool.config.name == f"{factory.name}@127.0.0.1:1"
    assert factory.name.startswith("fairpool-") and "@" not in factory.name
    assert factory(host="127.0.0.1", port=2).config.name == f"{factory.name}@127.0.0.1:2"
    long = NodePoolFactory(ConnectionPool, {"name": "x" * 200})
    assert long.node_pool_name("127.0.0.1", 7000) == "x" * 185 + "@127.0.0.1:7000"
    assert long(host="127.0.0.1", port=7000).config.name == "x" * 185 + "@127.0.0.1:7000"
    factory.close()  # as redis-py's pool close(): disconnects; the pool stays usable
    assert not pool.closed and _all_disconnected(pool)


# ------------------------------------------------------------------------------ workloads


def _workload(rc: redis.cluster.RedisCluster, tid: int, commands: int) -> tuple[int, int]:
    """Mixed commands (set/get/incr/hset/hget/mget with hash tags, pipelines of 4); checks every
    reply and returns how many commands were sent and how many borrows they needed at least (a
    pipeline borrows one connection per node it touches)."""
    sent = 0
    counter = f"{{w{tid}}}:counter"
    rc.delete(counter)
    sent += 1
    borrows = 1
    incrs = 0
    i = 0
    while sent < commands:
        tag = f"{{w{tid}-{(i // 8) % 64}}}"
        op = i % 8
        if op == 0:
            assert rc.set(f"{tag}:a", i)
            sent += 1
        elif op == 1:
            assert rc.get(f"{tag}:a") is not None
            sent += 1
        elif op == 2:
            incrs += 1
            assert rc.incr(counter) == incrs
            sent += 1
        elif op == 3:
            rc.hset(f"{tag}:h", mapping={"f": i, "g": tid})
            sent += 1
        elif op == 4:
            assert int(rc.hget(f"{tag}:h", "g")) == tid
            sent += 1
        elif op == 5:
            rc.set(f"{tag}:b", tid)
            values = rc.mget(f"{tag}:a", f"{tag}:b")
            assert values[1] == str(tid).encode()
            sent += 2
        else:
            with rc.pipeline() as pipe:
                pipe.set(f"{tag}:p", i)
                pipe.incr(counter)
                pipe.get(f"{tag}:p")
                pipe.hset(f"{tag}:h", "p", i)
                results = pipe.execute()
            incrs += 1
            assert results[1] == incrs and results[2] == str(i).encode()
            sent += 4
            borrows -= 3
        i += 1
    assert int(rc.get(counter)) == incrs
    return sent + 1, sent + borrows + 1


def _client_ids(rc: redis.cluster.RedisCluster, node: ClusterNode, n: int) -> list[int]:
    return [int(rc.execute_command("CLIENT ID", target_nodes=node)) for _ in range(n)]


@pytest.mark.parametrize(
    ("policy", "how"),
    [(Policy.FIFO, "url"), (Policy.LIFO, "startup_nodes"), (Policy.ROUND_ROBIN, "host_port")],
)
def test_ten_thousand_mixed_commands(redis_cluster: Cluster, policy: Policy, how: str) -> None:
    first = redis_cluster.servers[0]
    if how == "url":
        rc = cluster(f"{redis_cluster.url}?policy={policy.value}&max_connections=16")
    elif how == "startup_nodes":
        nodes = [ClusterNode(s.host, s.port) for s in redis_cluster.servers]
        rc = cluster(nodes, policy=policy, max_connections=16)
    else:
        rc = RedisCluster(host=first.host, port=first.port, policy=policy, max_connections=16)
    try:
        threads_n, per_thread = 4, 2500
        sent = [0] * threads_n
        min_borrows = [0] * threads_n
        errors: list[BaseException] = []

        def run(tid: int) -> None:
            try:
                sent[tid], min_borrows[tid] = _workload(rc, tid, per_thread)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "workload did not finish in 60 s"
        assert not errors, errors[0]
        assert sum(sent) >= 10_000

        stats = cluster_stats(rc)
        assert set(stats) == {_node_name(s) for s in redis_cluster.servers}
        for node in rc.get_nodes():
            pool = node.redis_connection.connection_pool
            assert isinstance(pool, ConnectionPool)
            assert pool.policy is policy and pool.max_connections == 16
        for name, st in stats.items():
            assert st.policy == policy.value
            assert st.borrows > 500, (name, st)
            assert st.in_use == 0 and 1 <= st.open <= 16
            assert st.closed_total == 0
            assert st.endpoint_borrows.get(name, 0) > 0
        # held-and-released connections below are not counted yet
        assert sum(st.borrows for st in stats.values()) >= sum(min_borrows)

        # The policy is really in force in a node pool: hand out its idle connections in turn.
        node = rc.get_node_from_key("{w0-0}:a")
        pool = node.redis_connection.connection_pool
        held = [pool.get_connection() for _ in range(3)]
        for conn in held:
            pool.release(conn)
        idle = pool.stats().idle
        assert idle >= 3
        ids = _client_ids(rc, node, 2 * idle)
        if policy is Policy.LIFO:
            assert len(set(ids)) == 1
        else:
            assert len(set(ids)) == idle and ids[:idle] == ids[idle:]
    finally:
        rc.close()
    assert all(_all_disconnected(p) and not p.closed for p in rc.pool_factory.pools())


def test_every_node_learnt_later_gets_a_fairpool_pool_and_close_closes_all(
    redis_cluster: Cluster,
) -> None:
    # Only one startup node: the other two are learnt from CLUSTER SLOTS.
    first = redis_cluster.servers[0]
    rc = cluster(f"{first.host}:{first.port}", policy="lifo", max_idle=2)
    try:
        rc.set("{learnt}k", "v")
        assert rc.get("{learnt}k") == b"v"
        pools = rc.node_pools()
        assert len(pools) == 3
        assert all(p.policy is Policy.LIFO and p.config.max_idle == 2 for p in pools.values())
        # redis-py's own pools are left out of cluster_stats.
        with redis.cluster.RedisCluster(host=first.host, port=first.port) as plain:
            assert cluster_stats(plain) == {}
        # The pool of the startup node used for discovery is tracked too.
        assert len(rc.pool_factory.pools()) >= 3
    finally:
        rc.close()
    assert all(_all_disconnected(p) and not p.closed for p in rc.pool_factory.pools())


def test_node_pools_are_named_and_labelled_by_node(redis_cluster: Cluster) -> None:
    """With one ``name`` for the cluster, each node's pool is ``name@host:port`` in its name,
    repr and exporter label; a pool redis-py builds again for a node (as redis-py before 7 does
    after a connection error) gets the same label, and the other nodes' labels do not move."""
    rc = cluster(redis_cluster.url, name="cache", policy="fifo")
    try:
        for i in range(30):
            assert rc.set(f"named{i}", i)
        pools = rc.node_pools()
        assert len(pools) == 3
        assert {node: p.config.name for node, p in pools.items()} == {
            node: f"cache@{node}" for node in pools
        }
        for node, pool in pools.items():
            assert f"name='cache@{node}'" in repr(pool)
        by_label = dict(labelled(registered()))
        assert all(by_label[f"cache@{node}"] is pool for node, pool in pools.items())
        # Where redis-py keeps the pool of the startup node it used for discovery alive (a pool of
        # the same node, made before the node's own), that one is told apart.
        assert len(rc.pool_factory.pools()) >= len(pools)
        assert all(label.startswith("cache@") for label, _ in labelled(rc.pool_factory.pools()))
        _assert_prometheus_series(rc, pools)

        node = rc.get_node_from_key("named0")
        node.redis_connection = None  # what redis-py before 7 does on a connection error
        rc.nodes_manager.initialize()
        assert rc.get("named0") == b"0"
        again = rc.node_pools()
        assert again[node.name] is not pools[node.name]
        assert again[node.name].config.name == f"cache@{node.name}"
        by_label = dict(labelled(registered()))
        assert all(by_label[f"cache@{n}"] is p for n, p in again.items())
        assert all(again[n] is pools[n] for n in pools if n != node.name)
        _assert_prometheus_series(rc, again)
    finally:
        rc.close()


def test_node_pools_without_a_name_share_one_numbered_name(redis_cluster: Cluster) -> None:
    rc = cluster(redis_cluster.url)
    try:
        rc.set("unnamed", 1)
        base = rc.pool_factory.name
        assert base.startswith("fairpool-")
        assert {n: p.config.name for n, p in rc.node_pools().items()} == {
            n: f"{base}@{n}" for n in rc.node_pools()
        }
    finally:
        rc.close()


def _assert_prometheus_series(rc: RedisCluster, pools: dict[str, ConnectionPool]) -> None:
    """Prometheus's ``fairpool_borrows`` has one series per node pool, labelled by node."""
    try:
        from fairpool.metrics.prometheus import Collector

        collector = Collector(rc.pool_factory.pools)
    except ImportError:  # the prometheus extra is not installed
        return
    family = next(f for f in collector.collect() if f.name == "fairpool_borrows")
    series = {s.labels["pool"]: s.value for s in family.samples if s.name.endswith("_total")}
    for node, pool in pools.items():
        assert series[f"cache@{node}"] == pool.stats().borrows


def test_single_node_forms_and_the_blocking_pool_class(redis_cluster: Cluster) -> None:
    first = redis_cluster.servers[0]
    for start in [(first.host, first.port), ClusterNode(first.host, first.port)]:
        rc = cluster(
            start,
            connection_pool_class=BlockingConnectionPool,
            queue_class=queue.LifoQueue,
            max_connections=4,
            timeout=1.0,
            policy=None,
        )
        try:
            assert rc.set("{single}k", 1) and rc.incr("{single}k") == 2
            pools = rc.node_pools()
            assert len(pools) == 3
            for pool in pools.values():
                assert isinstance(pool, BlockingConnectionPool)
                assert pool.policy is Policy.LIFO and pool.block and pool.timeout == 1.0
                assert pool.max_connections == 4
        finally:
            rc.close()


def test_ask_and_moved_redirections_are_followed(redis_cluster: Cluster) -> None:
    rc = cluster(redis_cluster.url, policy="round_robin", **_fast_fail())
    try:
        tag = "{fp-migrate}"
        key, new_key = f"{tag}k", f"{tag}new"
        slot = rc.keyslot(key)
        src = redis_cluster.server_of(rc.get_node_from_key(key).name)
        dst = next(s for s in redis_cluster.servers if s is not src)
        src_id, dst_id = redis_cluster.id_of(src), redis_cluster.id_of(dst)
        rc.delete(key, new_key)
        assert rc.set(key, "v1")

        with dst.client() as d, src.client() as s:
            d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", src_id)
            s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
            # ASK: a key the source does not hold is redirected to the importing node.
            assert rc.set(new_key, "n1")
            assert int(d.execute_command("CLUSTER COUNTKEYSINSLOT", slot)) == 1
            assert int(s.execute_command("CLUSTER COUNTKEYSINSLOT", slot)) == 1
            assert rc.get(new_key) == b"n1"
            s.execute_command("MIGRATE", dst.host, dst.port, "", 0, 5000, "KEYS", key)
            for server in [dst, src, *[x for x in redis_cluster.servers if x not in (src, dst)]]:
                with server.client() as c:
                    c.execute_command("CLUSTER SETSLOT", slot, "NODE", dst_id)

        dst_pool = rc.node_pools()[_node_name(dst)]
        before = dst_pool.stats().borrows
        assert rc.get_node_from_key(key).name == _node_name(src)  # the client's map is stale
        assert rc.get(key) == b"v1"  # MOVED from src, followed to dst
        assert rc.get_node_from_key(key).name == _node_name(dst)  # the map was fixed
        assert rc.get(new_key) == b"n1"
        assert rc.incr(f"{tag}counter") == 1
        assert dst_pool.stats().borrows >= before + 3
        for st in cluster_stats(rc).values():
            assert st.policy == "round_robin" and st.in_use == 0
    finally:
        rc.close()


def test_killed_master_is_recovered(redis_cluster: Cluster) -> None:
    rc = cluster(redis_cluster.url, policy="fifo", **_fast_fail())
    victim = redis_cluster.servers[2]
    victim_name = _node_name(victim)
    try:
        on_victim = next(
            f"v{i}" for i in range(10_000) if rc.get_node_from_key(f"v{i}").name == victim_name
        )
        elsewhere = next(
            f"o{i}" for i in range(10_000) if rc.get_node_from_key(f"o{i}").name != victim_name
        )
        for i in range(20):
            assert rc.set(on_victim, i) and rc.set(elsewhere, i)
        victim_pool = rc.node_pools()[victim_name]
        assert victim_pool.stats().open >= 1

        victim.kill()
        down_since = time.monotonic()
        failures = 0
        for i in range(5):
            with pytest.raises((redis.ConnectionError, redis.exceptions.ClusterDownError)):
                rc.set(on_victim, "while-down")
            failures += 1
            # The other masters keep serving while one is down.
            assert rc.set(elsewhere, f"still-up-{i}")
            assert rc.get(elsewhere) == f"still-up-{i}".encode()
        assert failures == 5
        assert time.monotonic() - down_since < 10

        victim.start()  # same port; nodes.conf (outside its private dir) survived the kill
        recovered_at: list[float] = []

        def writes_again() -> bool:
            try:
                rc.set(on_victim, "back")
            except (redis.ConnectionError, redis.exceptions.ClusterDownError):
                return False
            recovered_at.append(time.monotonic())
            return True

        wait_until("writes to the restarted master", writes_again, timeout=30, interval=0.1)
        # Once it is back, every command succeeds.
        for i in range(200):
            assert rc.set(on_victim, i) and rc.get(on_victim) == str(i).encode()
            assert rc.set(elsewhere, i)
        # Same pool object as before the failure, still fairpool's, with the failure on record.
        pool = rc.node_pools()[victim_name]
        st = pool.stats()
        assert st.policy == "fifo" and st.in_use == 0
        if not CLUSTER_KEEPS_NODE_POOLS:
            # redis-py before 7.x built the node a new client, whose pool is fairpool's too
            assert isinstance(pool, ConnectionPool) and st.borrows >= 200
            return
        assert pool is victim_pool
        assert st.closed["error"] + st.closed["health_check"] >= 1
        assert st.borrows >= 220
    finally:
        rc.close()
        if not victim.running:
            victim.start()
        wait_until(
            "cluster_state:ok after the restart", lambda: _cluster_ok(redis_cluster.servers), 20
        )


# ------------------------------------------------------------------------- scripts on a cluster


def _key_on(rc: redis.cluster.RedisCluster, server: RedisServer, prefix: str) -> str:
    """A hash tag whose slot lives on ``server``."""
    name = _node_name(server)
    return next(
        f"{{{prefix}{i}}}"
        for i in range(10_000)
        if rc.get_node_from_key(f"{{{prefix}{i}}}").name == name
    )


def _script_calls(server: RedisServer) -> dict[str, int]:
    """Calls of the scripting commands on ``server`` since its last CONFIG RESETSTAT."""
    with server.client(decode_responses=True) as c:
        stats = c.info("commandstats")
    load = "script|load" if server.version >= (7, 0, 0) else "script"  # no subcommands in 6.2
    calls = {
        name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
        for name in ("evalsha", "evalsha_ro", "eval")
    }
    calls["script load"] = int(stats.get(f"cmdstat_{load}", {}).get("calls", 0))
    return calls


def test_scripts_on_a_real_cluster(redis_cluster: Cluster) -> None:
    """fairpool.Script and the rate limiters through RedisCluster, on every master: NOSCRIPT
    recovered on the node that answered (also after SCRIPT FLUSH on all nodes), read-only scripts
    as EVALSHA_RO where the server has it, the slot check before anything is sent, preloading on
    every primary, and the asyncio cluster client."""
    servers = redis_cluster.servers
    for server in servers:
        with server.client() as c:
            c.flushall()  # the module's cluster is shared: start from empty keys
            c.script_flush()
            c.config_resetstat()
    incr = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])", name="incr")
    get_ro = Script("#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", name="get")
    rc = cluster(redis_cluster.url, max_connections=8)
    try:
        tags = {_node_name(s): _key_on(rc, s, "s") for s in servers}
        for round_ in range(1, 4):
            for tag in tags.values():
                assert incr(rc, [f"{tag}:n"], [1]) == round_
                assert incr(rc, [f"{tag}:a", f"{tag}:b"], [2]) == 2 * round_  # one slot, two keys
            if round_ == 2:
                for server in servers:  # a flush on every node mid-run never reaches the caller
                    with server.client() as c:
                        c.script_flush()
        for server in servers:
            calls = _script_calls(server)
            # loaded once per node before and once after the flush, never run with EVAL
            # (6.2 counts every SCRIPT subcommand together: the flush too)
            flushes = 0 if server.version >= (7, 0, 0) else 1
            assert calls["script load"] - flushes == 2 and calls["eval"] == 0, calls
            assert calls["evalsha"] == 6 + 2, calls  # 6 calls plus the 2 NOSCRIPT replies
            with server.client() as c:
                assert c.script_exists(incr.sha) == [True]

        before = {_node_name(s): _script_calls(s) for s in servers}
        for name, tag in tags.items():
            rc.set(f"{tag}:v", name)
            assert get_ro(rc, [f"{tag}:v"]) == name.encode()
        for server in servers:  # each read-only call ran on its key's node, as EVALSHA_RO on 7+
            was, now = before[_node_name(server)], _script_calls(server)
            if server.version >= (7, 0, 0):
                assert now["evalsha_ro"] > was["evalsha_ro"] and now["evalsha"] == was["evalsha"]
            else:
                assert now["evalsha"] > was["evalsha"]

        # keys spanning slots: refused on the client, nothing sent
        borrows = sum(st.borrows for st in cluster_stats(rc).values())
        a, b = list(tags.values())[:2]
        with pytest.raises(CrossSlotError, match="hash tag"):
            incr(rc, [f"{a}:x", f"{b}:x"], [1])
        assert sum(st.borrows for st in cluster_stats(rc).values()) == borrows

        # preloading reaches every primary
        for server in servers:
            with server.client() as c:
                c.script_flush()
        shas = ScriptRegistry([incr, get_ro]).preload(rc)
        for server in servers:
            with server.client() as c:
                assert c.script_exists(*shas) == [True, True]

        # a bundled limiter on each master
        for tag in tags.values():
            limiter = GCRA(rc, f"{tag}:limit", rate=1, period=10.0, burst=3)
            assert [limiter.allow().allowed for _ in range(5)] == [1, 1, 1, 0, 0]
    finally:
        rc.close()

    async def on_asyncio_cluster() -> None:
        from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

        first = servers[0]
        arc = AsyncRedisCluster(host=first.host, port=first.port)
        try:
            for server in servers:
                with server.client() as c:
                    c.script_flush()
            for tag in tags.values():
                assert await incr(arc, [f"{tag}:async"], [5]) == 5
            with pytest.raises(CrossSlotError):
                incr(arc, [f"{a}:x", f"{b}:x"], [1])  # raised at the call, before any await
        finally:
            await arc.aclose()

    asyncio.run(on_asyncio_cluster())


def _all_disconnected(pool: ConnectionPool) -> bool:
    """Whether every connection of ``pool`` (idle or borrowed) has its socket closed."""
    conns = [*pool._get_free_connections(), *pool._get_in_use_connections()]
    return all(c._sock is None for c in conns)
