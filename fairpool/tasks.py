"""The asyncio pool's event-loop machinery: waiting tasks and their one deadline timer, the
stream-state look that replaces a socket poll, closes that never suspend, shielded connects and
the maintenance task. Used by :mod:`fairpool.asyncio` only; no decision is made here (the core
makes them)."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from .slot import Waiter

if TYPE_CHECKING:
    from .asyncio import ConnectionPool

__all__ = [
    "DIAL_TIMEOUT",
    "Deadlines",
    "TaskWaiter",
    "abort",
    "disconnect_quietly",
    "maintenance_loop",
    "quiet",
    "shielded",
    "stream_endpoint",
    "stream_of",
]

logger = logging.getLogger("fairpool")

DIAL_TIMEOUT = 10.0
"""Seconds a dial abandoned by its caller may still take when ``socket_connect_timeout`` is not
set (see :func:`shielded`)."""


class TaskWaiter(Waiter):
    """A waiting task: it awaits a future that :meth:`wake` completes."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future[None]) -> None:
        super().__init__()
        self.fut = fut

    def wake(self) -> None:
        # Called by the core when it grants something, and by the timeout timer; either may
        # come second, so completing an already completed future is a no-op.
        fut = self.fut
        if not fut.done():
            fut.set_result(None)


class Deadlines:
    """The waiters' timeouts. Every waiter has the same ``timeout``, so deadlines grow in queue
    order and one timer, set for the oldest pending deadline, serves the whole queue: a timer per
    waiter would keep a thousand entries in the event loop's timer heap when a thousand tasks
    wait."""

    __slots__ = ("_loop", "_queue", "_timer")

    def __init__(self) -> None:
        self._queue: deque[tuple[float, TaskWaiter]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, waiter: TaskWaiter, now: float, timeout: float) -> None:
        """Wake ``waiter`` (without a grant) ``timeout`` seconds from ``now`` unless it is served
        first."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while queue and queue[0][1].fut.done():  # served in order: they gather here
            queue.popleft()
        queue.append((now + timeout, waiter))
        if self._timer is None or self._loop is not loop:
            self._loop = loop
            self._timer = loop.call_later(timeout, self._expire)

    def _expire(self) -> None:
        """The timer: wake every waiter whose deadline has passed."""
        self._timer = None
        queue = self._queue
        now = monotonic()
        while queue:
            deadline, waiter = queue[0]
            if not waiter.fut.done():
                if deadline > now:
                    loop = self._loop
                    assert loop is not None
                    self._timer = loop.call_later(deadline - now, self._expire)
                    return
                waiter.wake()
            queue.popleft()

    def clear(self) -> None:
        """Forget every deadline (the pool was shut down: its waiters were failed)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._queue.clear()


class _NoStream:
    """Stands in for connection classes without a ``_writer``: always take the slow path."""

    _writer = None
    _reader = None


NO_STREAM = _NoStream()


def stream_of(conn: Any) -> Any:
    """The object whose ``_writer`` tells whether ``conn`` is connected."""
    return conn if hasattr(conn, "_writer") else NO_STREAM


def quiet(raw: Any) -> bool:
    """Whether nothing arrived on an idle connection: no EOF, no error, no unread bytes in its
    ``StreamReader``. The event loop has already read whatever the socket had, so this costs no
    system call (redis.asyncio's ``can_read()`` looks at the same reader state on every borrow).
    """
    reader = raw._reader
    return not (reader._buffer or reader._eof or reader._exception is not None)


def stream_endpoint(conn: Any) -> str | None:
    """``host:port`` (or socket path) the connection's transport is connected to, if known."""
    writer = getattr(conn, "_writer", None)
    if writer is None:
        return None
    try:
        peer = writer.get_extra_info("peername")
    except Exception:
        return None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else None


def abort(conn: Any) -> None:
    """Close a connection's transport without awaiting anything (used after a cancellation)."""
    try:
        close = getattr(conn, "_close", None)
        if callable(close):
            close()
    except Exception as exc:
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


async def disconnect_quietly(conn: Any, wait: bool = False) -> None:
    """Disconnect ``conn``, logging and swallowing its error."""
    try:
        # called as redis.asyncio's pool calls it when waiting (connection classes written for
        # redis.asyncio need not take ``nowait``)
        await (conn.disconnect() if wait else conn.disconnect(nowait=True))
    except Exception as exc:  # closing a dead socket may fail; nothing to do about it
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


async def shielded(
    task: asyncio.Task[Any],
    settle: Callable[[asyncio.Task[Any]], None],
    orphans: set[asyncio.Task[Any]],
    bound: float | None,
) -> Any:
    """Await a connect ``task`` on behalf of the caller. If the caller is cancelled first, the
    task goes on in the background (kept in ``orphans``), at most ``bound`` seconds from now
    (``socket_connect_timeout``, else :data:`DIAL_TIMEOUT`), and ``settle(task)`` hands its outcome
    to the pool when it ends (at once if it already has)."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done():
            settle(task)
            raise
        orphans.add(task)
        timer = asyncio.get_running_loop().call_later(bound or DIAL_TIMEOUT, task.cancel)

        def done(task: asyncio.Task[Any]) -> None:
            timer.cancel()
            orphans.discard(task)
            settle(task)

        task.add_done_callback(done)
        raise


async def maintenance_loop(pool_ref: weakref.ref[ConnectionPool], interval: float) -> None:
    """The optional maintenance task: one per pool, holding only a weak reference to it; it ends
    when the pool is shut down or collected (and ``aclose()`` / ``ashutdown()`` cancel it)."""
    while True:
        await asyncio.sleep(interval)
        pool = pool_ref()
        if pool is None or pool.closed:
            return
        try:
            await pool._maintain(background=False)
        except Exception as exc:
            logger.warning("fairpool: maintenance failed: %r", exc)
        del pool
