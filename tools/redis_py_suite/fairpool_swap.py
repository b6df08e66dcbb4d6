"""A pytest plugin that runs redis-py's own tests with fairpool's pools in place of redis-py's.

Loaded by ``tools/redis_py_suite/run.py`` (``-p fairpool_swap``). When pytest starts, before
redis-py's test modules are imported, every module of the ``redis`` package that binds
``ConnectionPool`` / ``BlockingConnectionPool`` (sync or asyncio) gets fairpool's class under that
name instead: the tests' ``redis.ConnectionPool(...)``,
``redis.asyncio.BlockingConnectionPool(...)`` and the clients' own default pools
(``redis.Redis(host=...)``) are then fairpool pools.

fairpool's pools are used with their defaults, except ``FAIRPOOL_SWAP_SETTINGS`` (a query string,
e.g. ``policy=lifo&health_check_after=0``) when set.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import parse_qsl

import pytest

SWAPPED: dict[str, int] = {}
"""How many module attributes were replaced, by class name (reported in the header)."""


def _with_settings(cls: type, settings: dict[str, Any]) -> type:
    if not settings:
        return cls
    return type(cls.__name__, (cls,), {"_swap_settings": settings, "__init__": _init_with(cls)})


def _init_with(cls: type) -> Any:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        for name, value in self._swap_settings.items():
            kwargs.setdefault(name, value)
        cls.__init__(self, *args, **kwargs)  # type: ignore[misc]

    return __init__


def swap() -> None:
    """Replace redis-py's pool classes by fairpool's in every loaded ``redis`` module."""
    import redis
    import redis.asyncio
    import redis.asyncio.client
    import redis.asyncio.connection
    import redis.client
    import redis.cluster
    import redis.connection
    import redis.sentinel

    import fairpool
    import fairpool.asyncio
    from fairpool.config import convert_query_value

    raw = os.environ.get("FAIRPOOL_SWAP_SETTINGS", "")
    settings = {k: convert_query_value(k, v) for k, v in parse_qsl(raw)}
    pairs = {
        redis.connection.ConnectionPool: _with_settings(fairpool.ConnectionPool, settings),
        redis.connection.BlockingConnectionPool: _with_settings(
            fairpool.BlockingConnectionPool, settings
        ),
        redis.asyncio.connection.ConnectionPool: _with_settings(
            fairpool.asyncio.ConnectionPool, settings
        ),
        redis.asyncio.connection.BlockingConnectionPool: _with_settings(
            fairpool.asyncio.BlockingConnectionPool, settings
        ),
    }
    for name, module in list(sys.modules.items()):
        if not (name == "redis" or name.startswith("redis.")) or module is None:
            continue
        for attr, value in list(vars(module).items()):
            replacement = pairs.get(value) if isinstance(value, type) else None
            if replacement is not None:
                setattr(module, attr, replacement)
                SWAPPED[attr] = SWAPPED.get(attr, 0) + 1


def pytest_configure(config: pytest.Config) -> None:
    swap()


def pytest_report_header(config: pytest.Config) -> list[str]:
    swapped = ", ".join(f"{k}: {v}" for k, v in sorted(SWAPPED.items()))
    return [f"fairpool_swap: redis-py's pools replaced by fairpool's ({swapped})"]
