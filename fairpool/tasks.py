"""The asyncio pool's event-loop machinery: waiting tasks and their one deadline timer, the
stream-state look that replaces a socket poll, closes that never suspend, shielded connects and
the maintenance task. Used by :mod:`fairpool.asyncio` only; no decision is made here (the core
makes them)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any

from ._compat import arecorder as _arecorder
from ._compat import run_close_hooks
from .endpoints import Endpoint
from .errors import PoolExhaustedError
from .lifecycle import DONE, JOIN, REBALANCE_BUDGET, THROWAWAY, WAIT_RETIRE, Planner
from .shell import PoolShell, Trash
from .slot import DIAL, WAIT, Slot, Waiter

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


def stirred(slots: list[Slot[Any]]) -> list[Slot[Any]]:
    """The idle connections among ``slots`` that show an event (EOF, an error, unread bytes;
    see :func:`quiet`): the poll of :meth:`~fairpool.shell.PoolShell._sweep`. Those without a
    stream (not connected, or a class without a ``_writer``) are left out."""
    return [
        slot
        for slot in slots
        if slot.aux._writer is not None and slot.aux._reader is not None and not quiet(slot.aux)
    ]


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


async def maintenance_loop(pool_ref: weakref.ref[TaskLifecycle], interval: float) -> None:
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


class TaskLifecycle(PoolShell):
    """The asyncio pool's maintenance, whole-pool actions and background callbacks (a base of
    :class:`fairpool.asyncio.ConnectionPool`): the refill, endpoint probes and rebalancing as
    the planner says; ``disconnect`` / ``aclose`` / ``ashutdown`` / re-authentication; dials and
    reconnects finished after their caller gave up; redis.asyncio's non-waiting borrow API."""

    _maint_task: asyncio.Task[None] | None
    _tending: asyncio.Task[None] | None
    _orphans: set[asyncio.Task[Any]]
    _deadlines: Deadlines
    _dial: Callable[..., Awaitable[Any]]
    _connect: Callable[[Any], Awaitable[None]]
    _mock: Callable[[Any], Any]

    def _adopt(self, task: asyncio.Task[Any], planner: Planner[Any]) -> None:
        """A connection dialled for a caller that gave up joins the pool: the oldest waiter
        gets it, or it becomes idle (closed at once if the pool was closed or reset meanwhile).
        A failed dial has already freed its reservation. Synchronous (a done callback)."""
        if task.cancelled() or task.exception() is not None:
            return
        conn, target = task.result()
        if planner is not self._planner:  # reset() forgot the pool this dial was reserved in
            abort(conn)
            return
        slot = planner.connected(conn, target, monotonic(), for_caller=False)
        slot.aux = stream_of(conn)
        slot.endpoint = stream_endpoint(conn)
        if _arecorder._async_metrics_collector is not None:
            self._record(1, 0)  # a new idle connection (a waiter it went to records its use)
        self._abort_trash(planner)

    def _reconnected(self, task: asyncio.Task[Any], conn: Any, planner: Planner[Any]) -> None:
        """A reconnect in place finished after its caller gave up: the connection goes back to
        the pool (oldest waiter or idle), or is closed if the reconnect failed."""
        core = planner.core
        if task.cancelled() or task.exception() is not None:
            abort(conn)
            core.discard(conn, "error")
        else:
            slot = core.slot_of(conn)
            if slot is not None:
                slot.endpoint = stream_endpoint(conn)
                slot.suspect = False
            if core.release(conn, monotonic()) and _arecorder._async_metrics_collector is not None:
                self._record(1, -1)
        self._abort_trash(planner)

    def _abort_trash(self, planner: Planner[Any]) -> None:
        """Close what the core retired without awaiting (from a done callback, or where a
        cancellation may be under way)."""
        trash = planner.core.take_trash()
        for conn, _reason in trash:
            abort(conn)
        if trash and _arecorder._async_metrics_collector is not None:
            self._record(-len(trash), 0)

    def can_get_connection(self) -> bool:
        """Whether a borrow now would get a connection without waiting (redis.asyncio's API)."""
        core = self._core
        if core.closed or core.waiting:
            return False
        return core.idle_count > 0 or core.room > 0

    def get_available_connection(self) -> Any:
        """Take a connection without connecting or checking it (redis.asyncio's API; prefer
        :meth:`get_connection`). Raises ``MaxConnectionsError`` when none is available now,
        even when ``block`` is on (this method cannot wait)."""
        core = self._core
        now = monotonic()
        got = core.acquire(now)
        if got is WAIT:
            raise PoolExhaustedError(
                f"Too many connections: fairpool pool exhausted, all {core.config.max_connections}"
                " connections in use (max_connections)"
            )
        if got is DIAL:
            planner = self._planner
            target = planner.dial_order(now)[0]
            try:
                conn = self._new_connection(target)
            except BaseException:
                core.dial_failed()
                raise
            planner.dialling(target)
            slot = planner.connected(conn, target, now)
            slot.aux = stream_of(conn)
            return conn
        return got.conn  # type: ignore[union-attr]

    # ---------------------------------------------------------- maintenance
    async def maintain(self) -> None:
        """Run pruning and the ``min_idle`` refill now (normally done lazily on release, or by
        the maintenance task): close what the core retires, dial what ``min_idle`` needs; with
        ``endpoints``, probe every endpoint that is down (one dial each) and rebalance."""
        await self._maintain(background=False, force=True)

    async def _maintain(self, background: bool, force: bool = False) -> None:
        """:meth:`maintain`; with ``background`` (a release found it due) the endpoint probes and
        rebalancing run in a task of their own, so that no caller waits for them; ``force``
        probes endpoints still in back-off too (an explicit ``maintain()``)."""
        remaining, trash = self._run_upkeep()
        try:
            if trash:
                await self._close(trash)
            while remaining:
                remaining -= 1
                await self._dial(for_caller=False)
        except Exception as exc:  # the failed dial gave back its own reservation
            logger.warning("fairpool: min_idle refill failed: %r", exc)
        finally:
            if remaining:
                self._planner.refill_failed(remaining)
                self._abort_trash(self._planner)
        if self._endpoints is None:
            return
        if not background:
            await self._tend_endpoints(force)
        elif self._tending is None or self._tending.done():
            self._tending = asyncio.get_running_loop().create_task(
                self._tend_endpoints(False), name=f"fairpool-endpoints-{id(self):x}"
            )

    async def _tend_endpoints(self, force: bool) -> None:
        """Probe the endpoints that are down and due (every one that is down when ``force``),
        then rebalance (see :meth:`~fairpool.lifecycle.Planner.rebalance_step`; gives up after
        :data:`~fairpool.lifecycle.REBALANCE_BUDGET` seconds, the next maintenance goes on)."""
        planner = self._planner
        for endpoint in planner.probes_due(monotonic(), force):
            await self._probe_endpoint(planner, endpoint)
        deadline = monotonic() + REBALANCE_BUDGET
        retiring: list[Slot[Any]] = []  # borrowed connections retired, not yet released
        while monotonic() < deadline:
            step, trash = self._locked(planner.rebalance_step, retiring, monotonic())
            if trash:
                await self._close(trash)
            if step is DONE:
                return
            if step is WAIT_RETIRE:
                await asyncio.sleep(0.005)  # a retired borrowed connection frees capacity
                continue
            try:
                await self._dial(for_caller=False)
            except Exception as exc:
                logger.info("fairpool: rebalancing dial failed: %r", exc)
                return

    async def _probe_endpoint(self, planner: Planner[Any], endpoint: Endpoint) -> None:
        """The half-open probe (see the sync pool's): the connection joins the pool, or at the
        cap is thrown away; a failure is reported and logged."""
        plan = planner.probe_plan(endpoint)
        try:
            if plan is JOIN:
                await self._dial(for_caller=False, only=endpoint)
            elif plan is THROWAWAY:
                await self._throwaway_probe(planner, endpoint)
        except Exception as exc:
            logger.info("fairpool: probe of %s failed: %r", endpoint, exc)

    async def _throwaway_probe(self, planner: Planner[Any], endpoint: Endpoint) -> None:
        conn = self._new_connection(endpoint)
        ok = False
        try:
            await self._connect(conn)
            ok = True
        finally:
            planner.probe_done(endpoint, ok, monotonic())
            await disconnect_quietly(conn)

    def _ensure_maintainer(self) -> None:
        """Start the maintenance task (``maintenance_interval``, ``leak_timeout``) in the running
        loop, once."""
        interval = self._maintenance_interval  # leak checks (leak_timeout) run in it too
        if interval is None or self._core.closed:
            return
        loop = asyncio.get_running_loop()
        task = self._maint_task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._maint_task = loop.create_task(
            maintenance_loop(weakref.ref(self), interval),
            name=f"fairpool-maintenance-{id(self):x}",
        )

    async def _close(self, trash: Trash, wait: bool = False) -> None:
        """Close connections the core retired. Each close normally completes without suspending
        (``disconnect(nowait=True)``); if one is cancelled, the rest are closed without waiting
        before the cancellation propagates, so none is left open."""
        for i, (conn, _reason) in enumerate(trash):
            try:
                await (conn.disconnect() if wait else conn.disconnect(nowait=True))
            except Exception as exc:
                logger.debug("fairpool: ignoring error while closing a connection: %r", exc)
            except BaseException:
                for other, _ in trash[i + 1 :]:
                    abort(other)
                raise
        if trash and _arecorder._async_metrics_collector is not None:
            self._record(-len(trash), 0)

    # --------------------------------------------------------- whole pool
    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the sockets of idle connections (and, by default, of borrowed ones), as
        redis.asyncio does: the connections stay in the pool and reconnect when next used. For
        shutting the pool down for good use :meth:`ashutdown`."""
        in_use, idle = self._in_use_and_idle(inuse_connections)
        try:  # idle ones are out of the pool while their sockets are closed
            await asyncio.gather(
                *(disconnect_quietly(c, wait=True) for c in [s.conn for s in idle] + in_use)
            )
        finally:
            trash = self._locked(self._core.put_back, idle, monotonic())[1]
            if trash:
                await self._close(trash)

    async def aclose(self) -> None:
        """Run redis.asyncio's close hooks and disconnect every connection, idle and borrowed,
        as redis.asyncio's ``aclose()`` does: the pool stays usable and connections reconnect
        when next used; waiting tasks keep waiting. The maintenance task stops and starts again
        on next use. ``await redis.asyncio.Redis.aclose()`` calls this when the client owns its
        pool, and so does leaving ``async with pool:``. To close the pool for good use
        :meth:`ashutdown`."""
        await run_close_hooks(self)
        self._stop_maintainer()
        await self.disconnect()

    async def ashutdown(self) -> None:
        """Close the pool for good: idle connections now, borrowed ones when they come back;
        waiting tasks and later borrows get :class:`~fairpool.errors.PoolClosedError`; the
        maintenance task stops. Shutting down twice is harmless. (fairpool's ``aclose()`` did
        this in earlier versions; redis.asyncio's pools have no equivalent.)"""
        await run_close_hooks(self)
        trash = self._locked(self._core.close)[1]
        self._stop_maintainer()
        self._deadlines.clear()
        await self._close(trash, wait=True)
        # Dials still running for callers that gave up, and endpoint maintenance: stop them
        # (each frees its reservation and closes its socket), so that no connection outlives
        # the pool.
        background = list(self._orphans)
        if self._tending is not None:
            background.append(self._tending)
        for task in background:
            task.cancel()
        if background:
            await asyncio.gather(*background, return_exceptions=True)

    def _stop_maintainer(self) -> None:
        task, self._maint_task = self.__dict__.get("_maint_task"), None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed
                task.cancel()

    @property
    def maintenance_task(self) -> asyncio.Task[None] | None:
        """The background maintenance task, if ``maintenance_interval`` is set and it started."""
        return self._maint_task

    async def re_auth_callback(self, token: Any) -> None:
        """Re-authenticate idle connections now (each taken out of the pool while it is done)
        and borrowed ones when they are released."""
        in_use, idle = self._in_use_and_idle(True)
        try:
            for slot in idle:
                auth = slot.conn
                await auth.retry.call_with_retry(
                    lambda c=auth: c.send_command("AUTH", token.try_get("oid"), token.get_value()),
                    lambda error: self._mock(error),
                )
                await auth.retry.call_with_retry(
                    lambda c=auth: c.read_response(), lambda error: self._mock(error)
                )
        finally:
            trash = self._locked(self._core.put_back, idle, monotonic())[1]
            if trash:
                await self._close(trash)
        for conn in in_use:
            conn.set_re_auth_token(token)


def chain_connect(
    previous: Callable[[Any], object] | None, on_connect: Callable[[Any], object]
) -> Callable[[Any], Awaitable[None]]:
    """An async ``redis_connect_func`` (redis.asyncio calls it after every connect, instead of
    the connection's own handshake) that runs the handshake — or the user's own
    ``redis_connect_func`` — and then ``on_connect`` (awaited if it returns an awaitable)."""

    async def connect_func(connection: Any) -> None:
        if previous is None:
            await connection.on_connect()
        else:
            result = previous(connection)
            if inspect.isawaitable(result):
                await result
        result = on_connect(connection)
        if inspect.isawaitable(result):
            await result

    return connect_func
