"""The sync pool: a drop-in for ``redis.ConnectionPool`` driven by :class:`~fairpool.core.PoolCore`.

It subclasses redis-py's ``ConnectionPool`` to inherit what the host library expects of a pool
(``from_url`` parsing, ``__repr__`` with redacted passwords, client-side caching, maintenance
notifications, ``_checkpid`` fork handling, observability) and replaces the idle list with the
core. Every critical section is a call into the core under ``self._lock``; connecting, checking and
closing sockets happen after the lock is released.
"""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from redis import connection as _connection
from redis.connection import (
    Connection,
    parse_url,
)
from redis.connection import ConnectionPool as RedisConnectionPool

from . import leaks
from ._compat import (
    SYNC_SHOULD_RECONNECT,
    AfterConnectionReleasedEvent,
    CacheProxyConnection,
    ConnectionState,
    ReAuthConnectionListener,
    get_connection_args_deprecated,
    get_pool_name,
    maint_notifications_enabled,
    pool_init_kwargs,
    redacted_repr,
    repr_leaks_secrets,
)
from ._compat import recorder as _recorder
from .config import (
    HealthCheck,
    Policy,
    PoolConfig,
    check_connection_kwargs,
    drain_target,
    make_config,
    resized_config,
    url_kwargs,
)
from .core import DIAL, WAIT, PoolCore, Slot, Waiter
from .endpoints import REBALANCE_PERIOD, Endpoint, EndpointSet
from .stats import PoolStats

if TYPE_CHECKING:  # redis-py 5.0 has no ConnectionInterface
    from redis.connection import ConnectionInterface

__all__ = ["BlockingConnectionPool", "ConnectionPool"]

logger = logging.getLogger("fairpool")

_P = TypeVar("_P", bound="ConnectionPool")

_POOL_KEYWORDS = ("connection_class", "max_connections", "cache_factory", "queue_class")
"""Pool arguments that are not settings, offered as suggestions for a misspelt keyword."""

_CLOSED = -1
"""``ConnectionPool._fork_gen`` after :meth:`ConnectionPool.close`: the next borrow or release
goes through ``_checkpid()``, which restarts background maintenance."""

# Fork detection without a getpid() system call per borrow: the child bumps a generation number.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)

# redis-py 5.0's clients pass the command name to get_connection(); later ones pass nothing and
# deprecate arguments, which fairpool then warns about too.
_GET_CONNECTION_ARGS_DEPRECATED = get_connection_args_deprecated(RedisConnectionPool)


def guarded_connection_kwargs(wrong_client: Callable[[str], bool], what: str, instead: str) -> Any:
    """The pools' ``connection_kwargs`` property: redis-py's (a live dict, see
    ``docs/migrating.md``), except that a client of the other kind (sync or asyncio) reading it
    — every client does in its constructor — gets ``TypeError`` naming the pool to use instead,
    before it can borrow anything. ``wrong_client(module name of the reader)`` tells them apart."""

    def get(pool: Any) -> dict[str, Any]:
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if wrong_client(caller):
            raise TypeError(
                f"{type(pool).__module__}.{type(pool).__name__} is {what} ({caller}): use {instead}"
            )
        kwargs: dict[str, Any] = pool._connection_kwargs
        return kwargs

    def set(pool: Any, value: dict[str, Any]) -> None:
        pool._connection_kwargs = value

    return property(get, set, doc="The keyword arguments new connections are built with (live).")


def reject_unknown_kwargs(pool: Any, siblings: tuple[type, ...]) -> None:
    """Check the keyword arguments that will reach ``pool``'s connection class (see
    :func:`fairpool.config.check_connection_kwargs`); on a bad one stop the pool's background
    maintenance, already started, and raise."""
    try:
        check_connection_kwargs(
            type(pool).__name__,
            pool.connection_class,
            pool.connection_kwargs,
            _POOL_KEYWORDS,
            siblings,
        )
    except TypeError:
        pool._stop_maintainer()
        raise


class _ThreadWaiter(Waiter):
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

_UNARMED = object()
"""Stands in for a socket :class:`_Probe` has not registered: never ``is`` a real one."""


def _no_events(timeout: float) -> list[tuple[int, int]]:
    return []


class _Probe:
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
        self.sock: Any = _UNARMED
        self.poll: Callable[[float], list[tuple[int, int]]] = _no_events
        self.arm()

    def arm(self) -> None:
        """Register the connection's current socket (after a dial or a reconnect)."""
        sock = self.raw._sock
        self.sock = _UNARMED
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


def _collector() -> Any:
    """redis-py's metrics collector, created on first use as redis-py's own recorder does (so that
    the first borrow is counted like the rest); ``None`` while observability is off."""
    collector = _recorder._metrics_collector
    if collector is None:
        collector = _recorder._metrics_collector = _recorder._get_or_create_collector()
    return collector


def _record(pool: Any, idle_delta: int, used_delta: int) -> None:
    """Report connection-state changes to redis-py's observability, only when it is enabled.
    The borrow fast path and release call this only once the collector exists; the other paths
    (dials, checks, hand-overs to waiters) always, which costs ~0.15 µs while it is off."""
    collector = _collector()
    if collector is not None:
        record_counts(collector, pool, idle_delta, used_delta)


def record_counts(collector: Any, pool: Any, idle_delta: int, used_delta: int) -> None:
    """Add to ``pool``'s idle and used connection-count gauges in redis-py's metrics
    ``collector`` (the sync or the asyncio one: both shells report through this)."""
    try:
        name = get_pool_name(pool)
        if idle_delta:
            collector.record_connection_count(
                pool_name=name, connection_state=ConnectionState.IDLE, counter=idle_delta
            )
        if used_delta:
            collector.record_connection_count(
                pool_name=name, connection_state=ConnectionState.USED, counter=used_delta
            )
    except Exception:  # as redis-py's recorder: metrics never break a command
        pass


class ConnectionPool(RedisConnectionPool):
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
      this many callers already wait.

    At run time, :meth:`resize` changes the caps and :meth:`drain` replaces every connection.
    """

    _DEFAULTS: ClassVar[dict[str, Any]] = {}
    cache: Any = None  # client-side caching's cache (redis-py 5.0's pool has no such attribute)
    if repr_leaks_secrets(RedisConnectionPool):  # redis-py 6.x shows passwords; fairpool never
        __repr__ = redacted_repr

    def __init__(
        self,
        connection_class: type[ConnectionInterface] = Connection,
        max_connections: int | None = None,
        cache_factory: Any = None,
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
        endpoints: Any = None,
        on_connect: Callable[[Any], object] | None = None,
        leak_timeout: float | None = None,
        max_waiting: int | None = None,
        **connection_kwargs: Any,
    ) -> None:
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
            endpoints=endpoints,
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
        self._maintainer: _Maintainer | None = None
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
        reject_unknown_kwargs(self, (_connection.Connection, _connection.SSLConnection))
        _collector()  # if observability is on, the hot paths record from the first borrow

    @classmethod
    def from_url(cls: type[_P], url: str, **kwargs: Any) -> _P:
        """Build a pool from a ``redis://``, ``rediss://`` or ``unix://`` URL.

        fairpool's settings may be given as query parameters and are converted to their types
        (``?policy=round_robin&max_idle=8&block=true&timeout=2``); the rest is redis-py's
        ``ConnectionPool.from_url``.
        """
        return cls(**url_kwargs(parse_url, url, kwargs))

    # ----------------------------------------------------------------- state
    def reset(self) -> None:
        """Start afresh (at construction, and in a forked child): no connections, zero counters."""
        # A fresh lock: in a forked child the parent's may have been held by another thread (the
        # turn keeper takes it every few milliseconds). Reentrant, like redis-py's.
        self._lock = threading.RLock()
        endpoints = self.config.endpoints
        self._endpoints = EndpointSet(endpoints) if endpoints else None
        self._tending = False  # an endpoint maintenance thread is running
        self._core: PoolCore[Any] = PoolCore(
            self.config, period=REBALANCE_PERIOD if endpoints else None
        )
        self._fork_gen = _fork_generation
        self._maintainer = None
        self._keeper: _TurnKeeper | None = None
        interval = self._maintenance_interval  # [controls] leak checks run in it too
        if interval is not None:
            self._maintainer = _Maintainer(self, interval)
        # must stay last: other threads compare self.pid without the lock (see redis-py)
        self.pid = os.getpid()

    def __del__(self) -> None:
        try:
            maintainer = self.__dict__.get("_maintainer")
            if maintainer is not None:
                maintainer.stop()
        except Exception:
            pass

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
        lambda caller: caller.startswith("redis.asyncio"),
        "a sync pool and cannot serve redis.asyncio clients",
        "fairpool.asyncio.ConnectionPool (or fairpool.asyncio.BlockingConnectionPool)",
    )

    def _checkpid(self) -> None:
        """redis-py's fork check (a forked child resets the pool); also restarts background
        maintenance on the first use after :meth:`close`."""
        super()._checkpid()
        if self._fork_gen != _fork_generation:
            with self._lock:
                if self._fork_gen != _fork_generation:
                    self._fork_gen = _fork_generation
                    interval = self._maintenance_interval  # [controls]
                    if interval is not None and self._maintainer is None and not self.closed:
                        self._maintainer = _Maintainer(self, interval)

    # --------------------------------------------------------------- borrow
    def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """Borrow a connection, connected and ready to send a command."""
        if (command_name is not None or keys or options) and _GET_CONNECTION_ARGS_DEPRECATED:
            warnings.warn(
                "get_connection() arguments are deprecated and ignored",
                DeprecationWarning,
                stacklevel=2,
            )
        if self._fork_gen != _fork_generation:
            self._checkpid()
        now = monotonic()
        core = self._core
        waiter = None
        with self._lock:
            # The caller's identity matters only if a connection is held for a turn; the Thread
            # object (not its reusable id) so that a new thread can never pass for a dead one.
            got = core.acquire(now, threading.current_thread() if core.held is not None else None)
            if got is WAIT:
                waiter = _ThreadWaiter()
                core.enqueue(waiter, now)
            trash = core.take_trash() if core.trash else None
        if trash:
            self._close(trash)
        if got.__class__ is Slot:
            slot: Slot[Any] = got
            probe: _Probe = slot.aux
            if (
                now - slot.released < self._check_after
                and not slot.suspect
                and probe.raw._sock is probe.sock
                and not probe.poll(0)
            ):
                if _recorder._metrics_collector is not None:
                    _record(self, -1, 1)
                return slot.conn
        return self._get_slow(got, waiter, now)

    def _get_slow(self, got: Any, waiter: _ThreadWaiter | None, now: float) -> Any:
        core = self._core
        while True:
            if waiter is not None:
                got = self._wait(waiter)
                waiter = None
            if got is DIAL:
                started = monotonic()
                conn = self._dial()
                _record(self, 0, 1)
                record = getattr(_connection, "record_connection_create_time", None)
                if record is not None:  # looked up per call, as redis-py's pool does
                    record(connection_pool=self, duration_seconds=monotonic() - started)
                return conn
            conn = self._prepare(got, now)
            if conn is not None:
                _record(self, -1, 1)
                return conn
            now = monotonic()
            with self._lock:
                got = core.acquire(now)
                if got is WAIT:
                    waiter = _ThreadWaiter()
                    core.enqueue(waiter, now)
                trash = core.take_trash() if core.trash else None
            if trash:
                self._close(trash)

    def _wait(self, waiter: _ThreadWaiter) -> Any:
        core = self._core
        try:
            waiter.sleep(self.config.timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler raising): give back any grant.
            with self._lock:
                granted = core.cancel_wait(waiter, monotonic())
                if granted is DIAL:
                    core.dial_failed()
                elif granted is not None:
                    core.release(granted.conn, monotonic())  # type: ignore[union-attr]
                trash = core.take_trash()
            self._close(trash)
            raise
        slot = waiter.slot
        if slot is not None:
            # Handed over under the releaser's lock (and counted there); the waiter lock's
            # release/acquire orders that write before this read, so no pool lock is needed.
            return slot
        with self._lock:
            return core.finish_wait(waiter, monotonic())

    def _dial(self) -> Any:
        """Create and connect a connection for a reserved :data:`DIAL` (outside the lock)."""
        if self._endpoints is not None:
            return self._dial_endpoints()
        core = self._core
        conn = None
        try:
            conn = self.make_connection()
            conn.connect()
        except BaseException:
            if conn is not None:
                _quietly(conn.disconnect)
            with self._lock:
                core.dial_failed()
                trash = core.take_trash()
            self._close(trash)
            raise
        raw = raw_connection(conn)
        probe = self._probe(raw)
        with self._lock:
            slot = core.dialled(conn, monotonic())
            slot.aux = probe
            slot.endpoint = peer_endpoint(raw)
        return conn

    def _probe(self, raw: Any) -> _Probe:
        """The readiness poll for a newly connected connection (see :class:`_Probe`)."""
        return _Probe(raw, self.config.health_check != "none")

    def _dial_endpoints(self, for_caller: bool = True, only: Endpoint | None = None) -> Any:
        """Dial the endpoint holding the fewest connections (or ``only`` that one: a probe); on
        failure back it off and try the next one. Raises the last error only when every endpoint
        tried failed."""
        core, endpoints = self._core, self._endpoints
        assert endpoints is not None
        with self._lock:
            if only is not None:
                order = [only]
            else:
                order = endpoints.dial_order(_staying(core.slots()), monotonic())
        error: BaseException | None = None
        for endpoint in order:
            with self._lock:
                endpoints.dialling(endpoint)
            conn = None
            try:
                conn = self.make_connection(endpoint)
                conn.connect()
            except BaseException as exc:
                if conn is not None:
                    _quietly(conn.disconnect)
                with self._lock:
                    endpoints.dialled(endpoint, False, monotonic())
                if not isinstance(exc, Exception):
                    error = exc
                    break  # KeyboardInterrupt and friends: stop trying
                error = exc
                continue
            raw = raw_connection(conn)
            probe = self._probe(raw)
            with self._lock:
                now = monotonic()
                endpoints.dialled(endpoint, True, now)
                slot = core.dialled(conn, now) if for_caller else core.dialled_idle(conn, now)
                slot.aux = probe
                slot.endpoint = peer_endpoint(raw)
                slot.target = endpoint
                trash = core.take_trash()
            if not for_caller:
                _record(self, 1, 0)  # a new idle connection (a waiter it went to records its use)
            self._close(trash)
            return conn
        with self._lock:
            core.dial_failed()
            trash = core.take_trash()
        self._close(trash)
        assert error is not None
        raise error

    def _prepare(self, slot: Slot[Any], now: float) -> Any:
        """Make a borrowed idle connection ready: reconnect it if its socket is gone, poll it, and
        verify it if the poll saw anything or it has been idle a while (or is suspect). Returns
        ``None`` if it failed its check (it is closed; the caller tries the next one). A failed
        reconnect raises."""
        conn = slot.conn
        probe: _Probe = slot.aux
        raw = probe.raw
        if raw._sock is None:
            endpoints = self._endpoints
            if endpoints is not None and slot.target is not None and not endpoints.up(slot.target):
                # Its endpoint is down: no reconnect in place; the caller gets a connection to
                # another endpoint (the endpoint's probe tells when it is back).
                self._discard(conn, "error")
                return None
            try:
                conn.connect()
            except BaseException as exc:
                self._discard(conn, "error")
                if self._endpoints is not None and isinstance(exc, Exception):
                    # Its endpoint is down: back it off and let the caller get a connection to
                    # another endpoint instead of this error.
                    with self._lock:
                        self._endpoints.report(slot.target, False, monotonic())
                    return None
                raise
            probe.arm()
            slot.endpoint = peer_endpoint(raw)
            slot.suspect = False
            return conn
        if raw._sock is not probe.sock:
            probe.arm()  # reconnected since it was registered (e.g. by the client's retry)
        try:
            polled = bool(probe.poll(0))
        except (OSError, ValueError):
            polled = True
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
        check = self.config.health_check
        try:
            # Pending data: under RESP3 it may be a legitimate push message (client-side caching
            # invalidations, maintenance notifications); otherwise it is a stale reply and the
            # connection is out of sync. (EOF makes can_read() raise.)
            if (
                (polled or check == "peek")
                and conn.can_read()
                and not (self.cache is not None or maint_notifications_enabled(self))
            ):
                return False
            if not due or check in ("peek", "none"):
                return True
            if check == "ping":
                conn.send_command("PING", check_health=False)
                return conn.read_response() in (b"PONG", "PONG", True)
            assert callable(check)
            return bool(check(conn))
        except Exception as exc:
            logger.debug("fairpool: borrow check failed on %r: %r", conn, exc)
            return False

    def _discard(self, conn: Any, reason: str) -> None:
        with self._lock:
            self._core.discard(conn, reason)
            trash = self._core.take_trash()
        self._close(trash)

    def make_connection(self, endpoint: Endpoint | None = None) -> Any:
        """Create a new (unconnected) connection from the current ``connection_kwargs`` (with
        ``endpoint``'s host and port, if given).

        The cap is enforced by the core before this is called, not here.
        """
        kwargs = dict(self.connection_kwargs)
        if endpoint is not None:
            kwargs["host"], kwargs["port"] = endpoint
        if self.cache is not None:
            return CacheProxyConnection(  # type: ignore[abstract]
                self.connection_class(**kwargs), self.cache, self._lock
            )
        return self.connection_class(**kwargs)

    # -------------------------------------------------------------- release
    def release(self, connection: Any) -> None:
        """Give a borrowed connection back. Connections the pool does not hold as borrowed
        (foreign ones, or a second release) are ignored."""
        if self._fork_gen != _fork_generation:
            self._checkpid()
        core = self._core
        slot = core._slots.get(connection)  # core.slot_of(), without the call
        if slot is None or not slot.in_use or slot is core.held:
            logger.debug(
                "fairpool: ignoring release of %r: %s",
                connection,
                "not a connection of this pool" if slot is None else "it is not borrowed",
            )
            return
        reusable = False
        try:
            if not self.owns_connection(connection):
                # e.g. Sentinel's pool after a failover: the connection points at a stale address.
                _quietly(connection.disconnect)
            else:
                if SYNC_SHOULD_RECONNECT and connection.should_reconnect():
                    connection.disconnect()
                self._after_release(connection)
                reusable = True
        finally:
            # Even if the re-auth or the disconnect above raised, the pool takes the connection
            # back (closing it when it is not reusable): it is never lost.
            now = monotonic()
            keeper = None
            with self._lock:
                # a turn is possible only while callers wait (see turn_borrows)
                owner = threading.current_thread() if core._waiters else None
                probe = slot.aux
                if probe.raw._sock is None and probe.sock is not _UNARMED:
                    core.broken(slot)  # a command on it failed: its older siblings are suspect
                taken = core.release(connection, now, reusable, owner)
                if core.held is not None and self._keeper is None:
                    keeper = self._keeper = _TurnKeeper(self)
                trash = core.take_trash() if core.trash else None
            if taken and _recorder._metrics_collector is not None:
                _record(self, 1, -1)  # before the close below counts a dropped one out of idle
            if keeper is not None:
                self._start_keeper(keeper)
            if trash:
                self._close(trash)
            if core.leaks_back:  # [controls] a connection reported as leaked came back
                self._report_leaks()
        if taken and now >= core.next_maintenance:
            self._maintain(background=True)

    def _start_keeper(self, keeper: _TurnKeeper) -> None:
        """Start the turn keeper; if no thread can be started, end the turn now instead (a held
        connection must never wait for a keeper that does not run)."""
        try:
            keeper.start()
        except Exception as exc:
            logger.warning("fairpool: cannot start the turn keeper thread: %r", exc)
            with self._lock:
                if self._keeper is keeper:
                    self._keeper = None
                self._core.expire_hold(monotonic(), 0.0)
                trash = self._core.take_trash()
            self._close(trash)

    def _after_release(self, connection: Any) -> None:
        """Dispatch ``AfterConnectionReleasedEvent`` (streaming credential re-auth listens to it)
        before the connection can be handed to anyone else — unless the only listener is
        redis-py's default re-auth listener and the connection has no pending token, when the
        dispatch would do nothing."""
        dispatcher = getattr(self, "_event_dispatcher", None)  # none before redis-py 5.1
        if dispatcher is None:
            return
        listeners = getattr(dispatcher, "_event_listeners_mapping", {}).get(
            AfterConnectionReleasedEvent, ()
        )
        if not listeners:
            return
        if (
            len(listeners) == 1
            and type(listeners[0]) is ReAuthConnectionListener
            and getattr(connection, "_re_auth_token", True) is None
        ):
            return
        dispatcher.dispatch(AfterConnectionReleasedEvent(connection))  # type: ignore[no-untyped-call]

    # ---------------------------------------------------------- maintenance
    def maintain(self) -> None:
        """Run pruning and the ``min_idle`` refill now (normally done lazily on release, or by
        the maintenance thread): close what the core retires, dial what ``min_idle`` needs; with
        ``endpoints``, probe every endpoint that is down (one dial each) and rebalance."""
        self._maintain(background=False, force=True)

    def _maintain(self, background: bool, force: bool = False) -> None:
        """:meth:`maintain`; with ``background`` (a release found it due) the endpoint probes
        and rebalancing dials run in a short-lived thread, so that no caller waits for them;
        ``force`` probes endpoints still in back-off too (an explicit ``maintain()``)."""
        if self._fork_gen != _fork_generation:
            self._checkpid()
        core = self._core
        with self._lock:
            need = core.maintain(monotonic())
            trash = core.take_trash()
        self._close(trash)
        if core.leaked:  # [controls] leak_timeout passed
            self._report_leaks()
        for i in range(need):
            if self._endpoints is not None:
                try:
                    self._dial_endpoints(for_caller=False)
                except Exception as exc:  # every endpoint failed; it gave back its reservation
                    logger.warning("fairpool: min_idle refill failed: %r", exc)
                    with self._lock:
                        for _ in range(need - i - 1):
                            core.dial_failed()
                    return
                continue
            conn = None
            try:
                conn = self.make_connection()
                conn.connect()
            except Exception as exc:
                logger.warning("fairpool: min_idle refill failed: %r", exc)
                if conn is not None:
                    _quietly(conn.disconnect)
                with self._lock:
                    for _ in range(need - i):  # give back this and every remaining reservation
                        core.dial_failed()
                    trash = core.take_trash()
                self._close(trash)
                return
            raw = raw_connection(conn)
            probe = self._probe(raw)
            with self._lock:
                slot = core.dialled_idle(conn, monotonic())
                slot.aux = probe
                slot.endpoint = peer_endpoint(raw)
                trash = core.take_trash()
            _record(self, 1, 0)  # a new idle connection (a waiter it went to records its use)
            self._close(trash)
        if self._endpoints is not None:
            if not background:
                self._tend_endpoints(force)
                return
            with self._lock:
                if self._tending:
                    return
                self._tending = True
            try:
                threading.Thread(
                    target=self._tend_endpoints_then_clear,
                    name=f"fairpool-endpoints-{id(self):x}",
                    daemon=True,
                ).start()
            except Exception as exc:  # no thread to be had: do it here rather than never
                logger.warning("fairpool: cannot start the endpoint thread: %r", exc)
                self._tend_endpoints_then_clear()

    # ------------------------------------------------------------- [controls]
    @property
    def _maintenance_interval(self) -> float | None:
        """How often the maintenance thread runs (``maintenance_interval``; more often with
        ``leak_timeout``), or ``None`` for no thread."""
        return leaks.check_interval(self.config.leak_timeout, self.config.maintenance_interval)

    def _get_watched(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        """:meth:`get_connection` with ``leak_timeout`` on: note where the connection was
        borrowed (or that the borrower is exempt, see :mod:`fairpool.leaks`)."""
        stack = leaks.borrower(sys._getframe(1), command_name)
        conn = type(self).get_connection(self, command_name, *keys, **options)
        with self._lock:
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
        with self._lock:
            self._core.exempt(connection)

    def _report_leaks(self) -> None:
        with self._lock:
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
        serves waiting callers at once; shrinking closes surplus idle connections now and
        surplus borrowed ones when they come back, so that no more than ``max_connections`` are
        open once they are back; a higher ``min_idle`` is dialled now."""
        config = resized_config(
            self.config, max_connections=max_connections, min_idle=min_idle, max_idle=max_idle
        )
        with self._lock:
            self.config = config
            self.max_connections = config.max_connections
            self._core.resize(config, monotonic())
            trash = self._core.take_trash()
        self._close(trash)
        self._maintain(background=True)

    def drain(self, endpoint: Any = None) -> int:
        """Replace every connection with a fresh one without failing any caller (psycopg_pool's
        ``drain()``), e.g. after a password rotation, a DNS change or a proxy deploy: idle
        connections are closed now, borrowed ones when they come back; ``min_idle`` is dialled
        again now, other connections when next needed. With ``endpoint`` (``"host:port"`` or
        ``(host, port)``: one of ``endpoints``, or the address connections are connected to)
        only its connections are replaced. Returns how many connections are being replaced."""
        target = drain_target(endpoint, self.config.endpoints)
        with self._lock:
            count = self._core.drain(target)
            trash = self._core.take_trash()
        self._close(trash)
        self._maintain(background=True)
        return count

    def _tend_endpoints_then_clear(self) -> None:
        try:
            self._tend_endpoints(force=False)
        except Exception as exc:
            logger.warning("fairpool: endpoint maintenance failed: %r", exc)
        finally:
            with self._lock:
                self._tending = False

    def _tend_endpoints(self, force: bool) -> None:
        """Probe the endpoints that are down and due (every one that is down when ``force``),
        then rebalance."""
        endpoints = self._endpoints
        assert endpoints is not None
        with self._lock:
            due = endpoints.probes_due(monotonic(), force)
        for endpoint in due:
            self._probe_endpoint(endpoint)
        self._rebalance()

    def _probe_endpoint(self, endpoint: Endpoint) -> None:
        """The half-open probe: one dial to an endpoint that is down. With spare capacity the
        connection joins the pool; at the cap it is a throwaway connection, closed at once."""
        core, endpoints = self._core, self._endpoints
        assert endpoints is not None
        with self._lock:
            if self._core.closed:
                return
            reserved = core.reserve_dial()
        if reserved:
            try:
                self._dial_endpoints(for_caller=False, only=endpoint)
            except Exception as exc:  # reported: the endpoint stays down, backed off further
                logger.info("fairpool: probe of %s failed: %r", endpoint, exc)
            return
        with self._lock:
            endpoints.dialling(endpoint)
        conn = self.make_connection(endpoint)
        ok = False
        try:
            conn.connect()
            ok = True
        except Exception as exc:
            logger.info("fairpool: probe of %s failed: %r", endpoint, exc)
        finally:
            _quietly(conn.disconnect)
            with self._lock:
                endpoints.dialled(endpoint, ok, monotonic())

    def _rebalance(self) -> None:
        """Move connections from the most crowded endpoint to a sparse one that is up (one that
        recovered, or was added) until the spread is within one: idle connections are closed at
        once, borrowed ones when they are released (``rebalance`` in ``stats().closed``), and
        each is replaced by a dial to the sparse endpoint. Spare capacity is used first. Gives
        up after :data:`REBALANCE_BUDGET` seconds (the next maintenance goes on)."""
        core, endpoints = self._core, self._endpoints
        assert endpoints is not None
        deadline = monotonic() + REBALANCE_BUDGET
        retiring: list[Slot[Any]] = []  # borrowed connections retired, not yet released
        while monotonic() < deadline:
            with self._lock:
                if core.closed:
                    return
                retiring = [s for s in retiring if core.slot_of(s.conn) is s]
                plan = endpoints.rebalance(_staying(core.slots()), monotonic())
                if plan is None and not retiring:
                    return
                reserved = plan is not None and core.reserve_dial()
                if plan is not None and not reserved:
                    crowded, _sparse = plan
                    victims = [s for s in core.idle_slots() if s.target == crowded] or [
                        s for s in core.slots() if s.target == crowded and s.retire is None
                    ]
                    if not victims or not core.retire(victims[0], "rebalance"):
                        return
                    if victims[0].in_use:
                        retiring.append(victims[0])
                    reserved = core.reserve_dial()
                trash = core.take_trash()
            self._close(trash)
            if not reserved:
                time.sleep(0.005)  # a retired borrowed connection frees its capacity on release
                continue
            try:
                self._dial_endpoints(for_caller=False)
            except Exception as exc:
                logger.info("fairpool: rebalancing dial failed: %r", exc)
                return

    def _close(self, trash: list[tuple[Any, str]]) -> None:
        for conn, _reason in trash:
            _quietly(conn.disconnect)
        if trash and _recorder._metrics_collector is not None:
            _record(self, -len(trash), 0)

    # --------------------------------------------------------- whole pool
    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the sockets of idle connections (and, by default, of borrowed ones), as
        redis-py does: the connections stay in the pool and reconnect when next used. For
        shutting the pool down for good use :meth:`shutdown`."""
        self._checkpid()
        with self._lock:
            in_use = self._get_in_use_connections() if inuse_connections else set()
            idle = self._core.take_idle()
        try:
            for slot in idle:
                _quietly(slot.conn.disconnect)
            for conn in in_use:
                _quietly(conn.disconnect)
        finally:
            with self._lock:
                self._core.put_back(idle, monotonic())
                trash = self._core.take_trash()
            self._close(trash)

    def close(self) -> None:
        """Disconnect every connection, idle and borrowed, as redis-py's ``close()`` does: the
        pool stays usable and connections reconnect when next used; waiting callers keep
        waiting. The maintenance thread stops and starts again on the next borrow or release.
        ``redis.Redis.close()`` calls this when the client owns its pool, and so does leaving
        ``with pool:``. To close the pool for good use :meth:`shutdown`."""
        self.disconnect()
        with self._lock:
            self._fork_gen = _CLOSED
            maintainer, self._maintainer = self._maintainer, None
        if maintainer is not None:
            maintainer.stop()

    def shutdown(self) -> None:
        """Close the pool for good: idle connections now, borrowed ones when they come back;
        waiting callers and later borrows get :class:`~fairpool.errors.PoolClosedError`.
        Shutting down twice is harmless. (fairpool's ``close()`` did this in earlier versions;
        redis-py's pools have no equivalent.)"""
        self._checkpid()
        with self._lock:
            self._core.close()
            trash = self._core.take_trash()
        self._stop_maintainer()
        self._close(trash)

    def _stop_maintainer(self) -> None:
        maintainer, self._maintainer = self.__dict__.get("_maintainer"), None
        if maintainer is not None:
            maintainer.stop()

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called (:meth:`close` leaves the pool usable)."""
        return self._core.closed

    def set_retry(self, retry: Any) -> None:
        """Set the retry policy of new and existing connections."""
        self.connection_kwargs.update({"retry": retry})
        with self._lock:
            conns = [slot.conn for slot in self._core.slots()]
        for conn in conns:
            conn.retry = retry

    def re_auth_callback(self, token: Any) -> None:
        """Re-authenticate idle connections now (outside the lock, each taken out of the pool
        while it is done) and borrowed ones when they are released."""
        with self._lock:
            in_use = self._get_in_use_connections()
            idle = self._core.take_idle()
        try:
            for slot in idle:
                conn = slot.conn
                conn.retry.call_with_retry(
                    lambda c=conn: c.send_command("AUTH", token.try_get("oid"), token.get_value()),
                    lambda error: self._mock(error),
                )
                conn.retry.call_with_retry(
                    lambda c=conn: c.read_response(), lambda error: self._mock(error)
                )
        finally:
            with self._lock:
                self._core.put_back(idle, monotonic())
                trash = self._core.take_trash()
            self._close(trash)  # put back into a closed pool, past their lifetime, over max_idle
        for conn in in_use:
            conn.set_re_auth_token(token)

    # ------------------------------------------------ redis-py's pool surface
    def _get_free_connections(self) -> list[Any]:
        with self._lock:
            return [slot.conn for slot in self._core.idle_slots()]

    def _get_in_use_connections(self) -> set[Any]:
        with self._lock:
            return {slot.conn for slot in self._core.slots() if slot.in_use}

    @property
    def _available_connections(self) -> list[Any]:  # type: ignore[override]
        """Idle connections, next to be handed out first (redis-py's attribute, read-only)."""
        return self._get_free_connections()

    @property
    def _in_use_connections(self) -> set[Any]:  # type: ignore[override]
        """Borrowed connections (redis-py's attribute, read-only)."""
        return self._get_in_use_connections()

    @property
    def _created_connections(self) -> int:
        """Open connections plus those being dialled (redis-py's attribute, read-only)."""
        return self._core.open_count + self._core.dialling

    @_created_connections.setter
    def _created_connections(self, value: int) -> None:
        pass  # redis-py's own bookkeeping writes it; the core keeps the real count

    def stats(self) -> PoolStats:
        """An immutable snapshot of the pool's counters (see :class:`~fairpool.stats.PoolStats`)."""
        with self._lock:
            return self._core.stats()

    def __enter__(self: _P) -> _P:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class BlockingConnectionPool(ConnectionPool):
    """fairpool's pool with redis-py ``BlockingConnectionPool``'s defaults: ``block=True``,
    ``max_connections=50``, ``timeout=20``.

    ``queue_class`` is accepted for compatibility: ``queue.LifoQueue`` (redis-py's default) maps to
    ``policy="lifo"`` and ``queue.Queue`` to ``policy="fifo"`` when no ``policy`` is given.
    """

    def __init__(
        self,
        max_connections: int | None = 50,
        timeout: float | None = 20,
        connection_class: type[ConnectionInterface] = Connection,
        queue_class: type | None = None,
        *,
        block: bool = True,
        policy: Policy | str | None = None,
        **kwargs: Any,
    ) -> None:
        if policy is None:
            policy = _policy_from_queue_class(queue_class)
        super().__init__(
            connection_class,
            max_connections,
            policy=policy,
            block=block,
            timeout=timeout,
            **kwargs,
        )


def _policy_from_queue_class(
    queue_class: object, accepted: str = "queue.LifoQueue or queue.Queue"
) -> Policy:
    import queue

    if queue_class is None:
        return Policy.FIFO
    if isinstance(queue_class, type):
        if issubclass(queue_class, queue.LifoQueue):
            return Policy.LIFO
        if issubclass(queue_class, queue.Queue):
            return Policy.FIFO
    raise (ValueError if isinstance(queue_class, type) else TypeError)(
        f"fairpool setting 'queue_class' must be {accepted} (a class, or None); or pass "
        f'policy="lifo", "fifo" or "round_robin" instead; got {queue_class!r}'
    )


def _chain_connect(
    previous: Callable[[Any], object] | None, on_connect: Callable[[Any], object]
) -> Callable[[Any], None]:
    """A ``redis_connect_func`` (redis-py calls it after every connect, instead of the
    connection's own ``on_connect`` handshake) that runs the handshake — or the user's own
    ``redis_connect_func`` — and then ``on_connect``."""

    def connect_func(connection: Any) -> None:
        if previous is None:
            connection.on_connect()
        else:
            previous(connection)
        on_connect(connection)

    return connect_func


REBALANCE_BUDGET = 2.0
"""Seconds one maintenance run may spend moving connections between endpoints."""


def _staying(slots: list[Slot[Any]]) -> list[Any]:
    """The endpoints (``target``) of the connections that are not being retired."""
    return [s.target for s in slots if s.retire is None]


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception as exc:  # closing a dead socket may fail; nothing to do about it
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


HOLD_GRACE = 0.005
"""Seconds a connection stays held for a thread's turn when nothing else happens in the pool."""


class _TurnKeeper:
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


class _Maintainer:
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
