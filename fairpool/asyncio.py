"""The asyncio pools: drop-ins for ``redis.asyncio``'s pools, the event-loop I/O layer over
:class:`~fairpool.shell.PoolShell` and the same :class:`~fairpool.core.PoolCore` as the sync pool.

:class:`ConnectionPool` subclasses ``redis.asyncio.ConnectionPool`` (inheriting the
maintenance-notification wiring, ``get_encoder``, ``get_protocol`` and the rest of what
``redis.asyncio`` expects of a pool) and replaces its idle list and in-use set with the core.
The rules — policies, caps, the waiter queue, lifecycle decisions, endpoints, stats — live in the
core and the planner; the shared behaviour in :class:`~fairpool.shell.PoolShell`; the event-loop
helpers in :mod:`fairpool.tasks`. This module only does the I/O.

Locking: asyncio runs one task at a time and the core's methods are synchronous, so a critical
section is simply a run of core calls with no ``await`` in between — no lock is taken on the hot
path. ``self._lock`` (the ``asyncio.Lock`` redis.asyncio creates) is kept because redis.asyncio's
maintenance-notification handlers hold it while they rewrite pool-wide state and disconnect idle
connections; a borrow that finds it held waits for it, as redis.asyncio's own pool does.

Cancellation: every step that may suspend (waiting, dialling, reconnecting, the borrow check,
closing connections) is written so that a task cancelled there gives back what it holds — its
place in the queue, a connection handed to it, a reserved dial — before the ``CancelledError``
propagates. ``release`` does its bookkeeping before it awaits anything (the redis.asyncio client
releases without ``asyncio.shield``); when the connection needs I/O first (a pending re-auth, a
reconnect request) the bookkeeping runs in a ``finally`` so a cancellation cannot skip it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import sys
from time import monotonic
from typing import Any, TypeVar

from redis.asyncio import connection as _aconnection
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.connection import ConnectionPool as RedisAsyncConnectionPool

from . import leaks
from ._compat import (
    ASYNC_SHOULD_RECONNECT,
    AsyncAfterConnectionReleasedEvent,
    async_can_read,
    get_connection_args_deprecated,
    pool_init_kwargs,
)
from ._compat import arecorder as _arecorder
from .config import Policy
from .endpoints import Endpoint
from .lifecycle import Planner
from .shell import NO_LOCK, BlockingShell, Kind, Trash, warn_on_arguments
from .slot import DIAL, WAIT, Slot
from .tasks import (
    NO_STREAM,
    Deadlines,
    TaskLifecycle,
    TaskWaiter,
    abort,
    chain_connect,
    quiet,
    shielded,
    stirred,
    stream_endpoint,
    stream_of,
)

__all__ = ["BlockingConnectionPool", "ConnectionPool"]

# redis.asyncio 5.0's clients pass the command name to get_connection() (see fairpool.pool)
_GET_CONNECTION_ARGS_DEPRECATED = get_connection_args_deprecated(RedisAsyncConnectionPool)

logger = logging.getLogger("fairpool")

_P = TypeVar("_P", bound="ConnectionPool")

_ENSURE = getattr(RedisAsyncConnectionPool, "ensure_connection", None)
"""redis.asyncio's connect-and-verify hook (redis-py ≥ 7; older versions connect inline)."""


class ConnectionPool(TaskLifecycle, RedisAsyncConnectionPool):
    """A fair, drop-in replacement for ``redis.asyncio.ConnectionPool``.

    Pass it to a client as ``redis.asyncio.Redis(connection_pool=fairpool.asyncio.ConnectionPool(
    ...))``. The positional arguments and ``**connection_kwargs`` are redis.asyncio's; fairpool's
    settings are keyword-only, the same as :class:`fairpool.ConnectionPool`'s (see
    ``docs/settings.md``):

    * ``policy`` — ``"fifo"`` (default), ``"lifo"`` or ``"round_robin"``;
    * ``max_connections`` — cap on open connections (default 100);
    * ``max_idle`` / ``min_idle`` — idle connections kept at most / at least;
    * ``block`` / ``timeout`` — at the cap, wait (in arrival order) up to ``timeout`` seconds
      instead of raising ``MaxConnectionsError``;
    * ``turn_borrows`` — validated like the sync pool's, but tasks hand a connection over on every
      release: a hand-over between tasks costs no thread switch, so turns would only add latency;
    * ``idle_timeout``, ``max_lifetime``, ``lifetime_jitter`` — pruning (fair policies shrink by
      demand);
    * ``health_check`` / ``health_check_after`` — verify connections idle for a while before use
      (a callable check may be a coroutine function);
    * ``maintenance_interval`` — run pruning in one background task instead of lazily;
    * ``on_connect`` — a callback (sync or async) run on every newly (re)connected connection,
      e.g. ``fairpool.ScriptRegistry.async_on_connect`` to preload Lua scripts;
    * ``endpoints`` — several proxies to spread new connections over evenly, backing off from
      failing ones and rebalancing when one recovers (as the sync pool does);
    * ``leak_timeout`` / ``max_waiting`` / ``name`` — leak detection, load shedding and the
      pool's label, as in the sync pool.

    At run time, :meth:`resize` changes the caps and ``await`` :meth:`drain` replaces every
    connection (or one endpoint's).

    :meth:`aclose` (and leaving ``async with pool:``) disconnects every connection and leaves the
    pool usable, as in redis.asyncio; :meth:`ashutdown` closes it for good.
    """

    def __init__(
        self,
        connection_class: type[AbstractConnection] = Connection,
        max_connections: int | None = None,
        maint_notifications_config: Any = None,
        **kwargs: Any,
    ) -> None:
        connection_kwargs = self._configure(max_connections, kwargs, chain_connect)
        self._maint_task: asyncio.Task[None] | None = None
        # redis.asyncio connects through ensure_connection(); a subclass overriding it gets it
        # called on every borrow, as redis.asyncio does (and gives up the quick path for it).
        self._ensure_hook = _ENSURE is not None and type(self).ensure_connection is not _ENSURE
        # redis.asyncio's __init__ does not call reset(); the core must exist before it runs
        # (it assigns _available_connections / _in_use_connections, which read the core).
        self.reset()
        super().__init__(
            connection_class,
            max_connections=self.config.max_connections,
            **pool_init_kwargs(
                RedisAsyncConnectionPool, maint_notifications_config=maint_notifications_config
            ),
            **connection_kwargs,
        )
        if not hasattr(self, "_lock"):  # redis.asyncio 5.0's pool has no lock; later ones do
            self._lock = asyncio.Lock()
        self._reject_unknown_kwargs()
        self._note_owner(ConnectionPool.owns_connection)

    _KIND = Kind(asynchronous=True, module=_aconnection)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Start afresh (at construction): no connections, zero counters.

        Connections the pool held are forgotten, not closed (as in redis.asyncio).
        """
        self._stop_maintainer()
        self._mutex = NO_LOCK
        self._new_core()
        if self._ensure_hook:
            self._core.check_after = -1.0  # no connection is fresh: every borrow connects
        self._deadlines = Deadlines()
        self._releasing: set[Any] = set()  # borrowed connections whose release is doing I/O
        self._orphans: set[asyncio.Task[Any]] = set()  # dials whose caller gave up (see _dial)
        self._tending: asyncio.Task[None] | None = None  # endpoint probes and rebalancing
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the maintenance task starts on first use
        self._ensure_maintainer()

    async def _connect(self, conn: Any) -> None:
        """Connect a new or disconnected connection the way redis.asyncio does: through
        ``ensure_connection`` (so overrides of it are honoured), or ``connect()`` where redis-py
        has no such hook."""
        if _ENSURE is None:
            await conn.connect()
        else:
            await self.ensure_connection(conn)

    # --------------------------------------------------------------- borrow
    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """Borrow a connection, connected and ready to send a command.

        Raises ``MaxConnectionsError`` at the cap when ``block`` is off, ``ConnectionError`` after
        waiting ``timeout`` seconds when it is on, and ``PoolClosedError`` after :meth:`ashutdown`.
        """
        if (command_name is not None or keys or options) and _GET_CONNECTION_ARGS_DEPRECATED:
            warn_on_arguments()
        if self._lock.locked():
            # redis.asyncio's maintenance-notification handlers are rewriting pool state (and
            # may be disconnecting idle connections) under the pool lock: wait for them.
            async with self._lock:
                now = monotonic()
                got, waiter, trash = self._acquire(now)
            return await self._get_slow(got, waiter, trash, now)
        # Critical section: no await until the core has answered and the trash is taken.
        now = monotonic()
        core = self._core
        got = core.acquire(now)
        if got.__class__ is Slot:
            slot: Slot[Any] = got
            raw = slot.aux
            if (
                slot.fresh
                and not core.trash
                and raw._writer is not None
                and not (raw._reader._buffer or raw._reader._eof or raw._reader._exception)
            ):
                if _arecorder._async_metrics_collector is not None:
                    self._record_borrow(now, monotonic())
                return slot.conn
        if got is WAIT and not core.trash:
            # Waiting is the common path under contention: kept inline (no extra coroutine
            # frames to suspend and resume through) for a connection handed over by a release.
            waiter = self._queue(now)
            try:
                await waiter.fut
            except BaseException:
                await self._give_back(None, waiter)
                raise
            slot = waiter.slot  # type: ignore[assignment]
            if slot is None:
                got = core.finish_wait(waiter, monotonic())  # DIAL, or raises
                return await self._get_slow(got, None, None, now)
            raw = slot.aux
            if slot.fresh and raw._writer is not None and quiet(raw):
                if _arecorder._async_metrics_collector is not None:
                    self._record_borrow(now, monotonic())
                return slot.conn
            return await self._get_slow(slot, None, None, now)
        waiter = self._queue(now) if got is WAIT else None
        trash = core.take_trash() if core.trash else None
        return await self._get_slow(got, waiter, trash, now)

    def _acquire(self, now: float) -> tuple[Any, TaskWaiter | None, Trash | None]:
        """One borrow attempt (a critical section: no await): what the core gave, the waiter
        queued if it said :data:`WAIT`, and the connections to close."""
        core = self._core
        got = core.acquire(now)
        waiter = self._queue(now) if got is WAIT else None
        trash = core.take_trash() if core.trash else None
        return got, waiter, trash

    async def _get_slow(
        self, got: Any, waiter: TaskWaiter | None, trash: Trash | None, started: float
    ) -> Any:
        """Everything but a fresh idle connection: close what the core retired, wait, dial,
        reconnect or verify, and try again when a checked connection turns out dead."""
        self._ensure_maintainer()
        now = started
        while True:
            if trash:
                try:
                    await self._close(trash)
                except BaseException:
                    await self._give_back(got, waiter)
                    raise
            if waiter is not None:
                got = await self._wait(waiter)
                waiter = None
                now = monotonic()
            if got is DIAL:
                dial_started = monotonic()
                conn = await self._dial()
                await self._borrowed(started, dial_started)
                return conn
            conn = await self._prepare(got, now)
            if conn is not None:
                await self._borrowed(started, None)
                return conn
            now = monotonic()
            got, waiter, trash = self._acquire(now)

    async def _borrowed(self, started: float, dial_started: float | None) -> None:
        """Report a borrow made on the slow path to redis-py's observability (see the sync
        pool's ``_borrowed``); the recorders are coroutine functions here."""
        if dial_started is None:
            self._record(-1, 1)
        else:
            self._record(0, 1)
            record = getattr(_aconnection, "record_connection_create_time", None)
            if record is not None:  # looked up per call, as redis.asyncio's pool does
                await record(connection_pool=self, duration_seconds=monotonic() - dial_started)
        wait = getattr(_aconnection, "record_connection_wait_time", None)
        if self._records_wait and wait is not None:
            await wait(pool_name=self._pool_name(), duration_seconds=monotonic() - started)

    async def _wait(self, waiter: TaskWaiter) -> Any:
        """Sleep until the core grants ``waiter`` a connection or a dial, or its deadline passes
        (then :meth:`PoolCore.finish_wait` raises :class:`~fairpool.errors.PoolTimeoutError` —
        unless a grant arrived first, in which case it is used). A cancelled task leaves the
        queue and gives back any grant that raced with the cancellation."""
        try:
            await waiter.fut
        except BaseException:
            await self._give_back(None, waiter)
            raise
        slot = waiter.slot
        if slot is not None:
            return slot  # handed over by a release (the wait was counted there)
        return self._core.finish_wait(waiter, monotonic())

    def _queue(self, now: float) -> TaskWaiter:
        """Queue a waiter (after :data:`WAIT`; part of the caller's critical section)."""
        waiter = TaskWaiter(asyncio.get_running_loop().create_future())
        self._core.enqueue(waiter, now)
        timeout = self.config.timeout
        if timeout is not None:
            self._deadlines.add(waiter, now, timeout)
        return waiter

    async def _give_back(self, got: Any, waiter: TaskWaiter | None) -> None:
        """Undo a borrow in progress (after a cancellation): leave the queue, give back a
        connection or a reserved dial. The bookkeeping happens before the first await."""
        trash = self._locked(self._core.give_back, got, waiter, monotonic())[1]
        if trash:
            await self._close(trash)

    async def _dial(self, for_caller: bool = True, only: Endpoint | None = None) -> Any:
        """Create and connect a connection for a reserved dial (no lock is held), trying the
        targets the planner names in turn (see the sync pool's ``_dial``).

        For a caller the dial runs in a task of its own, awaited through ``asyncio.shield``: a
        caller cancelled meanwhile (``asyncio.wait_for`` deadlines) does not throw the dial away.
        It finishes in the background, bounded by the connect timeout, and the connection goes
        to the oldest waiter or joins the idle set, so that a pool under per-request deadlines
        still warms up (psycopg_pool and asyncpg grow their pools outside the caller's task too).
        """
        planner = self._planner
        if for_caller:
            task = asyncio.get_running_loop().create_task(self._connect_new(planner, only))
            bound = self.connection_kwargs.get("socket_connect_timeout")
            conn, target = await shielded(
                task, lambda t: self._adopt(t, planner), self._orphans, bound
            )
        else:
            conn, target = await self._connect_new(planner, only)
        slot = planner.connected(conn, target, monotonic(), for_caller)
        slot.aux = stream_of(conn)
        slot.endpoint = stream_endpoint(conn)
        if not for_caller:
            self._record(1, 0)  # a new idle connection (a waiter it went to records its use)
            self._abort_trash(planner)
        return conn

    async def _connect_new(
        self, planner: Planner[Any], only: Endpoint | None
    ) -> tuple[Any, Endpoint | None]:
        """Connect a new connection for a reserved dial to the first target that answers; when
        every one fails (or on cancellation) free the reservation and close what was opened."""
        error: BaseException | None = None
        for target in planner.dial_order(monotonic(), only):
            planner.dialling(target)
            conn = None
            started = monotonic()
            try:
                conn = self._new_connection(target)
                await self._connect(conn)
            except BaseException as exc:
                planner.dial_error(target, monotonic())  # nothing may suspend before this
                if conn is not None:
                    abort(conn)
                error = exc
                if isinstance(exc, Exception):
                    continue
                break
            planner.core.timings.observe_dial(monotonic() - started)
            return conn, target
        planner.dial_abandoned()
        self._abort_trash(planner)
        assert error is not None
        raise error

    async def _prepare(self, slot: Slot[Any], now: float) -> Any:
        """Make a borrowed idle connection ready: reconnect it if its socket is gone, verify it if
        it has been idle a while (or is suspect). Returns ``None`` if it failed its check (it is
        closed; the caller tries the next one), or its endpoint is down. A failed or cancelled
        reconnect or check closes the connection and raises (unless the planner has the caller
        try another connection)."""
        conn = slot.conn
        raw: Any = slot.aux
        if raw._writer is None or self._ensure_hook:
            planner = self._planner
            if not planner.may_reconnect(slot):
                await self._discard(conn, "error")
                return None
            # Reconnect in a task of its own: a caller cancelled meanwhile leaves it to finish
            # in the background (see _dial), and the connection goes back to the pool.
            task = asyncio.get_running_loop().create_task(self._connect(conn))
            bound = self.connection_kwargs.get("socket_connect_timeout")
            try:
                await shielded(
                    task, lambda t: self._reconnected(t, conn, planner), self._orphans, bound
                )
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await self._discard(conn, "error")
                if isinstance(exc, Exception) and planner.reconnect_failed(slot, monotonic()):
                    return None
                raise
            slot.endpoint = stream_endpoint(conn)
            slot.suspect = False
            return conn
        polled = not quiet(raw)
        if polled and not self._pushes_expected():
            # The end of the stream, an error or a stale reply: unusable, whatever the check
            # would say.
            await self._close(self._sweep(conn, stirred))
            return None
        due = self._core.needs_check(slot, now)
        if polled or due:
            try:
                ok = await self._verify(conn, polled, due)
            except BaseException:  # cancelled mid-check: the connection's state is unknown
                await self._discard(conn, "error")
                raise
            if not ok:
                await self._discard(conn, "health_check")
                return None
            slot.suspect = False
        return conn

    async def _verify(self, conn: Any, polled: bool = False, due: bool = True) -> bool:
        """The borrow check: ``False`` if the connection is unusable. ``polled``: its reader saw
        EOF, an error or unread bytes, which a peek tells apart whatever ``health_check`` is;
        ``due``: the configured ``health_check`` runs too (idle long enough, or suspect)."""
        peek, check = self._check_kind(polled)
        try:
            if peek:
                reader = getattr(conn, "_reader", None)
                if reader is not None and (reader.at_eof() or reader.exception() is not None):
                    return False  # the server closed it, or the transport failed
                if await async_can_read(conn) and not self._pushes_expected():
                    # Pending data: under RESP3 it may be a legitimate push message (maintenance
                    # notifications); otherwise it is a stale reply and the connection is out of
                    # sync.
                    return False
            if not due or check is None:
                return True
            if check == "ping":
                await conn.send_command("PING", check_health=False)
                return await conn.read_response() in (b"PONG", "PONG", True)
            result = check(conn)
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        except Exception as exc:
            logger.debug("fairpool: borrow check failed on %r: %r", conn, exc)
            return False

    async def _discard(self, conn: Any, reason: str) -> None:
        await self._close(self._locked(self._core.discard, conn, reason)[1])

    # -------------------------------------------------------------- release
    async def release(self, connection: Any) -> None:
        """Give a borrowed connection back. Connections the pool does not hold as borrowed
        (foreign ones, or a second release) are ignored.

        The bookkeeping is done before anything is awaited, so a task cancelled inside
        ``release`` never leaks the connection.
        """
        core = self._core
        slot = core.borrowed(connection)
        if slot is None or (self._releasing and connection in self._releasing):
            # foreign, or a second release (perhaps while the first does its I/O)
            self._ignored_release(connection, core.slot_of(connection))
            return
        if self._custom_owner and not self.owns_connection(connection):
            # e.g. Sentinel's pool after a failover: the connection points at a stale address.
            reusable = False
        elif (
            ASYNC_SHOULD_RECONNECT and connection.should_reconnect()
        ) or self._release_event_needed(connection):
            await self._release_after_io(connection)
            return
        else:
            reusable = True
            raw = slot.aux
            if raw._writer is None and raw is not NO_STREAM:
                core.broken(slot)  # a command on it failed: its older siblings are suspect
        now = monotonic()
        if not core.release_slot(slot, now, reusable):
            return
        await self._after_release(now)

    async def _release_after_io(self, connection: Any) -> None:
        """Release a connection that needs I/O before anyone else may use it: a requested
        reconnect, or ``AsyncAfterConnectionReleasedEvent`` (streaming credential re-auth). The
        connection stays borrowed meanwhile; the bookkeeping runs in ``finally`` so that a
        cancellation cannot skip it. If the I/O fails the connection is closed, not reused."""
        ok = False
        self._releasing.add(connection)
        try:
            if ASYNC_SHOULD_RECONNECT and connection.should_reconnect():
                await connection.disconnect()
            if self._release_event_needed(connection):
                dispatcher: Any = self._event_dispatcher
                event = AsyncAfterConnectionReleasedEvent(connection)  # type: ignore[no-untyped-call]
                await dispatcher.dispatch_async(event)
            ok = True
        finally:
            self._releasing.discard(connection)
            now = monotonic()
            released = self._core.release(connection, now, ok)
            if released and not ok:
                # The I/O raised (or was cancelled) and the code below will not run: count the
                # release and close what the core retired (this connection) without awaiting.
                if _arecorder._async_metrics_collector is not None:
                    self._record(1, -1)
                self._abort_trash(self._planner)
        if released:
            await self._after_release(now)

    async def _after_release(self, now: float) -> None:
        core = self._core
        if core.later:  # idle connections a borrow found dead (PoolShell._sweep)
            core.flush_later()
        trash = core.take_trash() if core.trash else None
        if _arecorder._async_metrics_collector is not None:
            self._record(1, -1)
        if trash:
            await self._close(trash)
        if core.leaks_back:  # a connection reported as leaked came back
            self._report_leaks()
        if self._maint_task is None and self._maintenance_interval is not None:
            self._ensure_maintainer()  # stopped by aclose(): restart on next use
        if now >= core.next_maintenance:
            await self._maintain(background=True)

    # ------------------------------------------------------------- controls
    async def _get_watched(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """:meth:`get_connection` with ``leak_timeout`` on: note where the connection was
        borrowed (or that the borrower is exempt, see :mod:`fairpool.leaks`)."""
        stack = leaks.borrower(sys._getframe(1), command_name)
        conn = await type(self).get_connection(self, command_name, *keys, **options)
        self._watch(conn, stack)
        return conn

    def _resized(self, trash: Trash) -> None:
        for conn, _reason in trash:
            abort(conn)  # closes the transport without awaiting
        if trash and _arecorder._async_metrics_collector is not None:
            self._record(-len(trash), 0)

    async def drain(self, endpoint: Any = None) -> int:
        """A coroutine: the sync pool's :meth:`fairpool.ConnectionPool.drain` (no task fails;
        ``endpoint`` may name one of ``endpoints=[...]``); returns how many connections are
        being replaced once the idle ones are closed and ``min_idle`` is dialled again."""
        count, trash = self._drain_core(endpoint)
        if trash:
            await self._close(trash)
        await self.maintain()
        return count

    def owns_connection(self, connection: Any) -> bool:
        """Whether a released connection may be reused (always, here). A hook for subclasses:
        redis.asyncio's ``SentinelConnectionPool`` refuses connections to a stale master."""
        return True


class BlockingConnectionPool(BlockingShell, ConnectionPool):
    """fairpool's asyncio pool with ``redis.asyncio.BlockingConnectionPool``'s defaults:
    ``block=True``, ``max_connections=50``, ``timeout=20``; like redis.asyncio's, it reports
    each borrow's wait time to redis-py's observability.

    ``queue_class`` is accepted for compatibility (redis.asyncio ignores it): ``asyncio.LifoQueue``
    / ``queue.LifoQueue`` map to ``policy="lifo"`` and ``asyncio.Queue`` / ``queue.Queue`` to
    ``policy="fifo"`` when no ``policy`` is given; without either the policy is ``"fifo"``.
    """

    _QUEUES = (
        (asyncio.LifoQueue, Policy.LIFO),
        (asyncio.Queue, Policy.FIFO),
        (queue.LifoQueue, Policy.LIFO),
        (queue.Queue, Policy.FIFO),
    )
    _QUEUE_NAMES = "asyncio.LifoQueue, asyncio.Queue, queue.LifoQueue or queue.Queue"
    _DEFAULT_CONNECTION = Connection
