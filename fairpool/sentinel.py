"""Sentinel: fairpool's pool behind ``redis.sentinel.Sentinel.master_for`` / ``replica_for``.

:class:`SentinelConnectionPool` combines redis-py's ``SentinelConnectionPool`` (service discovery,
``SentinelManagedConnection``, ``owns_connection``) with :class:`fairpool.ConnectionPool` (policies,
fair waiting, pruning, stats) by multiple inheritance::

    sentinel = redis.sentinel.Sentinel([("127.0.0.1", 26379)], socket_timeout=0.5)
    master = sentinel.master_for(
        "mymaster", connection_pool_class=fairpool.SentinelConnectionPool, policy="round_robin"
    )
    replica = sentinel.replica_for(
        "mymaster", connection_pool_class=fairpool.SentinelConnectionPool
    )

Failover is followed as in redis-py: a connection (re)connecting asks Sentinel for the master's
address. One difference, on purpose: when that address has changed, the idle connections still
pointing at the old master are *closed* (reason ``"error"`` in :meth:`~ConnectionPool.stats`)
instead of being disconnected and kept for reuse, and borrowed ones are closed when they come back
(``owns_connection()`` is false for them), so no connection to a demoted master is ever handed out
again.
"""

from __future__ import annotations

from typing import Any

from redis.sentinel import SentinelConnectionPool as RedisSentinelConnectionPool
from redis.sentinel import SentinelConnectionPoolProxy

from ._compat import CacheProxyConnection
from .pool import ConnectionPool

__all__ = ["SentinelConnectionPool"]


class _FairSentinelProxy(SentinelConnectionPoolProxy):
    """redis-py's discovery proxy (the ``connection_pool`` every ``SentinelManagedConnection``
    asks for addresses), except that a changed master address retires the pool's idle connections
    to the old master instead of disconnecting them for later reuse."""

    def get_master_address(self) -> tuple[str, int]:
        """Ask Sentinel for the master's address; on a change, retire stale idle connections."""
        address: tuple[str, int] = self.sentinel_manager.discover_master(self.service_name)
        if self.is_master and self.master_address != address:
            self.master_address = address
            pool = self.connection_pool_ref()
            if isinstance(pool, SentinelConnectionPool):
                pool._retire_idle_not_at(address)
        return address


class SentinelConnectionPool(RedisSentinelConnectionPool, ConnectionPool):
    """fairpool's pool for a Sentinel-managed service (master or replicas).

    Use it through ``Sentinel.master_for(name, connection_pool_class=SentinelConnectionPool,
    **settings)`` or ``Sentinel.replica_for(...)``: the keyword arguments given there (and the
    ``Sentinel``'s own connection keyword arguments) reach this class, so fairpool's settings
    (``policy``, ``max_idle``, ``block``, ``timeout``, ``idle_timeout``, …; see
    :class:`fairpool.ConnectionPool`) are passed the same way. ``service_name`` and
    ``sentinel_manager`` are redis-py's; ``is_master``, ``check_connection`` and ``ssl`` are
    consumed by redis-py's ``SentinelConnectionPool``, which also picks
    ``SentinelManagedConnection`` (or its SSL variant) as the connection class.

    Everything redis-py's Sentinel pool offers still works: ``get_master_address()``,
    ``rotate_slaves()`` / ``rotate_replicas()``, ``master_address``, ``owns_connection()`` (a
    master pool owns only connections to the current master), and ``reset()`` (fairpool's fresh
    core plus a reset of the discovery state, e.g. in a forked child).
    """

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]
        # Replace redis-py's proxy by one that retires stale idle connections on a master change.
        # No connection exists yet, so nothing holds the old proxy.
        self.proxy = _FairSentinelProxy(  # type: ignore[no-untyped-call]
            connection_pool=self,
            is_master=self.is_master,
            check_connection=self.check_connection,
            service_name=service_name,
            sentinel_manager=sentinel_manager,
        )
        self.connection_kwargs["connection_pool"] = self.proxy

    def reset(self) -> None:
        """Start afresh: no cached master address or replica rotation, and a new fairpool core
        (no connections, zero counters). Called at construction and in a forked child; like
        fairpool's own ``reset()`` it sets ``pid`` last."""
        proxy = self.__dict__.get("proxy")
        if proxy is not None:
            proxy.reset()
        ConnectionPool.reset(self)

    def _retire_idle_not_at(self, address: tuple[str, int]) -> None:
        """Close the idle connections whose address is not ``address`` (reason ``"error"``)."""
        with self._lock:
            core = self._core
            stale = [slot for slot in core.idle_slots() if _address_of(slot.conn) != address]
            for slot in stale:
                core.retire_idle(slot, "error")
            trash = core.take_trash()
        self._close(trash)


def _address_of(conn: Any) -> tuple[Any, Any]:
    """``(host, port)`` a connection was last told to use (unwrapping client-side caching)."""
    raw = conn._conn if isinstance(conn, CacheProxyConnection) else conn
    return (getattr(raw, "host", None), getattr(raw, "port", None))
