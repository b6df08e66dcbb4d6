"""What the sync and the asyncio pool share, written once: :class:`PoolShell`.

Both public pools (:class:`fairpool.ConnectionPool`, :class:`fairpool.asyncio.ConnectionPool`)
subclass redis-py's pool of their kind *and* :class:`PoolShell`, which holds every behaviour that
does not depend on how I/O is done: the settings and the core, the dial / reconnect / probe /
rebalancing plans (:class:`~fairpool.lifecycle.Planner`), the critical-section helper
(:meth:`PoolShell._locked`: lock, core call, take the trash, unlock — the caller then closes the
trash), redis-py's pool surface (``_available_connections``, ``_in_use_connections``,
``stats()``, ``set_retry()``, ``from_url()``, ...), the release-event decision, the borrow check's
decisions, the sync/asyncio mix-up check and the redis-py metrics hooks. The two I/O layers —
:mod:`fairpool.pool` with :mod:`fairpool.threads`, :mod:`fairpool.asyncio` with
:mod:`fairpool.tasks` — add only what needs threads or the event loop.
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
import weakref
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any, ClassVar, TypeVar

from . import leaks
from ._compat import (
    DRIVER_KEYS,
    driver_info_of,
    get_pool_name,
    maint_notifications_enabled,
)
from .config import (
    Policy,
    PoolConfig,
    check_connection_kwargs,
    drain_target,
    make_config,
    resized_config,
    url_kwargs,
)
from .core import PoolCore
from .describe import pool_repr
from .endpoints import REBALANCE_PERIOD, Endpoint, EndpointSet
from .kind import Kind, first_borrow_check, guarded_connection_kwargs, warn_on_arguments
from .lifecycle import Planner
from .metrics import register
from .metrics.redispy import record_counts, record_wait
from .slot import Slot
from .stats import PoolStats

__all__ = ["Kind", "PoolShell", "policy_from_queue_class", "warn_on_arguments"]

logger = logging.getLogger("fairpool")

_S = TypeVar("_S", bound="PoolShell")
Trash = list[tuple[Any, str]]

POOL_KEYWORDS = ("connection_class", "max_connections", "cache_factory", "queue_class")
"""Pool arguments that are not settings, offered as suggestions for a misspelt keyword."""


SETTING_NAMES = frozenset(inspect.signature(make_config).parameters)
"""fairpool's settings: ``make_config``'s keyword arguments (declared there once), which the
pools take among their keyword arguments."""


def with_settings(init: Callable[..., None]) -> None:
    """Give a pool's ``__init__`` (``(self, <redis-py's positional arguments>, **kwargs)``) the
    signature it really accepts, for ``help()`` and introspection: its own parameters, then
    fairpool's settings as keyword-only ones (from ``make_config``), then
    ``**connection_kwargs``. (:class:`PoolShell` does it for every subclass's ``__init__``.)"""
    own = list(inspect.signature(init).parameters.values())
    if not own or own[-1].kind is not inspect.Parameter.VAR_KEYWORD:
        return
    own.pop()
    taken = {p.name for p in own}
    settings = [
        p for p in inspect.signature(make_config).parameters.values() if p.name not in taken
    ]
    rest = inspect.Parameter("connection_kwargs", inspect.Parameter.VAR_KEYWORD)
    init.__signature__ = inspect.Signature([*own, *settings, rest])  # type: ignore[attr-defined]


class _NoLock:
    """The asyncio pool's critical sections need no lock (no ``await`` inside one)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


NO_LOCK = _NoLock()

_STATS_ATTEMPTS = 100  # stats() of an asyncio pool read from another thread: retries


def policy_from_queue_class(
    queue_class: object, pairs: Iterable[tuple[type, Policy]], accepted: str
) -> Policy:
    """``BlockingConnectionPool(queue_class=...)``'s policy: the first of ``pairs`` (a queue class
    and its policy) that ``queue_class`` subclasses; FIFO for ``None``. ``accepted`` names the
    classes for the error."""
    if queue_class is None:
        return Policy.FIFO
    if isinstance(queue_class, type):
        for cls, policy in pairs:
            if issubclass(queue_class, cls):
                return policy
    raise (ValueError if isinstance(queue_class, type) else TypeError)(
        f"fairpool setting 'queue_class' must be {accepted} (a class, or None); or pass "
        f'policy="lifo", "fifo" or "round_robin" instead; got {queue_class!r}'
    )


def quietly(fn: Callable[[], object]) -> None:
    """Call ``fn`` (a close), logging and swallowing its error."""
    try:
        fn()
    except Exception as exc:  # closing a dead socket may fail; nothing to do about it
        logger.debug("fairpool: ignoring error while closing a connection: %r", exc)


class PoolShell:
    """The behaviour both pools share (see the module docstring). Not a pool by itself: the I/O
    layers set ``_mutex`` (their lock, or :data:`NO_LOCK`), the class attributes below, and
    implement the I/O."""

    config: PoolConfig
    _core: PoolCore[Any]
    _planner: Planner[Any]
    _endpoints: EndpointSet | None
    _mutex: Any
    _connection_kwargs: dict[str, Any]
    connection_class: Any
    max_connections: int

    _KIND: ClassVar[Kind]
    cache: Any = None  # client-side caching's cache (sync pools of redis-py 5.1+ only)
    connection_kwargs = guarded_connection_kwargs()
    __repr__ = pool_repr  # name, policy, counts and every endpoint; never a credential
    _records_wait = False  # BlockingConnectionPool reports each borrow's wait (as redis-py's)
    # the after-release listener list last seen, and whether it is redis-py's default listener
    # alone (see _release_event_needed)
    _listener_map: dict[type, Any]
    _seen_listeners: Any = None
    _default_listener_only = False
    # whether a subclass overrides owns_connection (Sentinel's pools): only then does a release
    # ask it (the layer's own answer is always yes; see _note_owner)
    _custom_owner = True
    # the driver info the first connection of a class resolved (see make_connection)
    _driver: tuple[type, Any] | None = None

    # ---------------------------------------------------------- construction
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            with_settings(init)

    def _configure(
        self,
        max_connections: int | None,
        kwargs: dict[str, Any],
        chain: Callable[[Any, Callable[[Any], object]], Callable[[Any], Any]],
    ) -> dict[str, Any]:
        """Split a constructor's keyword arguments into fairpool's settings (validated into
        :attr:`config`) and the connection keyword arguments, which it returns; with
        ``on_connect``, wrap the connection's handshake (``redis_connect_func``) so that it runs
        after every connect."""
        settings = {k: v for k, v in kwargs.items() if k in SETTING_NAMES}
        connection_kwargs = {k: v for k, v in kwargs.items() if k not in SETTING_NAMES}
        self.config = make_config(max_connections=max_connections, **settings)
        on_connect = settings.get("on_connect")
        if on_connect is not None:
            connection_kwargs["redis_connect_func"] = chain(
                connection_kwargs.get("redis_connect_func"), on_connect
            )
        return connection_kwargs

    def _new_core(self) -> None:
        """A fresh core (no connections, zero counters) and its planner."""
        config = self.config
        endpoints = config.endpoints
        self._endpoints = EndpointSet(endpoints) if endpoints else None
        self._core = PoolCore(config, period=REBALANCE_PERIOD if endpoints else None)
        self._planner = Planner(self._core, self._endpoints)
        if self._KIND.asynchronous:
            # Armed on every fresh core: the next borrow checks that its caller is of the right
            # kind (the sync pool checks on its slow path, where every first borrow goes).
            self.__dict__["get_connection"] = first_borrow_check(weakref.ref(self))
        else:
            self._arm_leak_watch()

    def _arm_leak_watch(self) -> None:
        """With ``leak_timeout``, borrows go through ``_get_watched`` (an instance attribute
        shadowing ``get_connection``: no cost on the borrow path when the setting is off)."""
        if self.config.leak_timeout is not None:
            self.__dict__["get_connection"] = self._get_watched
        else:
            self.__dict__.pop("get_connection", None)

    def _check_caller(self, frames_up: int) -> None:
        """Raise ``TypeError`` naming the pool to use if the code ``frames_up`` frames above the
        caller of this method is a client of the other kind (sync or asyncio)."""
        caller = sys._getframe(frames_up + 1).f_globals.get("__name__", "")
        if self._KIND.wrong_client(caller):
            raise self._KIND.mixup(self, caller)

    def _reject_unknown_kwargs(self) -> None:
        """Check the keyword arguments that will reach the connection class (see
        :func:`fairpool.config.check_connection_kwargs`); on a bad one stop the pool's
        background maintenance, already started, and raise."""
        try:
            check_connection_kwargs(
                type(self).__name__,
                self.connection_class,
                self.connection_kwargs,
                POOL_KEYWORDS,
                (self._KIND.module.Connection, self._KIND.module.SSLConnection),
            )
        except TypeError:
            self._stop_maintainer()
            raise
        # The dispatcher's listeners by event type: the dict lives as long as the pool's
        # dispatcher (none before redis-py 5.1), and registrations change its values in place.
        dispatcher = getattr(self, "_event_dispatcher", None)
        mapping = getattr(dispatcher, "_event_listeners_mapping", None)
        self._listener_map = {} if mapping is None else mapping
        register(self)  # for fairpool.metrics' exporters (weakly)
        # if observability is on, the hot paths record from the first borrow
        self._KIND.collector()

    def _stop_maintainer(self) -> None:
        raise NotImplementedError

    @classmethod
    def from_url(cls: type[_S], url: str, **kwargs: Any) -> _S:
        """Build a pool from a ``redis://``, ``rediss://`` or ``unix://`` URL.

        fairpool's settings may be given as query parameters and are converted to their types
        (``?policy=round_robin&max_idle=8&block=true&timeout=2``); the rest is redis-py's
        ``ConnectionPool.from_url``.
        """
        return cls(**url_kwargs(cls._KIND.module.parse_url, url, kwargs))

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def _get_watched(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    # ----------------------------------------------------------- the lock
    def _locked(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, Trash]:
        """The critical section, once: under the lock call ``fn(*args)`` (a core or planner
        call) and take the connections the core retired; the caller closes them afterwards,
        with no lock held."""
        with self._mutex:
            result = fn(*args)
            return result, self._core.take_trash()

    def _run_upkeep(self) -> tuple[int, Trash]:
        """The core's maintenance under the lock (``core.maintain``): returns how many
        connections to dial for ``min_idle`` and the connections to close; logs the leaks it
        found (``leak_timeout``)."""
        core = self._core
        remaining, trash = self._locked(core.maintain, monotonic())
        if core.leaked:
            self._report_leaks()
        return remaining, trash

    # ------------------------------------------------------------ settings
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

    @property
    def closed(self) -> bool:
        """Whether the pool was shut down for good (``close()`` / ``aclose()`` leave it usable)."""
        return self._core.closed

    # ------------------------------------------------------------- dialling
    def make_connection(self, endpoint: Endpoint | None = None) -> Any:
        """Create a new (unconnected) connection from the current ``connection_kwargs`` (with
        ``endpoint``'s host and port, if given). The cap is enforced by the core before this is
        called, not here.

        Unless the arguments choose it, a connection gets a copy of the driver info
        (``CLIENT SETINFO``'s library name and version) that the pool's first connection of its
        class resolved: redis-py 8.x resolves it anew in every connection's constructor, from
        the installed packages' metadata, at about 0.6 ms of CPU — which, after a server closed
        every connection at once, made each of a burst of concurrent dials take tens of
        milliseconds and the burst grow (redis-py's own pools reconnect their connection objects
        in place, fairpool replaces dead ones)."""
        kwargs = self.connection_kwargs
        cls = self.connection_class
        own_driver = DRIVER_KEYS.isdisjoint(kwargs)  # the arguments do not choose it
        driver = self._driver if own_driver else None
        if driver is not None and driver[0] is not cls:
            driver = None
        if endpoint is not None or driver is not None:
            kwargs = dict(kwargs)
            if endpoint is not None:
                kwargs["host"], kwargs["port"] = endpoint
            if driver is not None:
                kwargs["driver_info"] = copy.deepcopy(driver[1])
        conn = cls(**kwargs)
        if own_driver and driver is None:
            info = driver_info_of(conn)
            if info is not None:
                self._driver = (cls, copy.deepcopy(info))
        return conn

    def _new_connection(self, target: Endpoint | None) -> Any:
        """``make_connection()`` as redis-py calls it (no argument) for the pool's own address,
        so that a subclass overriding it without the ``endpoint`` parameter keeps working."""
        return self.make_connection() if target is None else self.make_connection(target)

    def _pushes_expected(self) -> bool:
        """Whether pending data on an idle connection may be a legitimate push message
        (client-side caching invalidations, maintenance notifications) rather than a stale reply
        that puts the connection out of sync. Push messages exist only under RESP3: redis-py 7+
        skips its "Connection has data" check whenever maintenance notifications are enabled,
        which its default ``"auto"`` is even under RESP2, where a pending reply can only be
        stale; fairpool still checks there (docs/migrating.md)."""
        if self.cache is not None:
            return True
        return (
            maint_notifications_enabled(self)
            and str(self.connection_kwargs.get("protocol") or 2) == "3"
        )

    def _sweep(self, conn: Any, stirred: Callable[[list[Slot[Any]]], list[Slot[Any]]]) -> Trash:
        """The readiness poll of a borrowed idle connection saw an event (the end of the
        stream, a reset, a stale reply) where no push message can be expected: it is unusable,
        and the server, or the path to it, may have closed every connection (a restart,
        ``CLIENT KILL``, a proxy deploy). Retire it, poll every idle connection once outside the
        lock (``stirred``: the shell's poll, which returns those that show an event) and retire
        those too, in one batch; their closing waits for the next release
        (:meth:`PoolCore.discard_dead`, :meth:`PoolCore.discard_idle`). The borrow then dials at
        once, as the first borrow after a mass disconnect does with redis-py's pool (which
        reconnects the one it popped), instead of closing dead connections one by one while more
        callers arrive and dial too. Returns the core's trash for the caller to close."""
        core = self._core
        since = monotonic()
        idle, trash = self._locked(core.discard_dead, conn)
        dead = stirred(idle)
        if dead:
            trash += self._locked(core.discard_idle, dead, since, "health_check")[1]
        return trash

    def _pool_name(self) -> str:
        """The pool's name in redis-py's metrics."""
        name: str = get_pool_name(self)
        return name

    def _check_kind(self, polled: bool) -> tuple[bool, Any]:
        """The borrow check's plan: whether to peek for pending data (the readiness poll saw
        something, or ``health_check="peek"``), and the configured check (``"ping"``, a
        callable, or ``None`` when the peek is all)."""
        check = self.config.health_check
        peek = polled or check == "peek"
        return peek, (None if check in ("peek", "none") else check)

    # --------------------------------------------------------- release
    def _release_event_needed(self, connection: Any) -> bool:
        """Whether dispatching redis-py's after-release event (streaming credential re-auth
        listens to it) would do anything: not when nobody listens, nor when the only listener is
        redis-py's default re-auth listener and the connection has no pending token."""
        listeners = self._listener_map.get(self._KIND.released)
        if not listeners:
            return False
        if listeners is not self._seen_listeners:
            # redis-py replaces the list on every (un)registration: decide once per list
            self._seen_listeners = listeners
            self._default_listener_only = (
                len(listeners) == 1 and type(listeners[0]) is self._KIND.listener
            )
        if not self._default_listener_only:
            return True
        try:  # the default listener acts only on a connection with a token to apply
            return connection._re_auth_token is not None
        except AttributeError:
            return True

    def _note_owner(self, default: Callable[..., Any]) -> None:
        """Record whether this pool's ``owns_connection`` is the layer's ``default`` (which
        accepts every connection the core holds as borrowed: a forked child's pool is reset
        before it sees a parent's connection), so that a release calls it only when a subclass
        overrides it."""
        self._custom_owner = type(self).owns_connection is not default  # type: ignore[attr-defined]

    def _ignored_release(self, connection: Any, slot: Slot[Any] | None) -> None:
        logger.debug(
            "fairpool: ignoring release of %r: %s",
            connection,
            "not a connection of this pool" if slot is None else "it is not borrowed",
        )

    # ------------------------------------------------------------- metrics
    def _record(self, idle_delta: int, used_delta: int) -> None:
        """Report connection-state changes to redis-py's observability, when it is enabled."""
        found = self._KIND.collector()
        if found is not None:
            record_counts(found, self, idle_delta, used_delta)

    def _record_borrow(self, started: float, now: float) -> None:
        """A borrow from the idle set (with a collector): one idle connection becomes used, and
        a ``BlockingConnectionPool`` reports the wait, as redis-py's does."""
        found = self._KIND.collector()
        if found is not None:
            record_counts(found, self, -1, 1)
            if self._records_wait:
                record_wait(found, self, now - started)

    # ------------------------------------------------------------ controls
    @property
    def _maintenance_interval(self) -> float | None:
        """How often the maintenance thread (asyncio: task) runs: ``maintenance_interval``, more
        often with ``leak_timeout``; ``None`` for none."""
        return leaks.check_interval(self.config.leak_timeout, self.config.maintenance_interval)

    def _watch(self, conn: Any, stack: leaks.Borrower | None) -> None:
        """Note where ``conn`` was just borrowed (``leak_timeout``), or that its borrower is
        exempt (``stack`` is ``None``, see :mod:`fairpool.leaks`)."""
        with self._mutex:
            slot = self._core.slot_of(conn)
            if slot is not None:
                slot.borrower = stack
                if stack is None:
                    self._core.exempt(conn)

    def exempt_from_leak_detection(self, connection: Any) -> None:
        """Exempt ``connection``'s current borrow from leak detection (``leak_timeout``): a
        holder that keeps it on purpose. (Pub/sub, ``Monitor`` and single-connection clients
        are exempt already.)"""
        with self._mutex:
            self._core.exempt(connection)

    def _report_leaks(self) -> None:
        """Log what the core reported (``leak_timeout``): leaks found, leaked ones back."""
        with self._mutex:
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
        open once they are back; a higher ``min_idle`` is dialled by the next maintenance run
        (the sync pool runs it now)."""
        config = resized_config(
            self.config, max_connections=max_connections, min_idle=min_idle, max_idle=max_idle
        )
        with self._mutex:
            self.config = config
            self.max_connections = config.max_connections
            self._core.resize(config, monotonic())
            trash = self._core.take_trash()
        self._resized(trash)

    def _resized(self, trash: Trash) -> None:
        """After :meth:`resize`: close ``trash`` (without waiting) and refill."""
        raise NotImplementedError

    def _drain_core(self, endpoint: Any) -> tuple[int, Trash]:
        """``drain(endpoint)``'s decision: how many connections are being replaced, and the
        idle ones to close now."""
        target = drain_target(endpoint, self.config.endpoints)
        count: int
        count, trash = self._locked(self._core.drain, target)
        return count, trash

    # ------------------------------------------ redis-py's pool surface
    def stats(self, reset: bool = False) -> PoolStats:
        """An immutable snapshot of the pool's counters (see :class:`~fairpool.stats.PoolStats`);
        ``reset`` starts a new window (:attr:`~fairpool.stats.PoolStats.window`).

        An asyncio pool has no lock a scraper's thread could take: if its event loop changes the
        connections while the snapshot walks them (``RuntimeError``), it is taken again."""
        for _ in range(_STATS_ATTEMPTS - 1):
            try:
                with self._mutex:
                    return self._core.stats(monotonic(), reset)
            except RuntimeError:  # dictionary changed size during iteration (another thread)
                continue
        with self._mutex:
            return self._core.stats(monotonic(), reset)

    def set_retry(self, retry: Any) -> None:
        """Set the retry policy of new and existing connections."""
        self.connection_kwargs.update({"retry": retry})
        with self._mutex:
            conns = [slot.conn for slot in self._core.slots()]
        for conn in conns:
            conn.retry = retry

    def _get_free_connections(self) -> list[Any]:
        with self._mutex:
            return [slot.conn for slot in self._core.idle_slots()]

    def _get_in_use_connections(self) -> set[Any]:
        with self._mutex:
            return {slot.conn for slot in self._core.slots() if slot.in_use}

    def _in_use_and_idle(self, inuse_connections: bool) -> tuple[list[Any], list[Slot[Any]]]:
        """For ``disconnect()`` and re-auth: the borrowed connections (when asked) and the idle
        ones, taken out of the pool for the I/O (return them with ``core.put_back``)."""
        with self._mutex:
            core = self._core
            in_use = [s.conn for s in core.slots() if s.in_use] if inuse_connections else []
            return in_use, core.take_idle()

    @property
    def _available_connections(self) -> list[Any]:
        """Idle connections, next to be handed out first (redis-py's attribute, read-only)."""
        return self._get_free_connections()

    @_available_connections.setter
    def _available_connections(self, value: Iterable[Any]) -> None:
        pass  # redis-py's constructors assign it; the core holds the real state

    @property
    def _in_use_connections(self) -> set[Any]:
        """Borrowed connections (redis-py's attribute, read-only)."""
        return self._get_in_use_connections()

    @_in_use_connections.setter
    def _in_use_connections(self, value: Iterable[Any]) -> None:
        pass

    @property
    def _created_connections(self) -> int:
        """Open connections plus those being dialled (redis-py's attribute, read-only)."""
        return self._core.open_count + self._core.dialling

    @_created_connections.setter
    def _created_connections(self, value: int) -> None:
        pass  # redis-py's own bookkeeping writes it; the core keeps the real count


class BlockingShell:
    """``BlockingConnectionPool``'s defaults, for both pools (put it before the pool class):
    ``block=True``, ``max_connections=50``, ``timeout=20``, the policy from redis-py's
    ``queue_class`` when no ``policy`` is given, and each borrow's wait time reported to
    redis-py's observability (as redis-py's ``BlockingConnectionPool`` does)."""

    _records_wait = True
    _QUEUES: ClassVar[tuple[tuple[type, Policy], ...]]  # queue classes and their policies
    _QUEUE_NAMES: ClassVar[str]  # the accepted queue classes, for the error
    _DEFAULT_CONNECTION: ClassVar[type]  # redis-py's default connection class of the kind

    def __init__(
        self,
        max_connections: int | None = 50,
        timeout: float | None = 20,
        connection_class: type | None = None,
        queue_class: type | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("policy") is None:
            kwargs["policy"] = policy_from_queue_class(queue_class, self._QUEUES, self._QUEUE_NAMES)
        kwargs.setdefault("block", True)
        pool: Any = super()
        pool.__init__(
            connection_class or self._DEFAULT_CONNECTION,
            max_connections,
            timeout=timeout,
            **kwargs,
        )
