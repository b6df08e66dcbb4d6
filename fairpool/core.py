"""The I/O-free core shared by the sync and asyncio pools.

:class:`PoolCore` decides everything — which idle connection a borrow gets, whether a new one may be
dialled, who waits and who is served next, which connections to close and why, what to count — and
does nothing: no sockets, no threads, no event loop, no clock of its own (``now`` is passed in). The
pool shells (:mod:`fairpool.pool`, :mod:`fairpool.asyncio`) call it under their own lock and do the
I/O the core asks for after releasing the lock:

* connections the core wants closed are appended to :attr:`PoolCore.trash`; the shell takes them
  with :meth:`PoolCore.take_trash` inside the critical section and closes them after it;
* :data:`DIAL` means "capacity is reserved for you: dial a connection, then report
  :meth:`~PoolCore.dialled` or :meth:`~PoolCore.dial_failed`";
* :data:`WAIT` means "queue a :class:`Waiter` with :meth:`~PoolCore.enqueue` and sleep until it is
  woken"; a released connection goes straight to the oldest waiter (strict hand-off), so service
  order equals arrival order and a newcomer never overtakes a waiter.

Turns (``turn_borrows``): handing a connection to a waiting thread costs a thread switch, which in
CPython costs as much as a round trip to Redis. So when callers wait, a shell that names the
caller (``owner``) may let it keep its connection for a few borrows in a row:
:meth:`~PoolCore.release` then *holds* the connection for its owner instead of handing it over,
and the owner's next :meth:`~PoolCore.acquire` gets it back. Any other call (another caller's
borrow or release, or :meth:`~PoolCore.expire_hold` when the owner does not come back) first hands
the held connection to the oldest waiter, as if it had just been released. At most one connection
is held at a time, so a turn ends as soon as any other caller touches the pool; waiters keep their
arrival order and a newcomer still never overtakes one. (A :meth:`~PoolCore.discard` — another
borrower's connection failing its check — leaves the turn alone: the capacity it frees goes to
the oldest waiter, who dials.)

Everything here runs under the shell's lock, so every method is short and allocation-light; the
borrow/release hot path is a handful of attribute updates.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .config import Policy, PoolConfig
from .endpoints import Endpoint, label
from .errors import PoolClosedError, PoolExhaustedError, PoolOverloadedError, PoolTimeoutError
from .policies import make_idle_set
from .stats import CLOSE_REASONS, PoolStats

__all__ = ["DIAL", "WAIT", "PoolCore", "Slot", "Waiter"]

C = TypeVar("C")
_INF = math.inf
_REFILL_RETRY = 1.0  # seconds: check again this soon while the pool is below min_idle
LEAKED = 1  # Slot.leak: reported as leaked (leak_timeout)
EXEMPT = 2  # Slot.leak: exempt from leak detection until released (0: watched)


class _Token:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


DIAL = _Token("DIAL")
"""Returned by :meth:`PoolCore.acquire`: capacity is reserved; dial a new connection."""
WAIT = _Token("WAIT")
"""Returned by :meth:`PoolCore.acquire`: the pool is exhausted; queue a :class:`Waiter`."""


class Slot(Generic[C]):
    """The pool's record of one connection."""

    __slots__ = (
        "aux",
        "borrowed",
        "borrower",
        "borrows",
        "conn",
        "created",
        "endpoint",
        "expires",
        "in_use",
        "leak",
        "released",
        "retire",
        "seq",
        "suspect",
        "taken",
        "target",
        "turn",
    )

    def __init__(self, conn: C, seq: int, now: float, expires: float) -> None:
        self.conn = conn
        self.seq = seq  # creation order: the round-robin ring position
        self.created = now
        self.expires = expires  # monotonic time after which it is retired (inf = never)
        self.released = now  # last time it was released (or created): "last used"
        self.endpoint: str | None = None  # host:port the socket is connected to (set by the shell)
        self.borrows = 0
        self.in_use = False
        self.suspect = False  # must be verified before reuse (an older sibling was found dead)
        self.retire: str | None = None  # close it when released, for this reason (see retire())
        self.aux: Any = None  # the shell's own per-connection data
        self.target: Any = None  # the configured endpoint it was dialled to (endpoints=[...])
        self.turn = 0  # borrows in a row by its current caller (see turn_borrows)
        self.taken = False  # out of the idle set for the shell's I/O (take_idle / put_back)
        # leak detection (leak_timeout): when the current borrow began; 0 while it is watched,
        # LEAKED once reported, EXEMPT for a pub/sub, Monitor or single-connection client (until
        # released); where it was borrowed (the stack the shell captured)
        self.borrowed = now
        self.leak = 0
        self.borrower: Any = None

    def __repr__(self) -> str:
        state = "in_use" if self.in_use else "idle"
        return f"<Slot #{self.seq} {state} {self.endpoint or '?'} borrows={self.borrows}>"


class Waiter:
    """A caller queued for a connection. Shells subclass it and implement :meth:`wake`.

    The core fills in exactly one of :attr:`slot` (a connection handed over), :attr:`dial`
    (capacity reserved for it) or :attr:`error` (the pool was closed) and then calls :meth:`wake`.
    """

    __slots__ = ("dial", "error", "since", "slot")

    def __init__(self) -> None:
        self.slot: Slot[object] | None = None
        self.dial = False
        self.error: BaseException | None = None
        self.since = 0.0

    @property
    def done(self) -> bool:
        """Whether the core has settled this waiter."""
        return self.slot is not None or self.dial or self.error is not None

    def wake(self) -> None:
        """Wake the waiting caller (the core calls it under the pool lock; must not block)."""
        raise NotImplementedError


class PoolCore(Generic[C]):
    """Policies, caps, the waiter queue, lifecycle decisions and counters. No I/O.

    ``rng`` returns floats in ``[0, 1)`` for the lifetime jitter (inject one for tests).
    """

    def __init__(
        self,
        config: PoolConfig,
        *,
        rng: Callable[[], float] = random.random,
        now: float | None = None,
        period: float | None = None,
    ) -> None:
        self.config = config
        self._rng = rng
        self._period = period  # run maintenance at least this often (the shell has periodic work)
        self._idle = make_idle_set(config.policy)
        self._lifo = config.policy is Policy.LIFO
        self._slots: dict[C, Slot[C]] = {}
        self._waiters: deque[Waiter] = deque()
        self._seq = 0
        self._max = config.max_connections
        self._max_idle = config.max_idle
        self._turn = config.turn_borrows
        self.held: Slot[C] | None = None  # released, kept for its owner's next borrow (a turn)
        self._held_owner: object = None
        self.idle_count = 0
        self.dialling = 0
        self.closed = False
        self.trash: list[tuple[C, str]] = []
        # counters
        self.hits = 0
        self.misses = 0
        self.waits = 0
        self.wait_total = 0.0
        self.wait_max = 0.0
        self.timeouts = 0
        self.reborrows = 0
        self.holds = 0  # connections held for a turn (the shell's keeper watches it change)
        self.created = 0
        self.leaks = 0  # connections reported borrowed longer than leak_timeout
        self.sheds = 0  # borrows refused: max_waiting callers already waited
        self.drains = 0  # drain() calls
        self.leaked: list[Slot[C]] = []  # reported now: the shell logs them (take_leaks)
        self.leaks_back: list[tuple[Slot[C], float]] = []  # reported ones released, held seconds
        self._closed_counts = dict.fromkeys(CLOSE_REASONS, 0)
        self._closed_endpoint_borrows: dict[str, int] = {}
        # demand window (FIFO / round-robin shrinking): the fewest idle connections seen in it
        start = time.monotonic() if now is None else now
        self.next_leak = start + (config.leak_timeout or _INF)  # no borrow is due sooner
        self._low = 0
        self._window_end = start + (config.idle_timeout or _INF)
        self._window_borrows = 0
        self.next_maintenance = _INF
        self._schedule(start)

    # ------------------------------------------------------------------ borrow
    def acquire(self, now: float, owner: object = None) -> Slot[C] | _Token:
        """Borrow: an idle :class:`Slot` (marked in use), :data:`DIAL` or :data:`WAIT`.

        ``owner`` identifies the caller (the shell's thread id) for turns; the connection held for
        it, if any, is handed back. Raises :class:`PoolClosedError` on a closed pool and
        :class:`PoolExhaustedError` at the cap when ``block`` is off.
        """
        held = self.held
        if held is not None:
            if owner is not None and owner == self._held_owner and now < held.expires:
                self.held = None
                held.borrowed = now
                held.turn += 1
                held.borrows += 1
                self.hits += 1
                self.reborrows += 1
                return held
            self._settle(now)
        if not self._waiters and not self.closed:
            idle = self._idle
            slot = idle.pop()
            while slot is not None:
                n = self.idle_count = self.idle_count - 1
                if now < slot.expires:
                    slot.in_use = True
                    slot.borrowed = now
                    slot.turn = 1
                    slot.borrows += 1
                    self.hits += 1
                    if n < self._low:
                        self._low = n
                    return slot
                self._drop(slot, "lifetime")
                slot = idle.pop()
        return self._acquire_slow()

    def _acquire_slow(self) -> _Token:
        if self.closed:
            raise PoolClosedError("fairpool: the connection pool is closed")
        self._low = 0
        if not self._waiters and len(self._slots) + self.dialling < self._max:
            self.dialling += 1
            return DIAL
        if self.config.block:
            limit = self.config.max_waiting
            if limit is not None and len(self._waiters) >= limit:
                self.sheds += 1
                raise PoolOverloadedError(
                    f"fairpool: pool overloaded: {len(self._waiters)} callers already wait for a "
                    f"connection (max_waiting={limit}, max_connections={self._max})"
                )
            return WAIT
        raise PoolExhaustedError(
            f"Too many connections: fairpool pool exhausted, all {self._max} connections in use "
            "(max_connections); pass block=True to wait for one"
        )

    def enqueue(self, waiter: Waiter, now: float) -> None:
        """Queue ``waiter`` (after :meth:`acquire` returned :data:`WAIT`)."""
        waiter.since = now
        self._waiters.append(waiter)

    def finish_wait(self, waiter: Waiter, now: float) -> Slot[C] | _Token:
        """After a waiter wakes (or its timeout passes): its :class:`Slot` or :data:`DIAL`.

        Raises :class:`PoolTimeoutError` if nothing was granted (the waiter leaves the queue) and
        the pool's error if it was closed meanwhile. (A waiter granted a slot may also just take
        ``waiter.slot`` without calling this: the wait was counted at the hand-off.)
        """
        if waiter.slot is not None:
            return waiter.slot  # type: ignore[return-value]
        if self.held is not None and not waiter.dial and waiter.error is None:
            # Timing out while a connection is held for someone's turn: it goes on first (to
            # this waiter, if it is the oldest), as the release would have without turns.
            self._settle(now)
            if waiter.slot is not None:
                return waiter.slot
        self._count_wait(now - waiter.since)
        if waiter.dial:
            return DIAL
        if waiter.error is not None:
            raise waiter.error
        self._unqueue(waiter)
        self.timeouts += 1
        raise PoolTimeoutError(
            f"fairpool: connection pool exhausted: all {self._max} connections (max_connections) "
            f"in use; waited {now - waiter.since:.3f}s (timeout={self.config.timeout}s)"
        )

    def _count_wait(self, waited: float) -> None:
        self.waits += 1
        self.wait_total += waited
        if waited > self.wait_max:
            self.wait_max = waited

    def cancel_wait(self, waiter: Waiter, now: float) -> Slot[C] | _Token | None:
        """A waiter gives up (cancelled, interrupted). Returns what it had been granted, if
        anything — the shell must hand a :class:`Slot` back with :meth:`release` and a
        :data:`DIAL` with :meth:`dial_failed` — or ``None`` if it was still queued (a connection
        held for someone's turn then goes on to the next waiter)."""
        if waiter.slot is not None:
            return waiter.slot  # type: ignore[return-value]
        if waiter.dial:
            return DIAL
        self._unqueue(waiter)
        if self.held is not None:
            self._settle(now)
        return None

    def _unqueue(self, waiter: Waiter) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def dialled(self, conn: C, now: float) -> Slot[C]:
        """A connection dialled after :data:`DIAL` is ready; it is now in use by the caller."""
        self.dialling -= 1
        slot = self._new_slot(conn, now)
        slot.in_use = True
        slot.borrows = 1
        slot.turn = 1
        self.misses += 1
        self._idle.handed_out(slot)
        self._over_cap(slot)
        return slot

    def dialled_idle(self, conn: C, now: float) -> Slot[C]:
        """A connection dialled by maintenance (``min_idle`` refill) joins the pool."""
        self.dialling -= 1
        slot = self._new_slot(conn, now)
        slot.in_use = True
        self._over_cap(slot)
        self._release_slot(slot, now)
        return slot

    def dial_failed(self) -> None:
        """A reserved dial did not produce a connection: free its capacity."""
        self.dialling -= 1
        self._grant_capacity()

    def _new_slot(self, conn: C, now: float) -> Slot[C]:
        lifetime = self.config.max_lifetime
        if lifetime is None:
            expires = _INF
        else:
            expires = now + lifetime * (1.0 - self.config.lifetime_jitter * self._rng())
        self._seq += 1
        slot: Slot[C] = Slot(conn, self._seq, now, expires)
        self._slots[conn] = slot
        self.created += 1
        # A new connection may bring a deadline forward: its own lifetime (jitter can make it
        # expire before older ones) and, under LIFO, idle pruning once the pool is above min_idle.
        due = min(expires, self._idle_deadline(now))
        if due < self.next_maintenance:
            self.next_maintenance = due
        return slot

    # ----------------------------------------------------------------- release
    def release(self, conn: C, now: float, reusable: bool = True, owner: object = None) -> bool:
        """Give a borrowed connection back. Returns ``False`` (and changes nothing) if the pool
        does not hold it as borrowed: a foreign connection, or a second release.

        With an ``owner`` whose turn is not over (fewer than ``turn_borrows`` borrows in a row)
        while callers wait, the connection is held for that owner's next borrow (see the module
        docstring) instead of going to the oldest waiter."""
        slot = self._slots.get(conn)
        if slot is None or not slot.in_use or slot is self.held or slot.taken:
            return False
        if slot.leak:
            if slot.leak == LEAKED:
                self.leaks_back.append((slot, now - slot.borrowed))
            slot.leak = 0
        if self.held is not None:
            self._settle(now)
        if reusable:
            if (
                owner is not None
                and slot.turn < self._turn
                and self._waiters
                and now < slot.expires
                and not self.closed
            ):
                slot.released = now
                self.held = slot
                self._held_owner = owner
                self.holds += 1
                return True
            self._release_slot(slot, now)
        else:
            slot.in_use = False
            self._drop(slot, "error")
        return True

    def _release_slot(self, slot: Slot[C], now: float) -> None:
        slot.released = now
        if self.closed:
            slot.in_use = False
            self._drop(slot, "closed")
        elif now >= slot.expires:
            slot.in_use = False
            self._drop(slot, slot.retire or "lifetime")
        elif self._waiters:
            # Strict hand-off: the oldest waiter gets it; it never becomes idle.
            waiter = self._waiters.popleft()
            slot.borrowed = now
            slot.turn = 1
            slot.borrows += 1
            self.hits += 1
            self._count_wait(now - waiter.since)
            self._idle.handed_out(slot)
            waiter.slot = slot  # type: ignore[assignment]
            waiter.wake()
        elif self._max_idle is not None and self.idle_count >= self._max_idle:
            slot.in_use = False
            self._drop(slot, "max_idle")
        else:
            slot.in_use = False
            self.idle_count += 1
            self._idle.push(slot)

    def _settle(self, now: float) -> None:
        """End the current turn: the held connection goes to the oldest waiter (or idle)."""
        slot = self.held
        assert slot is not None
        self.held = None
        self._held_owner = None
        released = slot.released
        self._release_slot(slot, now)
        if not slot.in_use:
            slot.released = released  # idle since its owner released it

    def expire_hold(self, now: float, grace: float) -> bool:
        """Hand the held connection on if its owner has not come back for it within ``grace``
        seconds (the shell calls this periodically while a connection is held). Returns whether
        one was handed on."""
        held = self.held
        if held is None or now - held.released < grace:
            return False
        self._settle(now)
        return True

    def discard(self, conn: C, reason: str) -> None:
        """A borrowed connection is unusable (failed its check, failed to connect): close it.

        When ``reason`` is ``"health_check"``, idle connections to the same endpoint created
        before it become suspect (see :meth:`broken`).
        """
        slot = self._slots.get(conn)
        if slot is None or not slot.in_use or slot is self.held or slot.taken:
            return
        slot.in_use = False
        if reason == "health_check":
            self.broken(slot)
        self._drop(slot, reason)

    def broken(self, slot: Slot[C]) -> None:
        """``slot``'s connection was found dead (it failed its borrow check, or a command on it
        failed): the idle connections to the same endpoint created before it become suspect and
        are verified before their next use (the server or the path to it may have dropped them
        all at once)."""
        seq, endpoint = slot.seq, slot.endpoint
        for other in self._idle:
            if other.seq < seq and other.endpoint == endpoint:
                other.suspect = True

    def needs_check(self, slot: Slot[C], now: float) -> bool:
        """Whether a borrowed idle connection gets the full borrow check (``health_check``): it
        is suspect, or it has been idle for ``health_check_after`` seconds. (Every borrow also
        gets the shell's cheap readiness poll; this decides only the configured check. The
        shells inline the same test on their fast paths.)"""
        return slot.suspect or now - slot.released >= self.config.health_check_after

    def _drop(self, slot: Slot[C], reason: str) -> None:
        """Forget a connection that is not idle and queue it for closing."""
        del self._slots[slot.conn]
        self._closed_counts[reason] += 1
        if slot.endpoint is not None:
            d = self._closed_endpoint_borrows
            d[slot.endpoint] = d.get(slot.endpoint, 0) + slot.borrows
        self.trash.append((slot.conn, reason))
        if self._low:
            # The demand window's spare connections: one fewer is left of those that sat idle
            # at its lowest moment (or the load's peak needs one new connection).
            self._low -= 1
        if self.config.min_idle:
            self.next_maintenance = -_INF  # refill soon
        self._grant_capacity()

    def _grant_capacity(self) -> None:
        waiters = self._waiters
        while waiters and not self.closed and len(self._slots) + self.dialling < self._max:
            waiter = waiters.popleft()
            self.dialling += 1
            waiter.dial = True
            waiter.wake()

    def take_trash(self) -> list[tuple[C, str]]:
        """The connections to close, with the reason; the shell closes them outside its lock."""
        trash = self.trash
        self.trash = []
        return trash

    # ------------------------------------------------------- whole-pool actions
    def take_idle(self) -> list[Slot[C]]:
        """Take every idle connection out, in hand-out order, for I/O on them outside the lock
        (``disconnect``, re-auth). They count as open but cannot be borrowed, released or
        discarded until :meth:`put_back` returns them."""
        slots = list(self._idle)  # every idle set iterates in hand-out order
        for slot in slots:
            self._idle.remove(slot)
            slot.in_use = True
            slot.taken = True
        self.idle_count = 0
        return slots

    def put_back(self, slots: list[Slot[C]], now: float) -> None:
        """Return connections taken with :meth:`take_idle`; they keep their old "last used".

        Callers that queued meanwhile get them first, in hand-out order (the connection the
        policy would have handed out next goes to the oldest waiter). The rest are idle again
        where their last release puts them among the connections released meanwhile (FIFO and
        LIFO order by last release; the round-robin ring by creation)."""
        back: list[Slot[C]] = []
        for slot in slots:
            if not slot.taken or self._slots.get(slot.conn) is not slot:
                continue
            slot.taken = False
            if self._waiters or self.closed or now >= slot.expires:
                self._release_as_before(slot, now)  # to the oldest waiter, or closed
            else:
                back.append(slot)
        if not back:
            return
        if self.config.policy is not Policy.ROUND_ROBIN and self.idle_count:
            # Connections released during the I/O are idle already: re-push everything in the
            # order of last release (the order FIFO and LIFO idle sets keep).
            meanwhile = list(self._idle)
            for slot in meanwhile:
                self._idle.remove(slot)
                slot.in_use = True
            self.idle_count = 0
            back = meanwhile + back
        back.sort(key=lambda s: s.released)
        for slot in back:
            self._release_as_before(slot, now)

    def _release_as_before(self, slot: Slot[C], now: float) -> None:
        """Release a connection that was not really used: it keeps its old "last used" time."""
        released = slot.released
        self._release_slot(slot, now)
        slot.released = released

    def close(self) -> None:
        """Close the pool: idle connections go to the trash now, borrowed ones when released,
        queued waiters fail with :class:`PoolClosedError`. Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.held is not None:
            self._settle(_INF)
        for slot in list(self._idle):
            self._idle.remove(slot)
            self.idle_count -= 1
            self._drop(slot, "closed")
        while self._waiters:
            waiter = self._waiters.popleft()
            waiter.error = PoolClosedError("fairpool: the connection pool was closed")
            waiter.wake()
        self.next_maintenance = _INF

    # ------------------------------------------------------------- maintenance
    def maintain(self, now: float) -> int:
        """Prune and plan the ``min_idle`` refill. Returns how many connections to dial now
        (capacity for them is reserved; report each with :meth:`dialled_idle` or
        :meth:`dial_failed`). Closes are queued in :attr:`trash`."""
        if self.closed:
            self.next_maintenance = _INF
            return 0
        cfg = self.config
        idle = self._idle
        if cfg.max_lifetime is not None:
            for slot in [s for s in idle if now >= s.expires]:
                self._drop_idle(slot, "lifetime")
        timeout = cfg.idle_timeout
        if timeout is not None:
            floor = cfg.min_idle
            if self._lifo:
                stale = [s for s in idle if s.released + timeout <= now]  # as scheduled
                stale.sort(key=lambda s: s.released)
                for slot in stale:
                    if len(self._slots) <= floor:
                        break
                    self._drop_idle(slot, "idle")
            elif now >= self._window_end:
                # Shrink by demand: at every moment of the window at least `_low` connections
                # sat idle, so the load never needed them. While there is traffic, keep one
                # connection per endpoint so that every proxy keeps its share; a window with no
                # borrows at all lets the pool fall to min_idle.
                borrows = self.hits + self.misses
                busy = borrows != self._window_borrows
                surplus = min(self._low, self.idle_count, len(self._slots) - floor)
                for slot in self._balanced_victims(surplus, keep_one_per_endpoint=busy):
                    self._drop_idle(slot, "demand")
                self._low = self.idle_count
                self._window_end = now + timeout
                self._window_borrows = borrows
        if cfg.leak_timeout is not None:
            self._scan_leaks(now, cfg.leak_timeout)
        need = 0
        if not self._waiters:
            need = max(0, cfg.min_idle - len(self._slots) - self.dialling)
            need = min(need, self._max - len(self._slots) - self.dialling)
            self.dialling += need
        self._schedule(now)
        return need

    def retire_idle(self, slot: Slot[C], reason: str) -> bool:
        """Close a specific idle connection (the shell's own maintenance, e.g. rebalancing).
        Returns ``False`` if it is no longer idle."""
        if slot.in_use or self._slots.get(slot.conn) is not slot:
            return False
        self._drop_idle(slot, reason)
        return True

    def retire(self, slot: Slot[C], reason: str) -> bool:
        """Close a connection for ``reason`` (e.g. ``"rebalance"``): at once if it is idle, else
        when it is released (it is then handed to nobody; the capacity it frees goes to the
        oldest waiter, who dials). Returns ``False`` if the pool no longer holds it or it is
        already retiring."""
        if self._slots.get(slot.conn) is not slot or slot.retire is not None:
            return False
        if not slot.in_use:
            self._drop_idle(slot, reason)
            return True
        slot.retire = reason
        slot.expires = -_INF  # the release path already retires expired connections
        return True

    def reserve_dial(self) -> bool:
        """Reserve capacity for a dial the shell starts on its own (not for a caller): ``False``
        at the cap, when callers are waiting, or when the pool is closed."""
        if self.closed or self._waiters or len(self._slots) + self.dialling >= self._max:
            return False
        self.dialling += 1
        return True

    def _drop_idle(self, slot: Slot[C], reason: str) -> None:
        self._idle.remove(slot)
        self.idle_count -= 1
        self._drop(slot, reason)

    def _balanced_victims(self, count: int, keep_one_per_endpoint: bool) -> list[Slot[C]]:
        """Choose up to ``count`` idle connections to close so that the open connections left stay
        balanced over endpoints: always take from the endpoint that holds the most (oldest
        connection first). With ``keep_one_per_endpoint``, never take an endpoint's last one.
        Never widen the spread (most minus fewest over the endpoints that keep connections) beyond
        what it was, or 1: when the crowded endpoints' connections are all in use, a sparse
        endpoint's idle connection stays rather than fall further behind."""
        if count <= 0:
            return []
        per_endpoint: dict[str | None, int] = {}
        for slot in self._slots.values():
            per_endpoint[slot.endpoint] = per_endpoint.get(slot.endpoint, 0) + 1
        known = [n for e, n in per_endpoint.items() if e is not None]
        limit = max(max(known, default=0) - min(known, default=0), 1)
        candidates: dict[str | None, list[Slot[C]]] = {}
        for slot in sorted(self._idle, key=lambda s: s.seq, reverse=True):
            candidates.setdefault(slot.endpoint, []).append(slot)  # oldest last: popped first
        keep = 1 if keep_one_per_endpoint else 0
        victims: list[Slot[C]] = []
        while len(victims) < count:
            top = max((n for e, n in per_endpoint.items() if e is not None), default=0)
            choices = [
                e
                for e, idle in candidates.items()
                if idle
                and (
                    e is None
                    or (
                        per_endpoint[e] > keep
                        and (per_endpoint[e] == 1 or top - per_endpoint[e] < limit)
                    )
                )
            ]
            if not choices:
                break
            endpoint = max(choices, key=lambda e: (per_endpoint[e], -candidates[e][-1].seq))
            victims.append(candidates[endpoint].pop())
            per_endpoint[endpoint] -= 1
        return victims

    def _idle_deadline(self, now: float) -> float:
        """When idle pruning may next close something: under LIFO the oldest idle connection's
        idle timeout, while the pool is above ``min_idle`` (at or below it nothing may be pruned,
        and a dial that lifts it above brings this forward); otherwise the demand window's end."""
        cfg = self.config
        if cfg.idle_timeout is None:
            return _INF
        if not self._lifo:
            return self._window_end
        if len(self._slots) <= cfg.min_idle:
            return _INF
        return min((s.released for s in self._idle), default=now) + cfg.idle_timeout

    def _schedule(self, now: float) -> None:
        cfg = self.config
        due = self._idle_deadline(now)
        if cfg.max_lifetime is not None:
            # every connection not expired yet (a borrowed one may come back idle before it
            # expires); expired borrowed ones are closed when released
            due = min(
                due, min((s.expires for s in self._slots.values() if s.expires > now), default=_INF)
            )
        if self._period is not None:
            due = min(due, now + self._period)
        if cfg.leak_timeout is not None:
            due = min(due, self.next_leak)
        if cfg.min_idle and len(self._slots) < cfg.min_idle:
            # below min_idle: a refill that could not run (waiters, cap) or whose dials are still
            # in flight and may fail: look again soon
            due = min(due, now + _REFILL_RETRY)
        self.next_maintenance = due

    # ---------------------------------------------------------------- controls
    def _scan_leaks(self, now: float, timeout: float) -> None:
        """Report (once each, in :attr:`leaked`) the borrowed connections whose borrow began
        ``timeout`` seconds ago or more, and note when the next one may be due."""
        due = now + timeout  # a later borrow is due no sooner
        for slot in self._slots.values():
            if not slot.in_use or slot.leak or slot.taken or slot is self.held:
                continue
            deadline = slot.borrowed + timeout
            if deadline <= now:
                slot.leak = LEAKED
                self.leaks += 1
                self.leaked.append(slot)
            elif deadline < due:
                due = deadline
        self.next_leak = due

    def take_leaks(self) -> tuple[list[Slot[C]], list[tuple[Slot[C], float]]]:
        """The connections reported as leaked since the last call (log a WARNING each, with
        ``slot.borrower``) and the reported ones released since (log one INFO line each, with
        how many seconds they were held)."""
        leaked, back = self.leaked, self.leaks_back
        self.leaked, self.leaks_back = [], []
        return leaked, back

    def exempt(self, conn: C) -> bool:
        """Exempt ``conn``'s current borrow from leak detection (a pub/sub, ``Monitor`` or
        single-connection client holds it on purpose). Returns ``False`` if it is not borrowed."""
        slot = self._slots.get(conn)
        if slot is None or not slot.in_use:
            return False
        if not slot.leak:
            slot.leak = EXEMPT
        return True

    def resize(self, config: PoolConfig, now: float) -> None:
        """Apply new caps (``max_connections``, ``min_idle``, ``max_idle`` of a validated
        ``config``): growing grants the new capacity to waiters at once (they dial); shrinking
        closes surplus idle connections now and retires surplus borrowed ones when they come back,
        so that no more than the new cap are open once they are back."""
        self.config = config
        self._max = config.max_connections
        self._max_idle = config.max_idle
        if self._max_idle is not None:
            self._close_idle(self.idle_count - self._max_idle, "max_idle")
        self._close_idle(len(self._slots) + self.dialling - self._max, "resize")
        slots = self._slots.values()
        over = len(self._slots) + self.dialling - self._max
        over -= sum(1 for s in slots if s.retire is not None)  # those close when released anyway
        for slot in [s for s in slots if s.in_use and s.retire is None][: max(over, 0)]:
            slot.retire = "resize"
            slot.expires = -_INF
        self._grant_capacity()
        self._schedule(now)
        if config.min_idle > len(self._slots):
            self.next_maintenance = -_INF  # refill now

    def _close_idle(self, count: int, reason: str) -> None:
        """Close ``count`` idle connections (none if ``count`` ≤ 0), keeping the endpoints
        balanced if it can."""
        victims = self._balanced_victims(count, keep_one_per_endpoint=False)
        chosen = set(map(id, victims))
        victims += [s for s in self._idle if id(s) not in chosen][: max(count - len(victims), 0)]
        for slot in victims:
            self._drop_idle(slot, reason)

    def _over_cap(self, slot: Slot[C]) -> None:
        """A new connection joins a pool that :meth:`resize` shrank below what was open or being
        dialled: retire it (when released) unless enough others retire already."""
        if len(self._slots) + self.dialling <= self._max:
            return
        retiring = sum(1 for s in self._slots.values() if s.retire is not None)
        if len(self._slots) + self.dialling - retiring > self._max:
            slot.retire = "resize"
            slot.expires = -_INF

    def drain(self, endpoint: Endpoint | None = None) -> int:
        """Replace every connection (to ``endpoint`` only, if given: the configured endpoint it
        was dialled to, or the ``host:port`` its socket is connected to): idle ones are closed
        now, borrowed ones when released (handed to nobody); the capacity freed goes to waiters
        (who dial) and ``min_idle`` is refilled by maintenance. No caller fails. Returns how many
        connections it retired."""
        self.drains += 1
        peer = None if endpoint is None else label(endpoint)
        count = 0
        for slot in list(self._slots.values()):
            if endpoint is None or slot.target == endpoint or slot.endpoint == peer:
                count += self.retire(slot, "drain")
        return count

    # ------------------------------------------------------------ observation
    def idle_slots(self) -> Iterator[Slot[C]]:
        """Idle connections in hand-out order."""
        return iter(self._idle)

    def slots(self) -> list[Slot[C]]:
        """Every connection the pool holds (idle and in use)."""
        return list(self._slots.values())

    def slot_of(self, conn: C) -> Slot[C] | None:
        """The pool's record of ``conn``, or ``None`` if it does not hold it."""
        return self._slots.get(conn)

    @property
    def open_count(self) -> int:
        """Connections held: idle + in use (not those still dialling)."""
        return len(self._slots)

    @property
    def in_use_count(self) -> int:
        """Connections borrowed now."""
        return len(self._slots) - self.idle_count

    @property
    def waiting(self) -> int:
        """Callers queued for a connection."""
        return len(self._waiters)

    def stats(self) -> PoolStats:
        """An immutable snapshot of the counters."""
        borrows = dict(self._closed_endpoint_borrows)
        conns: dict[str, int] = {}
        for slot in self._slots.values():
            if slot.endpoint is not None:
                borrows[slot.endpoint] = borrows.get(slot.endpoint, 0) + slot.borrows
                conns[slot.endpoint] = conns.get(slot.endpoint, 0) + 1
        return PoolStats(
            policy=self.config.policy.value,
            max_connections=self._max,
            idle=self.idle_count,
            in_use=self.in_use_count,
            dialling=self.dialling,
            waiting=len(self._waiters),
            created=self.created,
            closed=dict(self._closed_counts),
            borrows=self.hits + self.misses,
            hits=self.hits,
            misses=self.misses,
            waits=self.waits,
            wait_time_total=self.wait_total,
            wait_time_max=self.wait_max,
            timeouts=self.timeouts,
            reborrows=self.reborrows,
            endpoint_borrows=borrows,
            endpoint_connections=conns,
            leaks=self.leaks,
            sheds=self.sheds,
            drains=self.drains,
        )
