"""The sync pool: a drop-in for ``redis.ConnectionPool``, the thread-based I/O layer over
:class:`~fairpool.shell.PoolShell` and :class:`~fairpool.core.PoolCore`.

It subclasses redis-py's ``ConnectionPool`` to inherit what the host library expects of a pool
(``from_url`` parsing, client-side caching, maintenance
notifications, ``_checkpid`` fork handling, observability) and replaces the idle list with the
core. Every critical section is a call into the core under ``self._lock``; connecting, checking and
closing sockets happen after the lock is released. Threads (waiters, the turn keeper, the
maintenance thread) and the socket poll live in :mod:`fairpool.threads`; every decision is the
core's, every behaviour the two pools share is :class:`~fairpool.shell.PoolShell`'s.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from redis import connection as _connection
from redis.connection import Connection
from redis.connection import ConnectionPool as RedisConnectionPool

from . import leaks
from . import threads as _threads
from ._compat import (
    SYNC_SHOULD_RECONNECT,
    AfterConnectionReleasedEvent,
    CacheProxyConnection,
    get_connection_args_deprecated,
    pool_init_kwargs,
)
from ._compat import recorder as _recorder
from .config import Policy
from .endpoints import Endpoint
from .shell import BlockingShell, Kind, quietly, warn_on_arguments
from .slot import DIAL, WAIT, Slot
from .threads import (
    UNARMED,
    Maintainer,
    Probe,
    ThreadLifecycle,
    ThreadWaiter,
    chain_connect,
    peer_endpoint,
    raw_connection,
    stirred,
)
from .threads import TurnKeeper as _TurnKeeper

if TYPE_CHECKING:  # redis-py 5.0 has no ConnectionInterface
    from redis.connection import ConnectionInterface

__all__ = ["BlockingConnectionPool", "ConnectionPool", "peer_endpoint", "raw_connection"]

logger = logging.getLogger("fairpool")

_P = TypeVar("_P", bound="ConnectionPool")

# redis-py 5.0's clients pass the command name to get_connection(); later ones pass nothing and
# deprecate arguments, which fairpool then warns about too.
_GET_CONNECTION_ARGS_DEPRECATED = get_connection_args_deprecated(RedisConnectionPool)

_current_thread = threading.current_thread


class ConnectionPool(ThreadLifecycle, RedisConnectionPool):
    """A fair, drop-in replacement for ``redis.ConnectionPool``.

    Pass it to a client as ``redis.Redis(connection_pool=fairpool.ConnectionPool(...))``. The
    positional arguments and ``**connection_kwargs`` are redis-py's; fairpool's settings are
    keyword-only and documented in ``docs/settings.md``:

    * ``policy`` — ``"fifo"`` (default), ``"lifo"`` or ``"round_robin"``;
    * ``max_connections`` — cap on open connections (default 100);
    * ``max_idle`` / ``min_idle`` — idle connections kept at most / at least;
    * ``block`` / ``timeout`` — at the cap, wait (in arrival order) up to ``timeout`` seconds
      instead of raising ``MaxConnectionsError``;
    * ``turn_borrows`` — while callers wait, a thread that borrows again straight after releasing
      keeps its connection for up to this many borrows in a row (default 4; 1 = hand over on every
      release), which spares a thread switch per command;
    * ``idle_timeout``, ``max_lifetime``, ``lifetime_jitter`` — pruning (fair policies shrink by
      demand);
    * ``health_check`` / ``health_check_after`` — verify connections idle for a while before use;
    * ``maintenance_interval`` — run pruning in a daemon thread instead of lazily;
    * ``on_connect`` — a callback run on every newly (re)connected connection (e.g.
      ``fairpool.ScriptRegistry.on_connect`` to preload Lua scripts);
    * ``endpoints`` — several proxies (``["h1:6379", "h2:6379"]``) to spread new connections over
      evenly, backing off from failing ones, without a balancer in front;
    * ``leak_timeout`` — report connections borrowed longer than this (docs/operations.md);
    * ``max_waiting`` — with ``block``, refuse a borrow at once (``PoolOverloadedError``) when
      this many callers already wait;
    * ``name`` — the pool's label in ``repr()`` and the metrics exporters (docs/stats.md).

    At run time, :meth:`resize` changes the caps and :meth:`drain` replaces every connection.
    """

    _DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        connection_class: type[ConnectionInterface] = Connection,
        max_connections: int | None = None,
        cache_factory: Any = None,
        maint_notifications_config: Any = None,
        **kwargs: Any,
    ) -> None:
        connection_kwargs = self._configure(max_connections, kwargs, chain_connect)
        self._maintainer: Maintainer | None = None
        super().__init__(
            connection_class,
            max_connections=self.config.max_connections,
            **pool_init_kwargs(
                RedisConnectionPool,
                cache_factory=cache_factory,
                maint_notifications_config=maint_notifications_config,
            ),
            **connection_kwargs,
        )
        self._reject_unknown_kwargs()
        self._note_owner(RedisConnectionPool.owns_connection)

    _KIND = Kind(asynchronous=False, module=_connection)

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Start afresh (at construction, and in a forked child): no connections, zero counters."""
        # A fresh lock: in a forked child the parent's may have been held by another thread (the
        # turn keeper takes it every few milliseconds). Reentrant, like redis-py's.
        self._lock = threading.RLock()
        self._mutex = self._lock
        self._new_core()
        # each connection's readiness check, closed with the connection (its epoll descriptor
        # must not wait for the garbage collector)
        self._probes: dict[Any, Probe] = {}
        self._tending = False  # an endpoint maintenance thread is running
        self._fork_gen = _threads.fork_generation
        self._maintainer = None
        self._keeper: _TurnKeeper | None = None
        interval = self._maintenance_interval  # leak checks (leak_timeout) run in it too
        if interval is not None:
            self._maintainer = Maintainer(self, interval)
        # must stay last: other threads compare self.pid without the lock (see redis-py)
        self.pid = os.getpid()

    def __del__(self) -> None:
        try:
            maintainer = self.__dict__.get("_maintainer")
            if maintainer is not None:
                maintainer.stop()
        except Exception:
            pass

    def _checkpid(self) -> None:
        """redis-py's fork check (a forked child resets the pool); also restarts background
        maintenance on the first use after :meth:`close`."""
        super()._checkpid()
        if self._fork_gen != _threads.fork_generation:
            with self._lock:
                if self._fork_gen != _threads.fork_generation:
                    self._fork_gen = _threads.fork_generation
                    interval = self._maintenance_interval
                    if interval is not None and self._maintainer is None and not self.closed:
                        self._maintainer = Maintainer(self, interval)

    # --------------------------------------------------------------- borrow
    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """Borrow a connection, connected and ready to send a command."""
        if (command_name is not None or keys or options) and _GET_CONNECTION_ARGS_DEPRECATED:
            warn_on_arguments()
        if self._fork_gen != _threads.fork_generation:
            self._checkpid()
        now = monotonic()
        core = self._core
        waiter = None
        lock = self._lock
        lock.acquire()  # explicit, not `with`: a third cheaper on the hot path
        try:
            # The caller names itself (its Thread object, not a reusable id, so that a new thread
            # never passes for a dead one) only if the core asks: when a turn is possible.
            got = core.acquire(now, None, _current_thread)
            if got is WAIT:
                waiter = ThreadWaiter()
                core.enqueue(waiter, now)
            trash = core.take_trash() if core.trash else None
        finally:
            lock.release()
        if trash:
            self._close(trash)
        if got.__class__ is Slot:
            slot: Slot[Any] = got
            probe: Probe = slot.aux
            if slot.fresh and probe.raw._sock is probe.sock:
                ready = probe.ready  # (an attribute, not a method: loaded, then called)
                if not ready():
                    if _recorder._metrics_collector is not None:
                        self._record_borrow(now, monotonic())
                    return slot.conn
                return self._get_slow(got, None, now, True)  # the poll saw an event
        return self._get_slow(got, waiter, now)

    def _get_slow(
        self, got: Any, waiter: ThreadWaiter | None, started: float, seen: bool = False
    ) -> Any:
        """The borrow's slow path: wait, dial, or make the idle connection ready (``seen``: its
        readiness poll already saw an event)."""
        core = self._core
        now = started
        try:  # a client of the other kind (its first borrow always comes here: it dials)
            self._check_caller(2)
        except TypeError:
            self._close(self._locked(core.give_back, got, waiter, monotonic())[1])
            raise
        while True:
            if waiter is not None:
                got = self._wait(waiter)
                waiter = None
            if got is DIAL:
                dial_started = monotonic()
                conn = self._dial()
                self._borrowed(started, dial_started)
                return conn
            conn = self._prepare(got, now, seen)
            if conn is not None:
                self._borrowed(started, None)
                return conn
            seen = False
            now = monotonic()
            with self._lock:  # the next idle connection, a dial, or a place in the queue
                got = core.acquire(now)
                waiter = self._enqueue(now) if got is WAIT else None
                trash = core.take_trash()
            self._close(trash)

    def _enqueue(self, now: float) -> ThreadWaiter:
        waiter = ThreadWaiter()
        self._core.enqueue(waiter, now)
        return waiter

    def _borrowed(self, started: float, dial_started: float | None) -> None:
        """Report a borrow made on the slow path to redis-py's observability: the connection
        counts, a new connection's create time and (``BlockingConnectionPool``) the wait — the
        recorders looked up per call, as redis-py's pools do."""
        if dial_started is None:
            self._record(-1, 1)
        else:
            self._record(0, 1)
            record = getattr(_connection, "record_connection_create_time", None)
            if record is not None:
                record(connection_pool=self, duration_seconds=monotonic() - dial_started)
        wait = getattr(_connection, "record_connection_wait_time", None)
        if self._records_wait and wait is not None:
            wait(pool_name=self._pool_name(), duration_seconds=monotonic() - started)

    def _wait(self, waiter: ThreadWaiter) -> Any:
        core = self._core
        try:
            waiter.sleep(self.config.timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler raising): give back any grant.
            self._close(self._locked(core.give_back, WAIT, waiter, monotonic())[1])
            raise
        slot = waiter.slot
        if slot is not None:
            # Handed over under the releaser's lock (and counted there); the waiter lock's
            # release/acquire orders that write before this read, so no pool lock is needed.
            return slot
        with self._lock:
            return core.finish_wait(waiter, monotonic())

    def _dial(self, for_caller: bool = True, only: Endpoint | None = None) -> Any:
        """Create and connect a connection for a reserved dial (outside the lock), trying the
        targets the planner names in turn (the endpoint holding the fewest, or ``only`` that one:
        a probe). Raises the last error only when every target failed."""
        planner = self._planner
        # Without endpoints there is one target, the pool's own address, and nothing to note
        # under the lock before dialling it.
        plain = planner.endpoints is None
        order = [None] if plain else self._locked(planner.dial_order, monotonic(), only)[0]
        error: BaseException | None = None
        for target in order:
            if not plain:
                self._locked(planner.dialling, target)
            conn = None
            started = monotonic()
            try:
                conn = self._new_connection(target)
                conn.connect()
            except BaseException as exc:
                if conn is not None:
                    quietly(conn.disconnect)
                self._locked(planner.dial_error, target, monotonic())
                error = exc
                if isinstance(exc, Exception):
                    continue
                break  # KeyboardInterrupt and friends: stop trying
            raw = raw_connection(conn)
            probe = Probe(raw, self.config.health_check != "none")
            with self._lock:
                now = monotonic()
                planner.core.timings.observe_dial(now - started)
                slot = planner.connected(conn, target, now, for_caller)
                slot.aux = self._probes[conn] = probe
                slot.endpoint = peer_endpoint(raw)
                trash = self._core.take_trash()
            if not for_caller:
                self._record(1, 0)  # a new idle connection (a waiter it went to records its use)
            self._close(trash)
            return conn
        self._close(self._locked(planner.dial_abandoned)[1])
        assert error is not None
        raise error

    def _prepare(self, slot: Slot[Any], now: float, seen: bool = False) -> Any:
        """Make a borrowed idle connection ready: reconnect it if its socket is gone, poll it
        (unless the borrow's own poll already ``seen`` an event), and verify it if the poll saw
        anything or it has been idle a while (or is suspect). Returns
        ``None`` if it failed its check (it is closed; the caller tries the next one). A failed
        reconnect raises, unless the planner has the caller try another connection."""
        conn = slot.conn
        probe: Probe = slot.aux
        raw = probe.raw
        if raw._sock is None:
            planner = self._planner
            if not self._locked(planner.may_reconnect, slot)[0]:
                self._discard(conn, "error")
                return None
            try:
                conn.connect()
            except BaseException as exc:
                self._discard(conn, "error")
                if (
                    isinstance(exc, Exception)
                    and self._locked(planner.reconnect_failed, slot, monotonic())[0]
                ):
                    return None
                raise
            probe.arm()
            slot.endpoint = peer_endpoint(raw)
            slot.suspect = False
            return conn
        if raw._sock is not probe.sock:
            probe.arm()  # reconnected since it was registered (e.g. by the client's retry)
        try:
            polled = seen or bool(probe.ready())
        except (OSError, ValueError):  # the poll itself failed: the peek below decides
            polled = True
        else:
            if polled and not self._pushes_expected():
                # The end of the stream, a reset or a stale reply: unusable, whatever the
                # check would say.
                self._close(self._sweep(conn, stirred))
                return None
        due = self._core.needs_check(slot, now)
        if polled or due:
            try:
                healthy = self._verify(conn, polled, due)
            except BaseException:  # interrupted mid-check: the connection's state is unknown
                self._discard(conn, "error")
                raise
            if not healthy:
                self._discard(conn, "health_check")
                return None
            slot.suspect = False
        return conn

    def _verify(self, conn: Any, polled: bool = False, due: bool = True) -> bool:
        """The borrow check: ``False`` if the connection is unusable. ``polled``: the readiness
        poll saw an event (EOF or data), which a peek tells apart whatever ``health_check`` is;
        ``due``: the configured ``health_check`` runs too (idle long enough, or suspect)."""
        peek, check = self._check_kind(polled)
        try:
            # Pending data: under RESP3 it may be a legitimate push message (client-side caching
            # invalidations, maintenance notifications); otherwise it is a stale reply and the
            # connection is out of sync. (EOF makes can_read() raise.)
            if peek and conn.can_read() and not self._pushes_expected():
                return False
            if not due or check is None:
                return True
            if check == "ping":
                conn.send_command("PING", check_health=False)
                return conn.read_response() in (b"PONG", "PONG", True)
            return bool(check(conn))
        except Exception as exc:
            logger.debug("fairpool: borrow check failed on %r: %r", conn, exc)
            return False

    def _discard(self, conn: Any, reason: str) -> None:
        self._close(self._locked(self._core.discard, conn, reason)[1])

    def make_connection(self, endpoint: Endpoint | None = None) -> Any:
        """Create a new (unconnected) connection from the current ``connection_kwargs`` (with
        ``endpoint``'s host and port, if given), behind client-side caching's proxy when the
        pool caches. The cap is enforced by the core before this is called, not here."""
        conn = super().make_connection(endpoint)
        if self.cache is not None:
            return CacheProxyConnection(conn, self.cache, self._lock)  # type: ignore[abstract]
        return conn

    # -------------------------------------------------------------- release
    def release(self, connection: Any) -> None:
        """Give a borrowed connection back. Connections the pool does not hold as borrowed
        (foreign ones, or a second release) are ignored."""
        if self._fork_gen != _threads.fork_generation:
            self._checkpid()
        core = self._core
        slot = core.borrowed(connection)
        if slot is None:
            self._ignored_release(connection, core.slot_of(connection))
            return
        reusable = False
        try:
            if self._custom_owner and not self.owns_connection(connection):
                # e.g. Sentinel's pool after a failover: the connection points at a stale address.
                quietly(connection.disconnect)
            else:
                if SYNC_SHOULD_RECONNECT and connection.should_reconnect():
                    connection.disconnect()
                if self._release_event_needed(connection):
                    self._after_release(connection)
                reusable = True
        finally:
            # Even if the re-auth or the disconnect above raised, the pool takes the connection
            # back (closing it when it is not reusable): it is never lost.
            now = monotonic()
            keeper = None
            lock = self._lock
            lock.acquire()
            try:
                probe = slot.aux
                if probe.raw._sock is None and probe.sock is not UNARMED:
                    core.broken(slot)  # a command on it failed: its older siblings are suspect
                taken = core.release_slot(slot, now, reusable, None, _current_thread)
                if core.held is not None and self._keeper is None:
                    keeper = self._keeper = _TurnKeeper(self)
                if core.later:  # idle connections a borrow found dead (PoolShell._sweep)
                    core.flush_later()
                trash = core.take_trash() if core.trash else None
            finally:
                lock.release()
            if taken and _recorder._metrics_collector is not None:
                self._record(1, -1)  # before the close below counts a dropped one out of idle
            if keeper is not None:
                self._start_keeper(keeper)
            if trash:
                self._close(trash)
            if core.leaks_back:  # a connection reported as leaked came back
                self._report_leaks()
        if taken and now >= core.next_maintenance:
            self._maintain(background=True)

    # ------------------------------------------------------------- controls
    def _get_watched(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """:meth:`get_connection` with ``leak_timeout`` on: note where the connection was
        borrowed (or that the borrower is exempt, see :mod:`fairpool.leaks`)."""
        stack = leaks.borrower(sys._getframe(1), command_name)
        conn = type(self).get_connection(self, command_name, *keys, **options)
        self._watch(conn, stack)
        return conn

    def _resized(self, trash: list[tuple[Any, str]]) -> None:
        self._close(trash)
        self._maintain(background=True)

    def drain(self, endpoint: Any = None) -> int:
        """Replace every connection with a fresh one, e.g. after a password rotation, a DNS
        change or a proxy deploy (psycopg_pool's ``drain()``; docs/operations.md): idle ones are
        closed now, borrowed ones when they come back, and no caller fails. ``min_idle`` is
        dialled again before this returns. ``endpoint`` (``"host:port"`` or ``(host, port)``)
        limits it to one endpoint's connections. Returns how many are being replaced."""
        count, trash = self._drain_core(endpoint)
        self._close(trash)
        self._maintain(background=True)
        return count

    def _after_release(self, connection: Any) -> None:
        """Dispatch ``AfterConnectionReleasedEvent`` (streaming credential re-auth listens to it)
        before the connection can be handed to anyone else (called when it would do anything)."""
        dispatcher: Any = self._event_dispatcher
        dispatcher.dispatch(AfterConnectionReleasedEvent(connection))  # type: ignore[no-untyped-call]


class BlockingConnectionPool(BlockingShell, ConnectionPool):
    """fairpool's pool with redis-py ``BlockingConnectionPool``'s defaults: ``block=True``,
    ``max_connections=50``, ``timeout=20``; like redis-py's, it reports each borrow's wait time
    to redis-py's observability when that is enabled.

    ``queue_class`` is accepted for compatibility: ``queue.LifoQueue`` (redis-py's default) maps to
    ``policy="lifo"`` and ``queue.Queue`` to ``policy="fifo"`` when no ``policy`` is given.
    """

    _QUEUES = ((queue.LifoQueue, Policy.LIFO), (queue.Queue, Policy.FIFO))
    _QUEUE_NAMES = "queue.LifoQueue or queue.Queue"
    _DEFAULT_CONNECTION = Connection
