"""Celery and kombu on fairpool pools.

kombu's redis transport builds ``redis.ConnectionPool`` itself (no setting chooses the class), and
Celery's redis result backend takes a pool class only in code. This module provides both, so that
configuration alone switches a Celery app to fairpool::

    app.conf.broker_url = "redis://127.0.0.1:6379/0"
    app.conf.broker_transport = "fairpool.contrib.celery:Transport"
    app.conf.broker_transport_options = {"fairpool": {"policy": "fifo", "max_idle": 4}}
    app.conf.result_backend = (
        "fairpool.contrib.celery:RedisBackend+redis://127.0.0.1:6379/1?policy=fifo&max_idle=4"
    )

The broker's fairpool settings go in the ``"fairpool"`` transport option (kombu rejects unknown
query parameters in a broker URL); kombu's own ``max_connections`` transport option (default 10)
is the pool's cap. The result backend takes fairpool's settings as query parameters of its URL,
or in ``result_backend_transport_options = {"fairpool": {...}}``. See docs/integrations.md.
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend as _CeleryRedisBackend
from kombu.transport import redis as _kombu_redis

from ..pool import ConnectionPool
from ._settings import settings_option, split_settings

__all__ = ["Channel", "RedisBackend", "Transport"]


class Channel(_kombu_redis.Channel):
    """kombu's redis channel, whose connection pools are fairpool pools."""

    def _get_pool(self, asynchronous: bool = False) -> ConnectionPool:
        params = self._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        self.keyprefix_fanout = self.keyprefix_fanout.format(db=params["db"])
        options = self.connection.client.transport_options
        settings = settings_option(options, "broker_transport_options")
        return ConnectionPool(**{**params, **settings})


class Transport(_kombu_redis.Transport):
    """kombu's redis transport on fairpool pools: ``broker_transport =
    "fairpool.contrib.celery:Transport"`` (or ``kombu.Connection(url, transport=...)``)."""

    Channel = Channel


def _pool_factory(settings: dict[str, Any]) -> Any:
    def make_pool(**params: Any) -> ConnectionPool:
        from_url, rest = split_settings(params)
        return ConnectionPool(**{**rest, **settings, **from_url})

    return make_pool


class RedisBackend(_CeleryRedisBackend):  # type: ignore[misc]
    """Celery's redis result backend on a fairpool pool: ``result_backend =
    "fairpool.contrib.celery:RedisBackend+redis://host:port/db?policy=fifo"``.

    fairpool settings come from the URL's query, then from
    ``result_backend_transport_options["fairpool"]`` (the URL wins)."""

    def __init__(self, *args: Any, connection_pool: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, connection_pool=connection_pool, **kwargs)
        if connection_pool is None:
            options = self.app.conf.get("result_backend_transport_options") or {}
            settings = settings_option(options, "result_backend_transport_options")
            self._ConnectionPool = _pool_factory(settings)
