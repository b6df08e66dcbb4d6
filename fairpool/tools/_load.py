"""Driving load through a pool, shared by ``fairpool demo`` and ``fairpool bench``: worker threads
watched from an interruptible main thread, and closing whichever pool was built."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from redis.connection import ConnectionPool as RedisConnectionPool

from ..pool import ConnectionPool as FairConnectionPool

__all__ = ["LoadProgress", "close_pool", "run_workers"]


@dataclass(frozen=True)
class LoadProgress:
    """What a progress event of a timed load says (each command adds what it runs)."""

    phase: str
    """Which step of the run this is (each command names its own)."""
    elapsed: float = 0.0
    """Seconds of the load so far."""
    duration: float = 0.0
    """Seconds the load is to last."""
    ops: int = 0
    """Commands completed so far."""


def run_workers(
    work: Callable[[int], None],
    n: int,
    name: str,
    stop: threading.Event,
    tick: Callable[[], None] | None = None,
) -> None:
    """Run ``work(i)`` in ``n`` daemon threads named ``{name}-{i}`` until they all return or
    ``stop`` is set, calling ``tick`` about ten times a second meanwhile.

    The calling thread waits in short joins, so that it stays interruptible (SIGINT, SIGTERM).
    """
    threads = [
        threading.Thread(target=work, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(n)
    ]
    for t in threads:
        t.start()
    while not stop.is_set():
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            return
        alive[0].join(0.1)
        if tick is not None:
            tick()


def close_pool(pool: RedisConnectionPool) -> None:
    """Close every connection of ``pool``: ``shutdown()`` for fairpool's, ``disconnect()`` for
    redis-py's."""
    if isinstance(pool, FairConnectionPool):
        pool.shutdown()
    else:
        pool.disconnect()
