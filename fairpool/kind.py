"""What tells the two pools apart beyond their I/O, and the sync/asyncio mix-up check.

:class:`Kind` holds redis-py's module of a pool's kind, its after-release event and default
re-auth listener and the metrics collector, and recognises a client of the other kind; the
pools' ``connection_kwargs`` property and the asyncio pool's first-borrow check use it to refuse
such a client (``TypeError`` naming the pool to use instead) before it can borrow anything.
"""

from __future__ import annotations

import sys
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from ._compat import (
    AfterConnectionReleasedEvent,
    AsyncAfterConnectionReleasedEvent,
    AsyncReAuthConnectionListener,
    ReAuthConnectionListener,
)
from .metrics.redispy import async_collector, collector

__all__ = ["Kind", "first_borrow_check", "guarded_connection_kwargs", "warn_on_arguments"]

_SYNC_CLIENT_MODULES = frozenset({"redis.client", "redis.cluster", "redis.sentinel"})
"""redis-py's sync client modules: they never read an asyncio pool's ``connection_kwargs``."""


def _asyncio_client(caller: str) -> bool:
    return caller.startswith("redis.asyncio")


class Kind:
    """What tells the two pools apart, beyond their I/O: redis-py's module of their kind, its
    after-release event and default listener, the metrics collector, and how to recognise a
    client of the other kind (``wrong_client(module name)``) with the advice to give it."""

    __slots__ = (
        "asynchronous",
        "collector",
        "instead",
        "listener",
        "module",
        "released",
        "what",
        "wrong_client",
    )

    def __init__(self, asynchronous: bool, module: Any) -> None:
        self.asynchronous = asynchronous
        self.module = module
        self.released: type
        self.listener: type
        self.collector: Callable[[], Any]
        self.wrong_client: Callable[[str], bool]
        if asynchronous:
            self.released = AsyncAfterConnectionReleasedEvent
            self.listener = AsyncReAuthConnectionListener
            self.collector = async_collector
            self.wrong_client = _SYNC_CLIENT_MODULES.__contains__
            self.what = "an asyncio pool and cannot serve redis-py's sync clients"
            self.instead = "fairpool.ConnectionPool (or fairpool.BlockingConnectionPool)"
        else:
            self.released, self.listener = AfterConnectionReleasedEvent, ReAuthConnectionListener
            self.collector, self.wrong_client = collector, _asyncio_client
            self.what = "a sync pool and cannot serve redis.asyncio clients"
            self.instead = (
                "fairpool.asyncio.ConnectionPool (or fairpool.asyncio.BlockingConnectionPool)"
            )

    def mixup(self, pool: Any, caller: str) -> TypeError:
        """The error for a client of the other kind (``caller``, its module) using ``pool``."""
        return TypeError(
            f"{type(pool).__module__}.{type(pool).__name__} is {self.what} ({caller}): "
            f"use {self.instead}"
        )


def guarded_connection_kwargs() -> Any:
    """The pools' ``connection_kwargs`` property: redis-py's (a live dict, see
    ``docs/migrating.md``), except that a client of the other kind (sync or asyncio) reading it
    — every client does in its constructor — gets ``TypeError`` naming the pool to use instead,
    before it can borrow anything."""

    def get(pool: Any) -> dict[str, Any]:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        kind: Kind = pool._KIND
        if kind.wrong_client(caller):
            raise kind.mixup(pool, caller)
        kwargs: dict[str, Any] = pool._connection_kwargs
        return kwargs

    def set(pool: Any, value: dict[str, Any]) -> None:
        pool._connection_kwargs = value

    return property(get, set, doc="The keyword arguments new connections are built with (live).")


def warn_on_arguments() -> None:
    """redis-py 5.1+ deprecates ``get_connection()``'s arguments (its clients pass none; 5.0's
    pass the command name): the pools call this, as redis-py warns, when they get some."""
    warnings.warn(
        "get_connection() arguments are deprecated and ignored", DeprecationWarning, stacklevel=3
    )


def first_borrow_check(ref: weakref.ref[Any]) -> Callable[..., Any]:
    """The asyncio pool's ``get_connection`` until its first borrow (an instance attribute
    shadowing the method): a sync client calls it without awaiting, so the coroutine never runs
    and only this plain function can check who calls — it catches a pool assigned to an existing
    sync client's ``connection_pool`` before anything is taken. Once a caller of the right kind
    has borrowed, it removes itself (callers that kept it go straight to the method)."""
    checked = False

    def first_borrow(*args: Any, **kwargs: Any) -> Any:
        nonlocal checked
        pool = ref()
        assert pool is not None
        if not checked:
            pool._check_caller(1)
            checked = True
            pool._arm_leak_watch()
        return pool.get_connection(*args, **kwargs)

    return first_borrow
