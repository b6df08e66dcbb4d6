"""The sync pool's thread machinery: waiting threads, the readiness poll of a socket, the turn
keeper and the maintenance thread, and fork detection. Used by :mod:`fairpool.pool` only; no
decision is made here (the core makes them)."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any

from ._compat import CacheProxyConnection
from .slot import Waiter

if TYPE_CHECKING:
    from .pool import ConnectionPool

__all__ = [
    "HOLD_GRACE",
    "Maintainer",
    "Probe",
    "ThreadWaiter",
    "TurnKeeper",
    "peer_endpoint",
    "raw_connection",
]

logger = logging.getLogger("fairpool")

# Fork detection without a getpid() system call per borrow: the child bumps a generation number.
fork_generation = 0


def _after_fork_in_child() -> None:
    global fork_generation
    fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class ThreadWaiter(Waiter):
    """A waiting thread: it blocks on a lock that :meth:`wake` releases."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._lock.acquire()

    def wake(self) -> None:
        self._lock.release()

    def sleep(self, timeout: float | None) -> None:
        self._lock.acquire(True, -1 if timeout is None else timeout)


class _NoSocket:
    """Stands in for connection classes without a ``_sock``: always take the slow path."""

    _sock = None


_NO_SOCKET = _NoSocket()

UNARMED = object()
"""Stands in for a socket :class:`Probe` has not registered: never ``is`` a real one."""


def _no_events(timeout: float) -> list[tuple[int, int]]:
    return []


class Probe:
    """The sync shell's per-connection data (``Slot.aux``): the object that owns the socket, and
    a ``select.poll`` registered on that socket for the readiness poll made on every borrow.

    One ``poll(0)`` system call (~0.6 µs) answers "did anything arrive while it was idle?": EOF
    (the server closed it), a reset, or bytes nobody asked for all show as an event, and only then
    does the borrow take the slow path and run the full check. redis-py pays a similar poll
    (``can_read()``) on every borrow. ``health_check="none"`` polls nothing."""

    __slots__ = ("poll", "raw", "sock", "watch")

    def __init__(self, raw: Any, watch: bool) -> None:
        self.raw = raw
        self.watch = watch
        self.sock: Any = UNARMED
        self.poll: Callable[[float], list[tuple[int, int]]] = _no_events
        self.arm()

    def arm(self) -> None:
        """Register the connection's current socket (after a dial or a reconnect)."""
        sock = self.raw._sock
        self.sock = UNARMED
        self.poll = _no_events
        if sock is None:
            return
        if self.watch:
            try:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN)
            except (OSError, ValueError, TypeError):
                # A closed socket, or a stand-in without a real descriptor (a test double's
                # mock socket): stays unarmed, so every borrow takes the slow path.
                return
            self.poll = poller.poll
        self.sock = sock


def raw_connection(conn: Any) -> Any:
    """The object that owns the socket (unwraps client-side caching's proxy)."""
    raw = conn._conn if isinstance(conn, CacheProxyConnection) else conn
    return raw if hasattr(raw, "_sock") else _NO_SOCKET


def peer_endpoint(raw: Any) -> str | None:
    """``host:port`` (or socket path) the connection's socket is connected to, if known."""
    sock = getattr(raw, "_sock", None)
    if sock is None:
        return None
    try:
        peer = sock.getpeername()
    except OSError:
        return None
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    return str(peer) or None


HOLD_GRACE = 0.005
"""Seconds a connection stays held for a thread's turn when nothing else happens in the pool."""


class TurnKeeper:
    """Ends a turn whose thread does not come back (``turn_borrows``).

    A held connection normally goes on at the next borrow or release by any other thread; this
    daemon thread covers the case where no other thread touches the pool, handing it to the oldest
    waiter after :data:`HOLD_GRACE`. It runs only while the pool is saturated: it starts with the
    first hold and exits after a second without one (or when the pool is closed or collected).
    Whatever ends it, it hands on the held connection as it goes.
    """

    QUIET_TICKS = 200  # HOLD_GRACE ticks without a hold before the thread exits

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = weakref.ref(pool)
        self._thread = threading.Thread(
            target=self._run, name=f"fairpool-turns-{id(pool):x}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            pool = self._pool()
            if pool is not None:
                with pool._lock:
                    if pool._keeper is self:
                        pool._keeper = None
                        pool._core.expire_hold(monotonic(), 0.0)
                    trash = pool._core.take_trash()
                _close_quietly(pool, trash)

    def _loop(self) -> None:
        quiet = 0
        holds = -1
        while True:
            time.sleep(HOLD_GRACE)
            pool = self._pool()
            if pool is None:
                return
            core = pool._core
            with pool._lock:
                if pool._keeper is not self or core.closed:
                    return
                core.expire_hold(monotonic(), HOLD_GRACE)
                quiet = quiet + 1 if core.holds == holds else 0
                holds = core.holds
                if quiet >= self.QUIET_TICKS:
                    return  # (the hold seen last was settled: it is older than the grace)
                trash = core.take_trash()
            _close_quietly(pool, trash)
            del pool, core  # hold no reference while sleeping: the pool may be collected

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()


def _close_quietly(pool: ConnectionPool, trash: list[tuple[Any, str]]) -> None:
    try:
        pool._close(trash)
    except Exception as exc:  # e.g. an observability backend failing: never kill the caller
        logger.warning("fairpool: closing connections failed: %r", exc)


class Maintainer:
    """The optional maintenance thread (``maintenance_interval``): one daemon thread per pool,
    holding only a weak reference to it, stopped by ``close()`` or when the pool is collected."""

    def __init__(self, pool: ConnectionPool, interval: float) -> None:
        self._pool = weakref.ref(pool)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"fairpool-maintenance-{id(pool):x}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            pool = self._pool()
            if pool is None or pool.closed:
                return
            try:
                pool._maintain(background=False)  # in this thread; back-offs respected
            except Exception as exc:
                logger.warning("fairpool: maintenance failed: %r", exc)
            del pool

    def stop(self) -> None:
        """Stop the thread (returns at once; the thread exits within one interval at most)."""
        self._stop.set()

    @property
    def alive(self) -> bool:
        """Whether the thread is running."""
        return self._thread.is_alive()
