"""Exceptions raised by fairpool's pools.

They subclass redis-py's exceptions, so code written for redis-py's pools keeps catching them:
``PoolExhaustedError`` is a ``redis.exceptions.MaxConnectionsError`` (what redis-py's
``ConnectionPool`` raises at its cap), and so is ``PoolOverloadedError`` (``max_waiting``
callers already wait); ``PoolTimeoutError`` and ``PoolClosedError`` are
``redis.exceptions.ConnectionError``.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

__all__ = ["PoolClosedError", "PoolExhaustedError", "PoolOverloadedError", "PoolTimeoutError"]


class PoolExhaustedError(MaxConnectionsError):
    """The pool is at ``max_connections`` and ``block`` is off (or waiters are queued)."""


class PoolOverloadedError(PoolExhaustedError):
    """``max_waiting`` callers already wait for a connection: the borrow is refused at once (load
    shedding) instead of queueing behind them."""


class PoolTimeoutError(RedisConnectionError):
    """A blocked borrow waited ``timeout`` seconds without getting a connection."""


class PoolClosedError(RedisConnectionError):
    """The pool was closed with ``close()``; it hands out no more connections."""
