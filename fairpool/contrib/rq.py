"""RQ on a fairpool pool.

In code, give RQ a client on a fairpool pool::

    queue = rq.Queue(connection=redis.Redis(connection_pool=fairpool.ConnectionPool.from_url(url)))

For the CLI, :class:`Redis` is a ``redis.Redis`` whose ``from_url`` (``rq worker --url``) and
constructor (``REDIS_URL`` / ``REDIS_HOST``... settings) build a fairpool pool::

    rq worker --connection-class fairpool.contrib.rq.Redis --url 'redis://host:6379/0?policy=fifo'

fairpool settings come from the URL's query, or from :attr:`Redis.pool_settings` in a subclass.
RQ's scheduler and ``WorkerPool`` rebuild plain ``redis.ConnectionPool`` objects from the
connection's kwargs (docs/integrations.md says what that means).
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import redis

from ..pool import ConnectionPool

__all__ = ["Redis"]

_R = TypeVar("_R", bound="Redis")


class Redis(redis.Redis):
    """``redis.Redis`` that builds a fairpool pool whenever it builds a pool itself (``from_url``,
    or no ``connection_pool`` given); a ``connection_pool`` passed in is used as it is."""

    pool_settings: ClassVar[dict[str, Any]] = {}
    """fairpool settings for the pools this class builds (URL query parameters win)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = self.connection_pool
        given = kwargs.get("connection_pool") is plain or any(a is plain for a in args)
        if not given and type(plain) is redis.ConnectionPool and self.connection is None:
            # redis.Redis built its own pool from the arguments (no connection opened yet):
            # rebuild it as fairpool's, with the same connection class and kwargs.
            self.connection_pool = ConnectionPool(
                plain.connection_class, **self.pool_settings, **plain.connection_kwargs
            )
            self.auto_close_connection_pool = True

    @classmethod
    def from_url(cls: type[_R], url: str, **kwargs: Any) -> _R:
        """A client owning a fairpool pool built from ``url`` (see
        :meth:`fairpool.ConnectionPool.from_url`)."""
        single_connection_client = kwargs.pop("single_connection_client", False)
        pool = ConnectionPool.from_url(url, **{**cls.pool_settings, **kwargs})
        client = cls(connection_pool=pool, single_connection_client=single_connection_client)
        client.auto_close_connection_pool = True
        return client
