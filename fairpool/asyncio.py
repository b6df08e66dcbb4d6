"""The asyncio pools: drop-ins for ``redis.asyncio``'s pools, the event-loop I/O layer over
:class:`~fairpool.shell.PoolShell` and the same :class:`~fairpool.core.PoolCore` as the sync pool.

:class:`ConnectionPool` subclasses ``redis.asyncio.ConnectionPool`` (inheriting ``__repr__``,
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
import contextlib
import inspect
import logging
import queue
import warnings
import weakref
from collections.abc import Awaitable, Callable
from time import monotonic
from typing import Any, TypeVar

from redis.asyncio import connection as _aconnection
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, parse_url
from redis.asyncio.connection import ConnectionPool as RedisAsyncConnectionPool

from ._compat import (
    ASYNC_SHOULD_RECONNECT,
    AsyncAfterConnectionReleasedEvent,
    AsyncReAuthConnectionListener,
    async_can_read,
    get_connection_args_deprecated,
    get_pool_name,
    maint_notifications_enabled,
    pool_init_kwargs,
    redacted_repr,
    repr_leaks_secrets,
    run_close_hooks,
)
from ._compat import arecorder as _arecorder
from .config import Policy
from .endpoints import Endpoint
from .errors import PoolExhaustedError
from .lifecycle import DONE, JOIN, REBALANCE_BUDGET, THROWAWAY, WAIT_RETIRE, Planner
from .metrics.redispy import async_collector
from .shell import (
    NO_LOCK,
    PoolShell,
    Trash,
    guarded_connection_kwargs,
    policy_from_queue_class,
    with_settings,
)
from .slot import DIAL, WAIT, Slot
from .tasks import (
    NO_STREAM,
    Deadlines,
    TaskWaiter,
    abort,
    disconnect_quietly,
    maintenance_loop,
    quiet,
    shielded,
    stream_endpoint,
    stream_of,
)

__all__ = ["BlockingConnectionPool", "ConnectionPool"]

# redis.asyncio 5.0's clients pass the command name to get_connection() (see fairpool.pool)
_GET_CONNECTION_ARGS_DEPRECATED = get_connection_args_deprecated(RedisAsyncConnectionPool)

logger = logging.getLogger("fairpool")

_P = TypeVar("_P", bound="ConnectionPool")

_SYNC_CLIENT_MODULES = frozenset({"redis.client", "redis.cluster", "redis.sentinel"})
"""redis-py's sync client modules: they never read an asyncio pool's ``connection_kwargs``."""

_ENSURE = getattr(RedisAsyncConnectionPool, "ensure_connection", None)
"""redis.asyncio's connect-and-verify hook (redis-py ≥ 7; older versions connect inline)."""


class ConnectionPool(PoolShell, RedisAsyncConnectionPool):
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
      failing ones and rebalancing when one recovers (as the sync pool does).

    :meth:`aclose` (and leaving ``async with pool:``) disconnects every connection and leaves the
    pool usable, as in redis.asyncio; :meth:`ashutdown` closes it for good.
    """

    if repr_leaks_secrets(RedisAsyncConnectionPool):  # redis-py 6.x shows passwords
        __repr__ = redacted_repr

    _PARSE_URL = staticmethod(parse_url)
    _SIBLINGS = (Connection, SSLConnection)
    _RELEASED_EVENT = AsyncAfterConnectionReleasedEvent
    _REAUTH_LISTENER = AsyncReAuthConnectionListener
    _WRONG_CLIENT = staticmethod(_SYNC_CLIENT_MODULES.__contains__)
    _MIXUP = (
        "an asyncio pool and cannot serve redis-py's sync clients",
        "fairpool.ConnectionPool (or fairpool.BlockingConnectionPool)",
    )
    _COLLECTOR = staticmethod(async_collector)

    @with_settings
    def __init__(
        self,
        connection_class: type[AbstractConnection] = Connection,
        max_connections: int | None = None,
        maint_notifications_config: Any = None,
        **kwargs: Any,
    ) -> None:
        connection_kwargs = self._configure(max_connections, kwargs, _chain_connect)
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

    connection_kwargs = guarded_connection_kwargs(_SYNC_CLIENT_MODULES.__contains__, *_MIXUP)

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
            warnings.warn(
                "get_connection() arguments are deprecated and ignored",
                DeprecationWarning,
                stacklevel=2,
            )
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
            await wait(pool_name=get_pool_name(self), duration_seconds=monotonic() - started)

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
            return conn, target
        planner.dial_abandoned()
        self._abort_trash(planner)
        assert error is not None
        raise error

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
                if await async_can_read(conn) and not maint_notifications_enabled(self):
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

    def can_get_connection(self) -> bool:
        """Whether a borrow now would get a connection without waiting (redis.asyncio's API)."""
        core = self._core
        if core.closed or core.waiting:
            return False
        return core.idle_count > 0 or core.open_count + core.dialling < core.config.max_connections

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
        if not self.owns_connection(connection):
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
        if not core.release(connection, now, reusable):
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
        trash = core.take_trash() if core.trash else None
        if _arecorder._async_metrics_collector is not None:
            self._record(1, -1)
        if trash:
            await self._close(trash)
        if self._maint_task is None and self.config.maintenance_interval is not None:
            self._ensure_maintainer()  # stopped by aclose(): restart on next use
        if now >= core.next_maintenance:
            await self._maintain(background=True)

    def owns_connection(self, connection: Any) -> bool:
        """Whether a released connection may be reused (always, here). A hook for subclasses:
        redis.asyncio's ``SentinelConnectionPool`` refuses connections to a stale master."""
        return True

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
        remaining, trash = self._locked(self._core.maintain, monotonic())
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
        """The half-open probe: one dial to an endpoint that is down. With spare capacity the
        connection joins the pool; at the cap it is a throwaway connection, closed at once."""
        plan = planner.probe_plan(endpoint)
        if plan is JOIN:
            try:
                await self._dial(for_caller=False, only=endpoint)
            except Exception as exc:  # reported: the endpoint stays down, backed off further
                logger.info("fairpool: probe of %s failed: %r", endpoint, exc)
        elif plan is THROWAWAY:
            conn = self._new_connection(endpoint)
            ok = False
            try:
                await self._connect(conn)
                ok = True
            except Exception as exc:
                logger.info("fairpool: probe of %s failed: %r", endpoint, exc)
            finally:
                planner.probe_done(endpoint, ok, monotonic())
                await disconnect_quietly(conn)

    def _ensure_maintainer(self) -> None:
        """Start the maintenance task (``maintenance_interval``) in the running loop, once."""
        interval = self.config.maintenance_interval
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


class BlockingConnectionPool(ConnectionPool):
    """fairpool's asyncio pool with ``redis.asyncio.BlockingConnectionPool``'s defaults:
    ``block=True``, ``max_connections=50``, ``timeout=20``; like redis.asyncio's, it reports
    each borrow's wait time to redis-py's observability.

    ``queue_class`` is accepted for compatibility (redis.asyncio ignores it): ``asyncio.LifoQueue``
    / ``queue.LifoQueue`` map to ``policy="lifo"`` and ``asyncio.Queue`` / ``queue.Queue`` to
    ``policy="fifo"`` when no ``policy`` is given; without either the policy is ``"fifo"``.
    """

    _records_wait = True

    def __init__(
        self,
        max_connections: int | None = 50,
        timeout: float | None = 20,
        connection_class: type[AbstractConnection] = Connection,
        queue_class: type | None = None,
        *,
        block: bool = True,
        policy: Policy | str | None = None,
        **kwargs: Any,
    ) -> None:
        if policy is None:
            policy = policy_from_queue_class(
                queue_class,
                (
                    (asyncio.LifoQueue, Policy.LIFO),
                    (asyncio.Queue, Policy.FIFO),
                    (queue.LifoQueue, Policy.LIFO),
                    (queue.Queue, Policy.FIFO),
                ),
                "asyncio.LifoQueue, asyncio.Queue, queue.LifoQueue or queue.Queue",
            )
        super().__init__(
            connection_class,
            max_connections,
            policy=policy,
            block=block,
            timeout=timeout,
            **kwargs,
        )


def _chain_connect(
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
