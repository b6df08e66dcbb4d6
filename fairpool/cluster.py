"""Redis Cluster: every node's pool a fairpool pool.

``RedisCluster`` builds one ``Redis`` client (and pool) per node. It honours
``connection_pool_class`` only when it was given a URL, and it filters its other keyword arguments
through an allow-list (``redis.cluster.REDIS_ALLOWED_KEYS``) that drops fairpool's settings. This
module works with both: :class:`RedisCluster` (and the :func:`cluster` shortcut) always takes
redis-py's URL path — a ``host``/``port`` or ``startup_nodes=[ClusterNode(...)]`` is turned into a
URL for the first node plus the remaining startup nodes — and binds fairpool's settings into the
pool factory it passes as ``connection_pool_class``::

    rc = fairpool.cluster("redis://10.0.0.1:7000", policy="round_robin", max_connections=32)
    rc = fairpool.cluster([ClusterNode("10.0.0.1", 7000), ClusterNode("10.0.0.2", 7000)])
    rc.set("k", "v")
    fairpool.cluster_stats(rc)  # {"10.0.0.1:7000": PoolStats(...), ...}

Each node's pool is named after its node, ``<name>@<host>:<port>`` (``name`` is the ``name``
setting, by default ``fairpool-<n>`` numbered once for the client), which labels it in ``repr``
and in the exporters of :mod:`fairpool.metrics`.

MOVED/ASK redirection, topology refreshes and node failure handling are redis-py's: a node learnt
from a redirection or a refresh gets a fairpool pool too. One addition: :meth:`RedisCluster.close`
also closes every node pool it created (on redis-py's URL path the per-node ``Redis`` clients do
not own their pools, so they would otherwise stay open until garbage-collected).
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.cluster
from redis.cluster import ClusterNode
from redis.cluster import RedisCluster as _RedisCluster

from .config import (
    NAME_MAX,
    SETTING_NAMES,
    Policy,
    make_config,
    split_pool_settings,
    unknown_keyword,
)
from .pool import BlockingConnectionPool, ConnectionPool
from .stats import PoolStats

__all__ = ["POOL_KEYS", "NodePoolFactory", "RedisCluster", "cluster", "cluster_stats"]

POOL_KEYS: frozenset[str] = SETTING_NAMES | {"max_connections"}
"""Keyword arguments that configure each node's pool rather than the cluster client."""

StartupNode = ClusterNode | tuple[str, int] | str
"""A startup node: a ``ClusterNode``, a ``(host, port)`` pair or a ``"host:port"`` string."""


class NodePoolFactory:
    """The ``connection_pool_class`` given to redis-py: builds each node's fairpool pool with the
    bound settings, and remembers the pools it built (weakly) so that they can be closed.

    ``pool_class`` is :class:`fairpool.ConnectionPool` or a subclass; ``settings`` are its
    keyword-only settings (and ``max_connections``), already validated. Each node's pool is named
    after the node, ``<name>@<host>:<port>``, where ``<name>`` is the ``name`` setting (by default
    ``fairpool-<n>``, numbered once for the whole factory): the exporters and ``repr`` tell the
    nodes apart, and a pool redis-py builds again for the same node keeps the node's name.
    """

    def __init__(self, pool_class: type[ConnectionPool], settings: Mapping[str, Any]) -> None:
        self.pool_class = pool_class
        self.settings: dict[str, Any] = dict(settings)
        self.name: str = make_config(name=self.settings.pop("name", None)).name
        """The name the node pools' names start with."""
        self._pools: weakref.WeakSet[ConnectionPool] = weakref.WeakSet()
        self._lock = threading.Lock()

    def node_pool_name(self, host: str, port: int | str) -> str:
        """The name of the pool for node ``host:port``: ``<name>@<host>:<port>`` (``<name>`` cut
        short where the whole would pass the 200 characters a name may have)."""
        node = f"@{host}:{port}"
        return f"{self.name[: NAME_MAX - len(node)]}{node}"

    def __call__(self, **connection_kwargs: Any) -> ConnectionPool:
        """Build one node's pool: redis-py's per-node keyword arguments plus the bound settings
        (a setting redis-py also passes, such as ``max_connections``, keeps the bound value),
        named after the node (:meth:`node_pool_name`)."""
        kwargs = dict(connection_kwargs)
        kwargs.update(self.settings)
        kwargs["name"] = self.node_pool_name(
            kwargs.get("host", "localhost"), kwargs.get("port", 6379)
        )
        pool = self.pool_class(**kwargs)
        with self._lock:
            self._pools.add(pool)
        return pool

    def pools(self) -> list[ConnectionPool]:
        """Every pool built so far that is still alive (including those of nodes that left)."""
        with self._lock:
            return list(self._pools)

    def close(self) -> None:
        """Close every pool built so far: disconnect their connections, as redis-py's
        ``ConnectionPool.close()`` does (see :meth:`fairpool.ConnectionPool.close`)."""
        for pool in self.pools():
            pool.close()

    def __repr__(self) -> str:
        bound = {"name": self.name, **self.settings}
        settings = ", ".join(f"{k}={v!r}" for k, v in sorted(bound.items()))
        return f"<NodePoolFactory {self.pool_class.__qualname__}({settings})>"


class RedisCluster(_RedisCluster):
    """``redis.cluster.RedisCluster`` whose every node pool is a fairpool pool.

    Takes redis-py's arguments (``host``/``port``, ``startup_nodes``, ``url``, ``retry``,
    ``require_full_coverage``, connection keyword arguments such as ``socket_timeout``,
    ``password``, ``decode_responses``, ``protocol``, ``ssl`` …) plus fairpool's pool settings
    (``policy``, ``max_connections``, ``max_idle``, ``min_idle``, ``block``, ``timeout``,
    ``idle_timeout``, ``max_lifetime``, ``lifetime_jitter``, ``health_check``,
    ``health_check_after``, ``maintenance_interval``, ``name``, …), which apply to each node's
    pool separately; each node's pool is named ``<name>@<host>:<port>`` (see
    :class:`NodePoolFactory`). Settings may also be given as URL query parameters
    (``redis://h:7000?policy=lifo&max_idle=4``), which win over keyword arguments, as in
    redis-py's ``from_url``.

    ``connection_pool_class`` is the fairpool pool class to use (default
    :class:`fairpool.ConnectionPool`; :class:`fairpool.BlockingConnectionPool` also accepts
    ``queue_class``). Settings are validated here, before any connection is made.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int = 6379,
        startup_nodes: Sequence[StartupNode] | None = None,
        *,
        url: str | None = None,
        connection_pool_class: type[ConnectionPool] = ConnectionPool,
        **kwargs: Any,
    ) -> None:
        if not (
            isinstance(connection_pool_class, type)
            and issubclass(connection_pool_class, ConnectionPool)
        ):
            raise TypeError(
                "fairpool.cluster: connection_pool_class must be fairpool.ConnectionPool or a "
                f"subclass; got {connection_pool_class!r}"
            )
        settings = {k: kwargs.pop(k) for k in list(kwargs) if k in POOL_KEYS}
        _reject_unknown(kwargs)
        if "policy" in settings and settings["policy"] is None:
            del settings["policy"]  # the pool class's default
        if "queue_class" in kwargs:
            if not issubclass(connection_pool_class, BlockingConnectionPool):
                raise TypeError(
                    "fairpool.cluster: queue_class needs connection_pool_class="
                    "fairpool.BlockingConnectionPool (or pass policy=)"
                )
            settings["queue_class"] = kwargs.pop("queue_class")
        ssl = bool(kwargs.pop("ssl", False))
        nodes = [_cluster_node(n) for n in startup_nodes or ()]
        if url is not None:
            url, from_query = _split_pool_settings(url)
            settings.update(from_query)
            if ssl:
                url = _with_scheme(url, "rediss")
        elif host is not None:
            url = _node_url(host, port, ssl)
        elif nodes:
            first = nodes.pop(0)
            url = _node_url(first.host, first.port, ssl)
        # else: no node at all; redis-py raises its usual error below
        _validate(settings)
        self.pool_factory = NodePoolFactory(connection_pool_class, settings)
        super().__init__(
            startup_nodes=nodes,
            url=url,
            connection_pool_class=self.pool_factory,
            **kwargs,
        )

    def node_pools(self) -> dict[str, ConnectionPool]:
        """The fairpool pool of every node currently known, by node name (``host:port``)."""
        pools: dict[str, ConnectionPool] = {}
        for node in self.get_nodes():  # type: ignore[no-untyped-call]
            client = node.redis_connection
            pool = getattr(client, "connection_pool", None)
            if isinstance(pool, ConnectionPool):
                pools[node.name] = pool
        return pools

    def close(self) -> None:
        """Close the client and every node pool it created (their connections are
        disconnected, as by :meth:`fairpool.ConnectionPool.close`)."""
        try:
            super().close()
        finally:
            factory = self.__dict__.get("pool_factory")
            if factory is not None:
                factory.close()


def cluster(
    url_or_startup_nodes: str | StartupNode | Sequence[StartupNode] | None = None,
    *,
    policy: Policy | str | None = None,
    **kwargs: Any,
) -> RedisCluster:
    """A cluster client whose every node pool is a fairpool pool with the given settings.

    ``url_or_startup_nodes`` is a ``redis://`` / ``rediss://`` URL of any node (fairpool settings
    may be query parameters), or one startup node or a list of them (``ClusterNode``,
    ``(host, port)`` or ``"host:port"``); or pass ``host=``/``port=`` or ``startup_nodes=``.
    ``policy`` and the other fairpool settings (``max_connections``, ``max_idle``, ``block``,
    ``timeout``, …) configure each node's pool; every other keyword argument is redis-py's
    ``RedisCluster`` argument. Returns a :class:`RedisCluster` (a ``redis.cluster.RedisCluster``);
    read its pools' counters with :func:`cluster_stats`.
    """
    if policy is not None:
        kwargs["policy"] = policy
    if url_or_startup_nodes is None:
        return RedisCluster(**kwargs)
    if isinstance(url_or_startup_nodes, str) and "://" in url_or_startup_nodes:
        return RedisCluster(url=url_or_startup_nodes, **kwargs)
    nodes: list[StartupNode]
    if isinstance(url_or_startup_nodes, (str, ClusterNode)) or (
        isinstance(url_or_startup_nodes, tuple)
        and len(url_or_startup_nodes) == 2
        and isinstance(url_or_startup_nodes[1], int)
    ):
        nodes = [url_or_startup_nodes]
    else:
        nodes = list(url_or_startup_nodes)
    nodes.extend(kwargs.pop("startup_nodes", None) or ())
    return RedisCluster(startup_nodes=nodes, **kwargs)


def cluster_stats(rc: _RedisCluster) -> dict[str, PoolStats]:
    """``{node name: PoolStats}`` for every node of ``rc`` whose pool is a fairpool pool.

    Works with any ``redis.cluster.RedisCluster`` (nodes with redis-py's own pools are left out).
    Node names are ``host:port`` as redis-py spells them; only nodes currently in the cluster's
    topology are included.
    """
    out: dict[str, PoolStats] = {}
    for node in rc.get_nodes():  # type: ignore[no-untyped-call]
        pool = getattr(node.redis_connection, "connection_pool", None)
        if isinstance(pool, ConnectionPool):
            out[node.name] = pool.stats()
    return out


# --------------------------------------------------------------------------------- helpers


def _cluster_node(node: StartupNode) -> ClusterNode:
    if isinstance(node, ClusterNode):
        return node
    if isinstance(node, str):
        host, sep, port = node.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"fairpool.cluster: startup node {node!r} is not 'host:port'")
        return ClusterNode(host.strip("[]"), int(port))  # type: ignore[no-untyped-call]
    if isinstance(node, tuple) and len(node) == 2:
        return ClusterNode(node[0], int(node[1]))  # type: ignore[no-untyped-call]
    raise TypeError(
        "fairpool.cluster: a startup node is a ClusterNode, a (host, port) pair or a "
        f"'host:port' string; got {node!r}"
    )


def _node_url(host: str, port: int | str, ssl: bool) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{'rediss' if ssl else 'redis'}://{netloc}:{int(port)}"


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "redis":
        parts = parts._replace(scheme=scheme)
    return urlunsplit(parts)


def _split_pool_settings(url: str) -> tuple[str, dict[str, Any]]:
    """Take fairpool's settings out of a URL's query string (redis-py would drop them, or pass
    them on unconverted) and return the URL without them plus the converted settings."""
    return split_pool_settings(url, POOL_KEYS)


def _reject_unknown(kwargs: Mapping[str, Any]) -> None:
    """Reject a keyword argument redis-py's ``RedisCluster`` would drop without a word: neither
    one of its own parameters nor in its allow-list of per-node keyword arguments (both read
    from redis-py, so that later versions' additions pass)."""
    allowed = getattr(redis.cluster, "REDIS_ALLOWED_KEYS", None)
    if allowed is None:
        return
    params = inspect.signature(_RedisCluster.__init__).parameters
    known = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    known.update(allowed, POOL_KEYS, ("queue_class", "ssl"))
    for name in kwargs:
        if name not in known:
            raise unknown_keyword(
                "fairpool.cluster", name, known, "redis.cluster.RedisCluster would ignore it"
            )


def _validate(settings: Mapping[str, Any]) -> None:
    """Validate the settings now, so that a mistake is not reported as "cannot connect"."""
    make_config(**{k: v for k, v in settings.items() if k in POOL_KEYS})
