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

Turns (``turn_borrows``): while callers wait, a release by a caller the shell names (``owner``)
whose turn is young *holds* the connection for that caller's next :meth:`~PoolCore.acquire`
instead of handing it over (sparing a thread switch); any other call first hands the held
connection to the oldest waiter. docs/design.md ("Turns") has the whole rule.

Everything here runs under the shell's lock, so every method is short and allocation-light; the
borrow/release hot path is a handful of attribute updates.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from typing import TypeVar

from .config import PoolConfig
from .controls import Controls
from .errors import PoolClosedError, PoolExhaustedError, PoolOverloadedError, PoolTimeoutError
from .metrics.histogram import BUCKETS
from .metrics.window import Timings
from .policies import make_idle_set
from .slot import DIAL, LEAKED, WAIT, Slot, Waiter, _Token
from .stats import CLOSE_REASONS, PoolStats, snapshot

__all__ = ["DIAL", "WAIT", "PoolCore", "Slot", "Waiter"]

C = TypeVar("C")
_INF = math.inf


class PoolCore(Controls[C]):
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
        # needs_check()'s threshold: a shell whose every borrow must go through its own connect
        # hook sets it below zero (no connection is ever fresh).
        self.check_after = config.health_check_after
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
        self.later: list[tuple[C, str]] = []  # closes deferred to the next release (discard_idle)
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
        self.timings = Timings(start)  # wait / hold / dial histograms (fairpool.metrics)
        self._hold = self.timings.hold  # recorded on every release
        self.next_leak = start + (config.leak_timeout or _INF)  # no borrow is due sooner
        self._low = 0
        self._window_end = start + (config.idle_timeout or _INF)
        self._window_borrows = 0
        self.next_maintenance = _INF
        self._schedule(start)

    # ------------------------------------------------------------------ borrow
    def acquire(
        self, now: float, owner: object = None, who: Callable[[], object] | None = None
    ) -> Slot[C] | _Token:
        """Borrow: an idle :class:`Slot` (marked in use), :data:`DIAL` or :data:`WAIT`.

        ``owner`` identifies the caller (the shell's thread) for turns — or ``who()`` names it,
        called only when a turn is possible, so that a shell for which naming the caller costs
        something pays only then; the connection held for it, if any, is handed back. Raises
        :class:`PoolClosedError` on a closed pool and :class:`PoolExhaustedError` at the cap
        when ``block`` is off.
        """
        held = self.held
        if held is not None:
            if owner is None and who is not None:
                owner = who()
            if owner is not None and owner == self._held_owner and now < held.expires:
                self.held = None
                held.borrowed = now
                held.turn += 1
                held.borrows += 1
                self.hits += 1
                self.reborrows += 1
                held.fresh = not self.needs_check(held, now)
                return held
            self._settle(now)
        n = self.idle_count
        if n and not self._waiters and not self.closed:
            take = self._idle.take  # the policy's next-out, a C method for FIFO and LIFO
            while n:
                slot = take()
                n = self.idle_count = n - 1
                if now < slot.expires:
                    slot.in_use = True
                    slot.borrowed = now
                    slot.turn = 1
                    slot.borrows += 1
                    self.hits += 1
                    # needs_check(), inlined on the hot path
                    slot.fresh = now - slot.released < self.check_after and not slot.suspect
                    if n < self._low:
                        self._low = n
                    return slot
                self._drop(slot, "lifetime")
        return self._acquire_slow()

    def _acquire_slow(self) -> _Token:
        if self.closed:
            raise PoolClosedError("fairpool: the connection pool is closed")
        self._low = 0
        if not self._waiters and self.room > 0:
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
        self.timings.wait.observe(waited)

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

    def give_back(self, got: object, waiter: Waiter | None, now: float) -> None:
        """Undo a borrow in progress (the caller was interrupted or cancelled): leave the queue if
        ``waiter`` is given, and hand back what was granted — a :class:`Slot` is released, a
        :data:`DIAL` reservation freed. ``got`` is what :meth:`acquire` returned when there is no
        waiter."""
        granted = self.cancel_wait(waiter, now) if waiter is not None else got
        if granted is DIAL:
            self.dial_failed()
        elif isinstance(granted, Slot):
            self.release(granted.conn, now)

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
    def release(
        self,
        conn: C,
        now: float,
        reusable: bool = True,
        owner: object = None,
        who: Callable[[], object] | None = None,
    ) -> bool:
        """Give a borrowed connection back. Returns ``False`` (and changes nothing) if the pool
        does not hold it as borrowed: a foreign connection, or a second release.

        With an ``owner`` (or ``who()``, called only then, see :meth:`acquire`) whose turn is not
        over (fewer than ``turn_borrows`` borrows in a row) while callers wait, the connection is
        held for that owner's next borrow (see the module docstring) instead of going to the
        oldest waiter."""
        slot = self._slots.get(conn)
        if slot is None:
            return False
        return self.release_slot(slot, now, reusable, owner, who)

    def release_slot(
        self,
        slot: Slot[C],
        now: float,
        reusable: bool,
        owner: object = None,
        who: Callable[[], object] | None = None,
    ) -> bool:
        """:meth:`release` by the connection's slot (as :meth:`borrowed` returned it, perhaps
        before the shell took its lock): the same checks and outcome, without the lookup."""
        if not slot.in_use or slot is self.held or slot.taken:
            return False
        held_for = now - slot.borrowed
        hold = self._hold  # Histogram.observe(), inlined on the hot path
        hold.counts[bisect_left(BUCKETS, held_for)] += 1
        hold.sum += held_for
        if held_for > hold.window_max:
            hold.new_max(held_for)
        if slot.leak:
            if slot.leak == LEAKED:
                self.leaks_back.append((slot, held_for))
            slot.leak = 0
        if self.held is not None:
            self._settle(now)
        if reusable:
            if self._waiters:
                if (
                    (owner is not None or who is not None)
                    and slot.turn < self._turn
                    and now < slot.expires
                    and not self.closed
                ):
                    slot.released = now
                    self.held = slot
                    self._held_owner = owner if owner is not None else who()  # type: ignore[misc]
                    self.holds += 1
                    return True
            elif (
                now < slot.expires
                and not self.closed
                and (self._max_idle is None or self.idle_count < self._max_idle)
            ):
                # _release_slot()'s last case (it becomes idle), inlined on the hot path
                slot.released = now
                slot.in_use = False
                self.idle_count += 1
                push = self._idle.push  # a C method for FIFO and LIFO: loaded, then called
                push(slot)
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
            slot.fresh = not self.needs_check(slot, now)
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
        is suspect, or it has been idle for ``health_check_after`` seconds (:attr:`check_after`).
        Every borrow also gets the shell's cheap readiness poll; this decides only the configured
        check. The core records the answer in ``slot.fresh`` whenever it hands a connection out,
        so the shells' fast paths read it instead of deciding again."""
        return slot.suspect or now - slot.released >= self.check_after

    @property
    def turn_possible(self) -> bool:
        """Whether naming the caller (``owner``) can matter to the next :meth:`acquire` or
        :meth:`release`: a connection is held for a turn, or callers wait (a release may start
        one). A shell for which naming the caller costs something names it only then."""
        return self.held is not None or bool(self._waiters)

    def borrowed(self, conn: C) -> Slot[C] | None:
        """``conn``'s slot if it is borrowed now (a release would take it), else ``None``: a
        foreign connection, a second release, one held for a turn or taken out for I/O."""
        slot = self._slots.get(conn)
        if slot is None or not slot.in_use or slot is self.held or slot.taken:
            return None
        return slot

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
        while waiters and not self.closed and self.room > 0:
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
        LIFO by last release, the ring by creation). Deferred closes are queued (disconnect)."""
        self.flush_later()
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
        # Connections released during the I/O are idle already: those the policy places by last
        # release are re-pushed with the returning ones, in that order.
        meanwhile = self._idle.reorder()
        for slot in meanwhile:
            slot.in_use = True
        self.idle_count -= len(meanwhile)
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
        self.flush_later()
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

    # ------------------------------------------------------------ observation
    def idle_slots(self) -> list[Slot[C]]:
        """The idle connections now, in hand-out order (a copy, to look at outside the lock)."""
        return list(self._idle)

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

    def stats(self, now: float | None = None, reset: bool = False) -> PoolStats:
        """An immutable snapshot of the counters, with the wait / hold / dial histograms and the
        window (:class:`~fairpool.metrics.window.StatsWindow`) ending ``now`` (default: the
        monotonic clock); ``reset`` starts a new window."""
        base = snapshot(
            self, self._slots.values(), self._closed_counts, self._closed_endpoint_borrows
        )
        stats: PoolStats = self.timings.added_to(
            base, time.monotonic() if now is None else now, reset
        )
        return stats
