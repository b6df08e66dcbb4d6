"""The sync pool's thread machinery: waiting threads, the readiness poll of a socket, the turn
keeper and the maintenance thread, and fork detection. Used by :mod:`fairpool.pool` only; no
decision is made here (the core makes them)."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from time import monotonic
from typing import Any, TypeVar

from ._compat import CacheProxyConnection
from ._compat import recorder as _recorder
from .endpoints import Endpoint
from .lifecycle import DONE, JOIN, REBALANCE_BUDGET, THROWAWAY, WAIT_RETIRE
from .shell import PoolShell, Trash, quietly
from .slot import Slot, Waiter

__all__ = [
    "HOLD_GRACE",
    "Maintainer",
    "Probe",
    "ThreadWaiter",
    "TurnKeeper",
    "peer_endpoint",
    "raw_connection",
    "stirred",
]

logger = logging.getLogger("fairpool")

_L = TypeVar("_L", bound="ThreadLifecycle")

CLOSED = -1
"""``ConnectionPool._fork_gen`` after ``close()``: the next borrow or release goes through
``_checkpid()``, which restarts background maintenance."""

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


def _no_events() -> list[tuple[int, int]]:
    return []


_epoll = getattr(select, "epoll", None)  # Linux
_EPOLL_EVENTS = select.EPOLLIN | select.EPOLLRDHUP if _epoll is not None else 0

EPOLL_SHARE = 8
"""The per-connection epoll instances of every pool in the process hold at most this fraction
(1/8) of its soft limit of open descriptors; connections beyond it use ``poll()``."""


def _epoll_limit() -> int:
    """How many epoll instances the borrow checks may hold now: an eighth of the soft
    ``RLIMIT_NOFILE``, read at each dial (a limit raised at run time counts)."""
    import resource  # Unix only, like epoll

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 62 if soft == resource.RLIM_INFINITY else soft // EPOLL_SHARE


class _EpollBudget:
    """The epoll instances the borrow checks hold, against :func:`_epoll_limit`: each costs a
    descriptor, and a pool of hundreds of connections under a ``ulimit -n`` of 1024 must not take
    the descriptors the application needs (``poll()`` needs none, for ~0.25 µs more per borrow)."""

    def __init__(self) -> None:
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        limit = _epoll_limit()
        with self._lock:
            if self.open >= limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1


_epolls = _EpollBudget()


class Probe:
    """The sync shell's per-connection data (``Slot.aux``): the object that owns the socket, and
    the readiness check made on every borrow, registered once on that socket.

    :meth:`ready` answers "did anything arrive while it was idle?" with one non-blocking system
    call: EOF (the server closed it), a reset, or bytes nobody asked for all show as an event, and
    only then does the borrow take the slow path and run the full check. redis-py pays a similar
    check (``can_read()``) on every borrow. On Linux the socket has its own ``epoll`` instance
    (one more descriptor per connection; ``epoll_wait`` costs ~0.3 µs against ~0.55 µs for
    ``poll()``, which has to look at the socket), elsewhere — or when the process's epoll
    instances already hold an eighth of its descriptor limit (:data:`EPOLL_SHARE`), or no
    descriptor is left for one — a ``select.poll``. ``health_check="none"`` checks nothing."""

    __slots__ = ("_watcher", "raw", "ready", "sock", "watch")

    def __init__(self, raw: Any, watch: bool) -> None:
        self.raw = raw
        self.watch = watch
        self.sock: Any = UNARMED
        self.ready: Callable[[], list[tuple[int, int]]] = _no_events
        self._watcher: Any = None
        self.arm()

    def arm(self) -> None:
        """Register the connection's current socket (after a dial or a reconnect)."""
        sock = self.raw._sock
        self.close()
        if sock is None:
            return
        if self.watch:
            try:
                fd = sock.fileno()
                self.ready = self._watch(fd)
            except (OSError, ValueError, TypeError):
                # A closed socket, or a stand-in without a real descriptor (a test double's
                # mock socket): stays unarmed, so every borrow takes the slow path.
                return
        self.sock = sock

    def _watch(self, fd: int) -> Callable[[], list[tuple[int, int]]]:
        if _epoll is not None and _epolls.take():
            try:
                watcher = _epoll(1)
            except OSError:  # out of descriptors: poll() needs none
                _epolls.give()
            else:
                try:
                    watcher.register(fd, _EPOLL_EVENTS)
                except BaseException:
                    watcher.close()
                    _epolls.give()
                    raise
                self._watcher = watcher
                return partial(watcher.poll, 0, 1)
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return partial(poller.poll, 0)

    def close(self) -> None:
        """Forget the socket (the connection is being closed, or re-armed): its ``epoll``
        descriptor is closed now rather than whenever the probe is collected."""
        self.sock = UNARMED
        self.ready = _no_events
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            watcher.close()
            _epolls.give()

    def __del__(self) -> None:
        # A probe dropped without close() (a pool collected with connections open, a forked
        # child's inherited ones): its epoll instance goes with it; give its place back.
        with contextlib.suppress(Exception):
            if self._watcher is not None:
                self.close()


def stirred(slots: list[Slot[Any]]) -> list[Slot[Any]]:
    """The idle connections among ``slots`` whose socket shows an event (EOF, a reset, bytes
    nobody asked for): the poll of :meth:`~fairpool.shell.PoolShell._sweep`, one ``poll()`` of
    them all — one system call, so one release of the GIL, however many there are (their own
    readiness checks would release it once each, and on a busy process every release may hand
    it to another thread). Unarmed connections, and those whose socket was replaced or closed
    meanwhile, are left out. A descriptor closed and reused by another thread meanwhile may
    answer for the wrong socket: the core retires only connections still idle since the
    snapshot (:meth:`~fairpool.core.PoolCore.discard_idle`)."""
    by_fd: dict[int, Slot[Any]] = {}
    poller = select.poll()
    for slot in slots:
        probe: Probe = slot.aux
        sock = probe.sock
        if sock is UNARMED or probe.raw._sock is not sock:
            continue
        try:
            fd = sock.fileno()
            if fd >= 0:
                poller.register(fd, select.POLLIN)
                by_fd[fd] = slot
        except (OSError, ValueError):  # closed meanwhile
            continue
    if not by_fd:
        return []
    return [by_fd[fd] for fd, _ in poller.poll(0) if fd in by_fd]


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

    def __init__(self, pool: ThreadLifecycle) -> None:
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


def _close_quietly(pool: ThreadLifecycle, trash: list[tuple[Any, str]]) -> None:
    try:
        pool._close(trash)
    except Exception as exc:  # e.g. an observability backend failing: never kill the caller
        logger.warning("fairpool: closing connections failed: %r", exc)


class Maintainer:
    """The optional maintenance thread (``maintenance_interval``): one daemon thread per pool,
    holding only a weak reference to it, stopped by ``close()`` or when the pool is collected."""

    def __init__(self, pool: ThreadLifecycle, interval: float) -> None:
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


class ThreadLifecycle(PoolShell):
    """The sync pool's maintenance and whole-pool actions (a base of
    :class:`fairpool.ConnectionPool`): the refill, endpoint probes and rebalancing as the
    planner says, and ``disconnect`` / ``close`` / ``shutdown`` / re-authentication."""

    _lock: Any
    _maintainer: Maintainer | None
    _keeper: TurnKeeper | None
    _fork_gen: int
    _tending: bool
    _probes: dict[Any, Probe]
    _dial: Callable[..., Any]
    _checkpid: Callable[[], None]
    _mock: Callable[[Any], Any]

    def _start_keeper(self, keeper: TurnKeeper) -> None:
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
        if self._fork_gen != fork_generation:
            self._checkpid()
        remaining, trash = self._run_upkeep()
        self._close(trash)
        try:
            while remaining:
                remaining -= 1
                self._dial(for_caller=False)
        except Exception as exc:  # the failed dial gave back its own reservation
            logger.warning("fairpool: min_idle refill failed: %r", exc)
        finally:
            if remaining:
                self._close(self._locked(self._planner.refill_failed, remaining)[1])
        if self._endpoints is None:
            return
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
        then rebalance (see :meth:`~fairpool.lifecycle.Planner.rebalance_step`; gives up after
        :data:`~fairpool.lifecycle.REBALANCE_BUDGET` seconds, the next maintenance goes on)."""
        planner = self._planner
        for endpoint in self._locked(planner.probes_due, monotonic(), force)[0]:
            self._probe_endpoint(endpoint)
        deadline = monotonic() + REBALANCE_BUDGET
        retiring: list[Slot[Any]] = []  # borrowed connections retired, not yet released
        while monotonic() < deadline:
            step, trash = self._locked(planner.rebalance_step, retiring, monotonic())
            self._close(trash)
            if step is DONE:
                return
            if step is WAIT_RETIRE:
                time.sleep(0.005)  # a retired borrowed connection frees its capacity on release
                continue
            try:
                self._dial(for_caller=False)
            except Exception as exc:
                logger.info("fairpool: rebalancing dial failed: %r", exc)
                return

    def _probe_endpoint(self, endpoint: Endpoint) -> None:
        """The half-open probe: one dial to an endpoint that is down. With spare capacity the
        connection joins the pool; at the cap it is a throwaway connection, closed at once. A
        failure is reported (the endpoint stays down, backed off further) and logged."""
        plan = self._locked(self._planner.probe_plan, endpoint)[0]
        try:
            if plan is JOIN:
                self._dial(for_caller=False, only=endpoint)
            elif plan is THROWAWAY:
                self._throwaway_probe(endpoint)
        except Exception as exc:
            logger.info("fairpool: probe of %s failed: %r", endpoint, exc)

    def _throwaway_probe(self, endpoint: Endpoint) -> None:
        conn = self._new_connection(endpoint)
        ok = False
        try:
            conn.connect()
            ok = True
        finally:
            quietly(conn.disconnect)
            self._locked(self._planner.probe_done, endpoint, ok, monotonic())

    def _close(self, trash: Trash) -> None:
        probes = self._probes
        for conn, _reason in trash:
            quietly(conn.disconnect)
            probe = probes.pop(conn, None)
            if probe is not None:
                probe.close()
        if trash and _recorder._metrics_collector is not None:
            self._record(-len(trash), 0)

    # --------------------------------------------------------- whole pool
    def disconnect(self, inuse_connections: bool = True) -> None:
        """Close the sockets of idle connections (and, by default, of borrowed ones), as
        redis-py does: the connections stay in the pool and reconnect when next used. For
        shutting the pool down for good use :meth:`shutdown`."""
        self._checkpid()
        in_use, idle = self._in_use_and_idle(inuse_connections)
        try:
            for conn in [s.conn for s in idle] + in_use:
                quietly(conn.disconnect)
            for slot in idle:  # their readiness checks go too (reconnecting arms new ones)
                if isinstance(slot.aux, Probe):
                    slot.aux.close()
        finally:
            self._close(self._locked(self._core.put_back, idle, monotonic())[1])

    def close(self) -> None:
        """Disconnect every connection, idle and borrowed, as redis-py's ``close()`` does: the
        pool stays usable and connections reconnect when next used; waiting callers keep
        waiting. The maintenance thread stops and starts again on the next borrow or release.
        ``redis.Redis.close()`` calls this when the client owns its pool, and so does leaving
        ``with pool:``. To close the pool for good use :meth:`shutdown`."""
        self.disconnect()
        with self._lock:
            self._fork_gen = CLOSED
            maintainer, self._maintainer = self._maintainer, None
        if maintainer is not None:
            maintainer.stop()

    def shutdown(self) -> None:
        """Close the pool for good: idle connections now, borrowed ones when they come back;
        waiting callers and later borrows get :class:`~fairpool.errors.PoolClosedError`.
        Shutting down twice is harmless. (fairpool's ``close()`` did this in earlier versions;
        redis-py's pools have no equivalent.)"""
        self._checkpid()
        trash = self._locked(self._core.close)[1]
        self._stop_maintainer()
        self._close(trash)

    def _stop_maintainer(self) -> None:
        maintainer, self._maintainer = self.__dict__.get("_maintainer"), None
        if maintainer is not None:
            maintainer.stop()

    def re_auth_callback(self, token: Any) -> None:
        """Re-authenticate idle connections now (outside the lock, each taken out of the pool
        while it is done) and borrowed ones when they are released."""
        in_use, idle = self._in_use_and_idle(True)
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
            # put back into a closed pool, past their lifetime, over max_idle: closed
            self._close(self._locked(self._core.put_back, idle, monotonic())[1])
        for conn in in_use:
            conn.set_re_auth_token(token)

    def __enter__(self: _L) -> _L:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def chain_connect(
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
