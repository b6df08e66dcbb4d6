"""The asyncio pools: drop-ins for ``redis.asyncio``'s pools, driven by the same
:class:`~fairpool.core.PoolCore` as the sync pool.

:class:`ConnectionPool` subclasses ``redis.asyncio.ConnectionPool`` (inheriting ``__repr__``,
maintenance-notification wiring, ``get_encoder``, ``get_protocol`` and the rest of what
``redis.asyncio`` expects of a pool) and replaces its idle list and in-use set with the core.
The rules — policies, caps, the waiter queue, lifecycle decisions, stats — live in the core; this
module only does the I/O the core asks for.

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
import sys
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from time import monotonic
from typing import Any, TypeVar

from redis.asyncio import connection as _aconnection
from redis.asyncio.connection import AbstractConnection, Connection, parse_url
from redis.asyncio.connection import ConnectionPool as RedisAsyncConnectionPool

from . import leaks
from ._compat import (
    ASYNC_SHOULD_RECONNECT,
    AsyncAfterConnectionReleasedEvent,
    AsyncReAuthConnectionListener,
    async_can_read,
    get_connection_args_deprecated,
    maint_notifications_enabled,
    pool_init_kwargs,
    redacted_repr,
    repr_leaks_secrets,
    run_close_hooks,
)
from ._compat import arecorder as _arecorder
from .config import (
    HealthCheck,
    Policy,
    PoolConfig,
    drain_target,
    make_config,
    resized_config,
    url_kwargs,
)
from .core import DIAL, WAIT, PoolCore, Slot, Waiter
from .errors import PoolExhaustedError
from .pool import (
    _policy_from_queue_class,
    guarded_connection_kwargs,
    record_counts,
    reject_unknown_kwargs,
)
from .stats import PoolStats

__all__ = ["BlockingConnectionPool", "ConnectionPool"]

# redis.asyncio 5.0's clients pass the command name to get_connection() (see fairpool.pool)
_GET_CONNECTION_ARGS_DEPRECATED = get_connection_args_deprecated(RedisAsyncConnectionPool)

logger = logging.getLogger("fairpool")

_P = TypeVar("_P", bound="ConnectionPool")
_Trash = list[tuple[Any, str]]

_SYNC_CLIENT_MODULES = frozenset({"redis.client", "redis.cluster", "redis.sentinel"})
"""redis-py's sync client modules: they never read an asyncio pool's ``connection_kwargs``."""

_ENSURE = getattr(RedisAsyncConnectionPool, "ensure_connection", None)
"""redis.asyncio's connect-and-verify hook (redis-py ≥ 7; older versions connect inline)."""

DIAL_TIMEOUT = 10.0
"""Seconds a dial abandoned by its caller may still take when ``socket_connect_timeout`` is not
set (see :meth:`ConnectionPool._dial`)."""


class _TaskWaiter(Waiter):
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


class _NoWriter:
    """Stands in for connection classes without a ``_writer``: always take the slow path."""

    _writer = None
    _reader = None


_NO_WRITER = _NoWriter()


def _raw(conn: Any) -> Any:
    """The object whose ``_writer`` tells whether ``conn`` is connected."""
    return conn if hasattr(conn, "_writer") else _NO_WRITER


def _quiet(raw: Any) -> bool:
    """Whether nothing arrived on an idle connection: no EOF, no error, no unread bytes in its
    ``StreamReader``. The event loop has already read whatever the socket had, so this costs no
    system call (redis.asyncio's ``can_read()`` looks at the same reader state on every borrow).
    """
    reader = raw._reader
    return not (reader._buffer or reader._eof or reader._exception is not None)


def _endpoint(conn: Any) -> str | None:
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


def _record(pool: Any, idle_delta: int, used_delta: int) -> None:
    """Report connection-state changes to redis-py's observability, only when it is enabled.

    Synchronous on purpose (the collector is synchronous; the async recorder functions only wrap
    it): recording must not add suspension points to the borrow and release paths.
    """
    # created on first use, as redis-py's recorder does (so that the first borrow is counted)
    collector = _arecorder._async_metrics_collector or _arecorder._get_or_create_collector()
    if collector is not None:
        record_counts(collector, pool, idle_delta, used_delta)


def _abort(conn: Any) -> None:
    """Close a connection's transport without awaiting anything (used after a cancellation)."""
    try:
        close = getattr(conn, "_close", None)
        if callable(close):
            close()
    except Exception as exc:
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


async def _disconnect_quietly(conn: Any, wait: bool = False) -> None:
    try:
        # called as redis.asyncio's pool calls it when waiting (connection classes written for
        # redis.asyncio need not take ``nowait``)
        await (conn.disconnect() if wait else conn.disconnect(nowait=True))
    except Exception as exc:  # closing a dead socket may fail; nothing to do about it
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


class ConnectionPool(RedisAsyncConnectionPool):
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
    * ``leak_timeout`` / ``max_waiting`` — leak detection and load shedding, as in the sync pool.

    At run time, :meth:`resize` changes the caps and ``await`` :meth:`drain` replaces every
    connection.

    :meth:`aclose` (and leaving ``async with pool:``) disconnects every connection and leaves the
    pool usable, as in redis.asyncio; :meth:`ashutdown` closes it for good.
    """

    if repr_leaks_secrets(RedisAsyncConnectionPool):  # redis-py 6.x shows passwords
        __repr__ = redacted_repr

    def __init__(
        self,
        connection_class: type[AbstractConnection] = Connection,
        max_connections: int | None = None,
        maint_notifications_config: Any = None,
        *,
        policy: Policy | str = Policy.FIFO,
        max_idle: int | None = None,
        min_idle: int = 0,
        block: bool = False,
        timeout: float | None = None,
        turn_borrows: int = 4,
        idle_timeout: float | None = None,
        max_lifetime: float | None = None,
        lifetime_jitter: float = 0.05,
        health_check: HealthCheck = "peek",
        health_check_after: float = 0.25,
        maintenance_interval: float | None = None,
        on_connect: Callable[[Any], object] | None = None,
        leak_timeout: float | None = None,
        max_waiting: int | None = None,
        **connection_kwargs: Any,
    ) -> None:
        if connection_kwargs.get("endpoints") is not None:
            raise ValueError(
                "fairpool setting 'endpoints' is not supported by fairpool.asyncio yet; "
                "use fairpool.ConnectionPool (sync) or a balancer"
            )
        connection_kwargs.pop("endpoints", None)
        self.config: PoolConfig = make_config(
            policy=policy,
            max_connections=max_connections,
            max_idle=max_idle,
            min_idle=min_idle,
            block=block,
            timeout=timeout,
            turn_borrows=turn_borrows,
            idle_timeout=idle_timeout,
            max_lifetime=max_lifetime,
            lifetime_jitter=lifetime_jitter,
            health_check=health_check,
            health_check_after=health_check_after,
            maintenance_interval=maintenance_interval,
            on_connect=on_connect,
            leak_timeout=leak_timeout,
            max_waiting=max_waiting,
        )
        # [controls] leak detection: borrows go through _get_watched (no cost when off)
        if self.config.leak_timeout is not None:
            self.get_connection = self._get_watched  # type: ignore[method-assign]
        if on_connect is not None:
            connection_kwargs["redis_connect_func"] = _chain_connect(
                connection_kwargs.get("redis_connect_func"), on_connect
            )
        self._check_after = self.config.health_check_after
        self._maint_task: asyncio.Task[None] | None = None
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
        reject_unknown_kwargs(self, (_aconnection.Connection, _aconnection.SSLConnection))
        # redis.asyncio connects through ensure_connection(); a subclass overriding it gets it
        # called on every borrow, as redis.asyncio does (and gives up the quick path for it).
        self._ensure_hook = _ENSURE is not None and type(self).ensure_connection is not _ENSURE
        if self._ensure_hook:
            self._check_after = -1.0
        # Create redis-py's metrics collector now if observability is on, so that the first
        # borrow is counted like the rest (the collector is otherwise created lazily).
        _arecorder._get_or_create_collector()

    @classmethod
    def from_url(cls: type[_P], url: str, **kwargs: Any) -> _P:
        """Build a pool from a ``redis://``, ``rediss://`` or ``unix://`` URL.

        fairpool's settings may be given as query parameters and are converted to their types
        (``?policy=round_robin&max_idle=8&block=true&timeout=2``); the rest is redis.asyncio's
        ``ConnectionPool.from_url``.
        """
        return cls(**url_kwargs(parse_url, url, kwargs))

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Start afresh (at construction): no connections, zero counters.

        Connections the pool held are forgotten, not closed (as in redis.asyncio).
        """
        task = self.__dict__.get("_maint_task")
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed
                task.cancel()
        self._maint_task = None
        self._core: PoolCore[Any] = PoolCore(self.config)
        self._deadlines: deque[tuple[float, _TaskWaiter]] = deque()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_loop: asyncio.AbstractEventLoop | None = None
        self._releasing: set[Any] = set()  # borrowed connections whose release is doing I/O
        self._orphans: set[asyncio.Task[Any]] = set()  # dials whose caller gave up (see _dial)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the maintenance task starts on first use
        self._ensure_maintainer()

    @property
    def policy(self) -> Policy:
        """The idle policy."""
        return self.config.policy

    @property
    def block(self) -> bool:
        """Whether a borrow at the cap waits (``True``) or raises at once."""
        return self.config.block

    @property
    def timeout(self) -> float | None:
        """How long a blocked borrow waits (``None`` = forever)."""
        return self.config.timeout

    connection_kwargs = guarded_connection_kwargs(
        _SYNC_CLIENT_MODULES.__contains__,
        "an asyncio pool and cannot serve redis-py's sync clients",
        "fairpool.ConnectionPool (or fairpool.BlockingConnectionPool)",
    )

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
                now - slot.released < self._check_after
                and not slot.suspect
                and not core.trash
                and raw._writer is not None
                and not (raw._reader._buffer or raw._reader._eof or raw._reader._exception)
            ):
                if _arecorder._async_metrics_collector is not None:
                    _record(self, -1, 1)
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
            now = monotonic()
            raw = slot.aux
            if (
                now - slot.released < self._check_after
                and not slot.suspect
                and raw._writer is not None
                and _quiet(raw)
            ):
                if _arecorder._async_metrics_collector is not None:
                    _record(self, -1, 1)
                return slot.conn
            return await self._get_slow(slot, None, None, now)
        waiter = self._queue(now) if got is WAIT else None
        trash = core.take_trash() if core.trash else None
        return await self._get_slow(got, waiter, trash, now)

    def _acquire(self, now: float) -> tuple[Any, _TaskWaiter | None, _Trash | None]:
        """One borrow attempt (a critical section: no await): what the core gave, the waiter
        queued if it said :data:`WAIT`, and the connections to close."""
        core = self._core
        got = core.acquire(now)
        waiter = self._queue(now) if got is WAIT else None
        trash = core.take_trash() if core.trash else None
        return got, waiter, trash

    async def _get_slow(
        self, got: Any, waiter: _TaskWaiter | None, trash: _Trash | None, now: float
    ) -> Any:
        """Everything but a fresh idle connection: close what the core retired, wait, dial,
        reconnect or verify, and try again when a checked connection turns out dead."""
        self._ensure_maintainer()
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
                started = monotonic()
                conn = await self._dial()
                _record(self, 0, 1)
                record = getattr(_aconnection, "record_connection_create_time", None)
                if record is not None:  # looked up per call, as redis.asyncio's pool does
                    await record(connection_pool=self, duration_seconds=monotonic() - started)
                return conn
            conn = await self._prepare(got, now)
            if conn is not None:
                _record(self, -1, 1)
                return conn
            now = monotonic()
            got, waiter, trash = self._acquire(now)

    async def _wait(self, waiter: _TaskWaiter) -> Any:
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

    def _queue(self, now: float) -> _TaskWaiter:
        """Queue a waiter (after :data:`WAIT`; part of the caller's critical section).

        Every waiter has the same ``timeout``, so deadlines grow in queue order and one timer,
        set for the oldest pending deadline, serves the whole queue: a timer per waiter would
        keep a thousand entries in the event loop's timer heap when a thousand tasks wait.
        """
        loop = asyncio.get_running_loop()
        waiter = _TaskWaiter(loop.create_future())
        self._core.enqueue(waiter, now)
        timeout = self.config.timeout
        if timeout is not None:
            deadlines = self._deadlines
            while deadlines and deadlines[0][1].fut.done():  # served in order: they gather here
                deadlines.popleft()
            deadlines.append((now + timeout, waiter))
            if self._deadline_timer is None or self._deadline_loop is not loop:
                self._deadline_loop = loop
                self._deadline_timer = loop.call_later(timeout, self._expire)
        return waiter

    def _expire(self) -> None:
        """The deadline timer: wake (without a grant) every waiter whose deadline has passed."""
        self._deadline_timer = None
        deadlines = self._deadlines
        now = monotonic()
        while deadlines:
            deadline, waiter = deadlines[0]
            if not waiter.fut.done():
                if deadline > now:
                    loop = self._deadline_loop
                    assert loop is not None
                    self._deadline_timer = loop.call_later(deadline - now, self._expire)
                    return
                waiter.wake()
            deadlines.popleft()

    async def _give_back(self, got: Any, waiter: _TaskWaiter | None) -> None:
        """Undo a borrow in progress (after a cancellation): leave the queue, give back a
        connection or a reserved dial. The bookkeeping happens before the first await."""
        core = self._core
        granted = core.cancel_wait(waiter, monotonic()) if waiter is not None else got
        if granted is DIAL:
            core.dial_failed()
        elif granted.__class__ is Slot:
            core.release(granted.conn, monotonic())
        trash = core.take_trash() if core.trash else None
        if trash:
            await self._close(trash)

    async def _dial(self) -> Any:
        """Create and connect a connection for a reserved :data:`DIAL` (no lock is held).

        The dial runs in a task of its own, awaited through ``asyncio.shield``: a caller cancelled
        meanwhile (``asyncio.wait_for`` deadlines) does not throw the dial away. It finishes in
        the background, bounded by the connect timeout (:meth:`_shielded`), and the connection goes
        to the oldest waiter or joins the idle set, so that a pool under per-request deadlines
        still warms up (psycopg_pool and asyncpg grow their pools outside the caller's task too).
        """
        core = self._core
        task = asyncio.get_running_loop().create_task(self._connect_new(core))
        conn = await self._shielded(task, lambda t: self._adopt(t, core))
        slot = core.dialled(conn, monotonic())
        slot.aux = _raw(conn)
        slot.endpoint = _endpoint(conn)
        return conn

    async def _connect_new(self, core: PoolCore[Any]) -> Any:
        """Connect a new connection for a reserved dial; on failure (or cancellation) free the
        reservation and close what was opened."""
        conn = None
        try:
            conn = self.make_connection()
            await self._connect(conn)
        except BaseException:
            core.dial_failed()  # first: nothing may suspend before the reservation is freed
            trash = core.take_trash()
            if conn is not None:
                _abort(conn)
            for other, _reason in trash:
                _abort(other)
            if trash and _arecorder._async_metrics_collector is not None:
                _record(self, -len(trash), 0)
            raise
        return conn

    async def _shielded(
        self, task: asyncio.Task[Any], settle: Callable[[asyncio.Task[Any]], None]
    ) -> Any:
        """Await a connect ``task`` on behalf of the caller. If the caller is cancelled first,
        the task goes on in the background, at most the connect timeout
        (``socket_connect_timeout``, else :data:`DIAL_TIMEOUT`) from now, and ``settle(task)``
        hands its outcome to the pool when it ends (at once if it already has)."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                settle(task)
                raise
            self._orphans.add(task)
            bound = self.connection_kwargs.get("socket_connect_timeout") or DIAL_TIMEOUT
            timer = asyncio.get_running_loop().call_later(bound, task.cancel)

            def done(task: asyncio.Task[Any]) -> None:
                timer.cancel()
                self._orphans.discard(task)
                settle(task)

            task.add_done_callback(done)
            raise

    def _adopt(self, task: asyncio.Task[Any], core: PoolCore[Any]) -> None:
        """A connection dialled for a caller that gave up joins the pool: the oldest waiter
        gets it, or it becomes idle (closed at once if the pool was closed or reset meanwhile).
        A failed dial has already freed its reservation. Synchronous (a done callback)."""
        if task.cancelled() or task.exception() is not None:
            return
        conn = task.result()
        if core is not self._core:  # reset() forgot the pool this dial was reserved in
            _abort(conn)
            return
        slot = core.dialled_idle(conn, monotonic())
        slot.aux = _raw(conn)
        slot.endpoint = _endpoint(conn)
        if _arecorder._async_metrics_collector is not None:
            _record(self, 1, 0)  # a new idle connection (a waiter it went to records its use)
        self._abort_trash(core)

    def _reconnected(self, task: asyncio.Task[Any], conn: Any, core: PoolCore[Any]) -> None:
        """A reconnect in place finished after its caller gave up: the connection goes back to
        the pool (oldest waiter or idle), or is closed if the reconnect failed."""
        if task.cancelled() or task.exception() is not None:
            _abort(conn)
            core.discard(conn, "error")
        else:
            slot = core.slot_of(conn)
            if slot is not None:
                slot.endpoint = _endpoint(conn)
                slot.suspect = False
            if core.release(conn, monotonic()) and _arecorder._async_metrics_collector is not None:
                _record(self, 1, -1)
        self._abort_trash(core)

    def _abort_trash(self, core: PoolCore[Any]) -> None:
        """Close what the core retired without awaiting (from a done callback)."""
        trash = core.take_trash()
        for conn, _reason in trash:
            _abort(conn)
        if trash and _arecorder._async_metrics_collector is not None:
            _record(self, -len(trash), 0)

    async def _prepare(self, slot: Slot[Any], now: float) -> Any:
        """Make a borrowed idle connection ready: reconnect it if its socket is gone, verify it if
        it has been idle a while (or is suspect). Returns ``None`` if it failed its check (it is
        closed; the caller tries the next one). A failed or cancelled reconnect or check closes
        the connection and raises."""
        conn = slot.conn
        raw: Any = slot.aux
        if raw._writer is None or self._ensure_hook:
            # Reconnect in a task of its own: a caller cancelled meanwhile leaves it to finish
            # in the background (see _dial), and the connection goes back to the pool.
            core = self._core
            task = asyncio.get_running_loop().create_task(self._connect(conn))
            try:
                await self._shielded(task, lambda t: self._reconnected(t, conn, core))
            except asyncio.CancelledError:
                raise
            except BaseException:
                await self._discard(conn, "error")
                raise
            slot.endpoint = _endpoint(conn)
            slot.suspect = False
            return conn
        polled = not _quiet(raw)
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
        check = self.config.health_check
        try:
            if polled or check == "peek":
                reader = getattr(conn, "_reader", None)
                if reader is not None and (reader.at_eof() or reader.exception() is not None):
                    return False  # the server closed it, or the transport failed
                if await async_can_read(conn) and not maint_notifications_enabled(self):
                    # Pending data: under RESP3 it may be a legitimate push message (maintenance
                    # notifications); otherwise it is a stale reply and the connection is out of
                    # sync.
                    return False
            if not due or check in ("peek", "none"):
                return True
            if check == "ping":
                await conn.send_command("PING", check_health=False)
                return await conn.read_response() in (b"PONG", "PONG", True)
            assert callable(check)
            result = check(conn)
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
        except Exception as exc:
            logger.debug("fairpool: borrow check failed on %r: %r", conn, exc)
            return False

    async def _discard(self, conn: Any, reason: str) -> None:
        core = self._core
        core.discard(conn, reason)
        await self._close(core.take_trash())

    def make_connection(self) -> Any:
        """Create a new (unconnected) connection from the current ``connection_kwargs``.

        The cap is enforced by the core before this is called, not here.
        """
        return self.connection_class(**self.connection_kwargs)

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
            try:
                conn = self.make_connection()
            except BaseException:
                core.dial_failed()
                raise
            slot = core.dialled(conn, now)
            slot.aux = _raw(conn)
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
        slot = core.slot_of(connection)
        if slot is None or not slot.in_use or (self._releasing and connection in self._releasing):
            # foreign, or a second release (perhaps while the first does its I/O)
            logger.debug(
                "fairpool: ignoring release of %r: %s",
                connection,
                "not a connection of this pool" if slot is None else "it is not borrowed",
            )
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
            if raw._writer is None and raw is not _NO_WRITER:
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
                    _record(self, 1, -1)
                trash = self._core.take_trash()
                for conn, _reason in trash:
                    _abort(conn)
                if trash and _arecorder._async_metrics_collector is not None:
                    _record(self, -len(trash), 0)
        if released:
            await self._after_release(now)

    async def _after_release(self, now: float) -> None:
        core = self._core
        trash = core.take_trash() if core.trash else None
        if _arecorder._async_metrics_collector is not None:
            _record(self, 1, -1)
        if trash:
            await self._close(trash)
        if core.leaks_back:  # [controls] a connection reported as leaked came back
            self._report_leaks()
        if self._maint_task is None and self._maintenance_interval is not None:  # [controls]
            self._ensure_maintainer()  # stopped by aclose(): restart on next use
        if now >= core.next_maintenance:
            await self.maintain()

    def _release_event_needed(self, connection: Any) -> bool:
        """Whether dispatching ``AsyncAfterConnectionReleasedEvent`` would do anything: not when
        nobody listens, nor when the only listener is redis-py's default re-auth listener and
        the connection has no pending token."""
        dispatcher = getattr(self, "_event_dispatcher", None)  # none before redis-py 5.1
        listeners = getattr(dispatcher, "_event_listeners_mapping", {}).get(
            AsyncAfterConnectionReleasedEvent, ()
        )
        if not listeners:
            return False
        return not (
            len(listeners) == 1
            and type(listeners[0]) is AsyncReAuthConnectionListener
            and getattr(connection, "_re_auth_token", True) is None
        )

    def owns_connection(self, connection: Any) -> bool:
        """Whether a released connection may be reused (always, here). A hook for subclasses:
        redis.asyncio's ``SentinelConnectionPool`` refuses connections to a stale master."""
        return True

    # ---------------------------------------------------------- maintenance
    async def maintain(self) -> None:
        """Run pruning and the ``min_idle`` refill now (normally done lazily on release, or by
        the maintenance task): close what the core retires, dial what ``min_idle`` needs."""
        core = self._core
        remaining = core.maintain(monotonic())
        trash = core.take_trash()
        if core.leaked:  # [controls] leak_timeout passed
            self._report_leaks()
        try:
            if trash:
                await self._close(trash)
            while remaining:
                conn = None
                try:
                    conn = self.make_connection()
                    await self._connect(conn)
                except Exception as exc:
                    logger.warning("fairpool: min_idle refill failed: %r", exc)
                    if conn is not None:
                        await _disconnect_quietly(conn)
                    return  # the finally gives back this and every remaining reservation
                except BaseException:
                    if conn is not None:
                        _abort(conn)
                    raise
                remaining -= 1
                slot = core.dialled_idle(conn, monotonic())
                slot.aux = _raw(conn)
                slot.endpoint = _endpoint(conn)
                _record(self, 1, 0)  # a new idle connection (a waiter it went to records its use)
                trash = core.take_trash()
                if trash:
                    await self._close(trash)
        finally:
            for _ in range(remaining):
                core.dial_failed()

    def _ensure_maintainer(self) -> None:
        """Start the maintenance task (``maintenance_interval``) in the running loop, once."""
        interval = self._maintenance_interval  # [controls] leak checks run in it too
        if interval is None or self._core.closed:
            return
        loop = asyncio.get_running_loop()
        task = self._maint_task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._maint_task = loop.create_task(
            _maintenance_loop(weakref.ref(self), interval),
            name=f"fairpool-maintenance-{id(self):x}",
        )

    # ------------------------------------------------------------- [controls]
    @property
    def _maintenance_interval(self) -> float | None:
        """How often the maintenance task runs (``maintenance_interval``; more often with
        ``leak_timeout``), or ``None`` for no task."""
        return leaks.check_interval(self.config.leak_timeout, self.config.maintenance_interval)

    async def _get_watched(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """:meth:`get_connection` with ``leak_timeout`` on: note where the connection was
        borrowed (or that the borrower is exempt, see :mod:`fairpool.leaks`)."""
        stack = leaks.borrower(sys._getframe(1), command_name)
        conn = await type(self).get_connection(self, command_name, *keys, **options)
        slot = self._core.slot_of(conn)
        if slot is not None:
            slot.borrower = stack
            if stack is None:
                self._core.exempt(conn)
        return conn

    def exempt_from_leak_detection(self, connection: Any) -> None:
        """Exempt ``connection``'s current borrow from leak detection (``leak_timeout``): a
        holder that keeps it on purpose. (Pub/sub, ``Monitor`` and single-connection clients
        are exempt already.)"""
        self._core.exempt(connection)

    def _report_leaks(self) -> None:
        leaked, back = self._core.take_leaks()
        leaks.report(logger, self.config.leak_timeout, leaked, back, monotonic())

    def resize(
        self,
        max_connections: int | None = None,
        min_idle: int | None = None,
        max_idle: Any = ...,
    ) -> None:
        """Change the caps at run time (psycopg_pool's ``resize()``); arguments left out keep
        their value (``max_idle=None`` lifts the limit). Validated like the settings. Growing
        serves waiting tasks at once; shrinking closes surplus idle connections now and surplus
        borrowed ones when they come back, so that no more than ``max_connections`` are open
        once they are back; a higher ``min_idle`` is dialled by the next maintenance run."""
        config = resized_config(
            self.config, max_connections=max_connections, min_idle=min_idle, max_idle=max_idle
        )
        self.config = config
        self.max_connections = config.max_connections
        self._core.resize(config, monotonic())
        trash = self._core.take_trash()
        for conn, _reason in trash:
            _abort(conn)  # closes the transport without awaiting
        if trash and _arecorder._async_metrics_collector is not None:
            _record(self, -len(trash), 0)

    async def drain(self, endpoint: Any = None) -> int:
        """Replace every connection with a fresh one without failing any task (psycopg_pool's
        ``drain()``), e.g. after a password rotation, a DNS change or a proxy deploy: idle
        connections are closed now, borrowed ones when they come back; ``min_idle`` is dialled
        again now, other connections when next needed. With ``endpoint`` (``"host:port"``, the
        address connections are connected to) only its connections are replaced. Returns how
        many connections are being replaced."""
        target = drain_target(endpoint, self.config.endpoints)
        count = self._core.drain(target)
        trash = self._core.take_trash()
        if trash:
            await self._close(trash)
        await self.maintain()
        return count

    async def _close(self, trash: _Trash, wait: bool = False) -> None:
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
                    _abort(other)
                raise
        if trash and _arecorder._async_metrics_collector is not None:
            _record(self, -len(trash), 0)

    # --------------------------------------------------------- whole pool
    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the sockets of idle connections (and, by default, of borrowed ones), as
        redis.asyncio does: the connections stay in the pool and reconnect when next used. For
        shutting the pool down for good use :meth:`ashutdown`."""
        core = self._core
        in_use = [s.conn for s in core.slots() if s.in_use] if inuse_connections else []
        idle = core.take_idle()  # taken out of the pool while their sockets are closed
        try:
            await asyncio.gather(
                *(_disconnect_quietly(c, wait=True) for c in [s.conn for s in idle] + in_use)
            )
        finally:
            core.put_back(idle, monotonic())
            trash = core.take_trash()
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
        core = self._core
        core.close()
        trash = core.take_trash()
        self._stop_maintainer()
        timer, self._deadline_timer = self._deadline_timer, None
        if timer is not None:
            timer.cancel()
        self._deadlines.clear()
        await self._close(trash, wait=True)
        # Dials still running for callers that gave up: stop them (each frees its reservation
        # and closes its socket), so that no connection outlives the pool.
        orphans = list(self._orphans)
        for dial in orphans:
            dial.cancel()
        if orphans:
            await asyncio.gather(*orphans, return_exceptions=True)

    def _stop_maintainer(self) -> None:
        task, self._maint_task = self.__dict__.get("_maint_task"), None
        if task is not None and not task.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed
                task.cancel()

    @property
    def closed(self) -> bool:
        """Whether :meth:`ashutdown` was called (:meth:`aclose` leaves the pool usable)."""
        return self._core.closed

    @property
    def maintenance_task(self) -> asyncio.Task[None] | None:
        """The background maintenance task, if ``maintenance_interval`` is set and it started."""
        return self._maint_task

    def set_retry(self, retry: Any) -> None:
        """Set the retry policy of new and existing connections."""
        self.connection_kwargs.update({"retry": retry})
        for slot in self._core.slots():
            slot.conn.retry = retry

    async def re_auth_callback(self, token: Any) -> None:
        """Re-authenticate idle connections now (each taken out of the pool while it is done)
        and borrowed ones when they are released."""
        core = self._core
        in_use = [s.conn for s in core.slots() if s.in_use]
        idle = core.take_idle()
        try:
            for slot in idle:
                conn = slot.conn
                await conn.retry.call_with_retry(
                    lambda c=conn: c.send_command("AUTH", token.try_get("oid"), token.get_value()),
                    lambda error: self._mock(error),
                )
                await conn.retry.call_with_retry(
                    lambda c=conn: c.read_response(), lambda error: self._mock(error)
                )
        finally:
            core.put_back(idle, monotonic())
            trash = core.take_trash()
            if trash:
                await self._close(trash)
        for conn in in_use:
            conn.set_re_auth_token(token)

    # ----------------------------------------- redis.asyncio's pool surface
    def _get_free_connections(self) -> list[Any]:
        return [slot.conn for slot in self._core.idle_slots()]

    def _get_in_use_connections(self) -> set[Any]:
        return {slot.conn for slot in self._core.slots() if slot.in_use}

    @property
    def _available_connections(self) -> list[Any]:
        """Idle connections, next to be handed out first (redis.asyncio's attribute,
        read-only)."""
        return self._get_free_connections()

    @_available_connections.setter
    def _available_connections(self, value: Iterable[Any]) -> None:
        pass  # redis.asyncio's __init__ assigns it; the core holds the real state

    @property
    def _in_use_connections(self) -> set[Any]:
        """Borrowed connections (redis.asyncio's attribute, read-only)."""
        return self._get_in_use_connections()

    @_in_use_connections.setter
    def _in_use_connections(self, value: Iterable[Any]) -> None:
        pass

    def stats(self) -> PoolStats:
        """An immutable snapshot of the pool's counters (see :class:`~fairpool.stats.PoolStats`)."""
        return self._core.stats()


class BlockingConnectionPool(ConnectionPool):
    """fairpool's asyncio pool with ``redis.asyncio.BlockingConnectionPool``'s defaults:
    ``block=True``, ``max_connections=50``, ``timeout=20``.

    ``queue_class`` is accepted for compatibility (redis.asyncio ignores it): ``asyncio.LifoQueue``
    / ``queue.LifoQueue`` map to ``policy="lifo"`` and ``asyncio.Queue`` / ``queue.Queue`` to
    ``policy="fifo"`` when no ``policy`` is given; without either the policy is ``"fifo"``.
    """

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
            policy = _policy_from_async_queue_class(queue_class)
        super().__init__(
            connection_class,
            max_connections,
            policy=policy,
            block=block,
            timeout=timeout,
            **kwargs,
        )


def _policy_from_async_queue_class(queue_class: object) -> Policy:
    if queue_class is not None and isinstance(queue_class, type):
        if issubclass(queue_class, asyncio.LifoQueue):
            return Policy.LIFO
        if issubclass(queue_class, asyncio.Queue):
            return Policy.FIFO
    return _policy_from_queue_class(
        queue_class, "asyncio.LifoQueue, asyncio.Queue, queue.LifoQueue or queue.Queue"
    )


async def _maintenance_loop(pool_ref: weakref.ref[ConnectionPool], interval: float) -> None:
    """The optional maintenance task: one per pool, holding only a weak reference to it; it ends
    when the pool is shut down or collected (and ``aclose()`` / ``ashutdown()`` cancel it)."""
    while True:
        await asyncio.sleep(interval)
        pool = pool_ref()
        if pool is None or pool.closed:
            return
        try:
            await pool.maintain()
        except Exception as exc:
            logger.warning("fairpool: maintenance failed: %r", exc)
        del pool


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
