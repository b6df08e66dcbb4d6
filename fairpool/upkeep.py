"""The core's maintenance decisions (a base of :class:`~fairpool.core.PoolCore`): idle pruning
by the policy's own strategy, lifetimes, the ``min_idle`` refill plan, retiring chosen
connections, and the one deadline (``next_maintenance``) at which all of it is due. I/O-free;
the shells act on the answers (see :mod:`fairpool.lifecycle` for the plans built on them)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from .config import PoolConfig
from .policies import IdleSet, balanced_victims
from .slot import LEAKED, Slot, Waiter

__all__ = ["Upkeep"]

C = TypeVar("C")
_INF = math.inf
_REFILL_RETRY = 1.0  # seconds: check again this soon while the pool is below min_idle


class Upkeep(Generic[C]):
    """Maintenance over the core's state (declared here, kept by :class:`PoolCore`)."""

    config: PoolConfig
    closed: bool
    next_maintenance: float
    idle_count: int
    dialling: int
    hits: int
    misses: int
    leaks: int
    leaked: list[Slot[C]]
    next_leak: float
    held: Slot[C] | None
    _idle: IdleSet
    _slots: dict[C, Slot[C]]
    _waiters: deque[Waiter]
    _max: int
    _period: float | None
    _low: int
    _window_end: float
    _window_borrows: int
    trash: list[tuple[C, str]]
    later: list[tuple[C, str]]

    def _drop(self, slot: Slot[C], reason: str) -> None:
        raise NotImplementedError

    def discard(self, conn: C, reason: str) -> None:
        raise NotImplementedError

    @property
    def room(self) -> int:
        """Places left under ``max_connections``: the cap minus the connections open and being
        dialled (negative while :meth:`~fairpool.controls.Controls.resize` has shrunk the cap
        below what is open). Every "may one more be dialled?" decision asks this."""
        return self._max - len(self._slots) - self.dialling

    # ------------------------------------------------------------- maintenance
    def maintain(self, now: float) -> int:
        """Prune and plan the ``min_idle`` refill. Returns how many connections to dial now
        (capacity for them is reserved; report each with :meth:`dialled_idle` or
        :meth:`dial_failed`). Closes are queued in :attr:`trash`."""
        self.flush_later()
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
            # the policy's pruning strategy (by age, or by demand: _demand_victims)
            room = len(self._slots) - cfg.min_idle
            reason, victims = idle.prune(now, timeout, room, self._demand_victims)
            for slot in victims:
                self._drop_idle(slot, reason)
            if now >= self._window_end:
                self._low = self.idle_count
                self._window_end = now + timeout
                self._window_borrows = self.hits + self.misses
        if cfg.leak_timeout is not None:
            self._scan_leaks(now, cfg.leak_timeout)
        need = 0
        if not self._waiters:
            # min_idle ≤ max_connections (validated), so the refill stays under the cap; never
            # negative: after resize() shrank the cap, more may be open than it allows
            need = max(0, cfg.min_idle - len(self._slots) - self.dialling)
            self.dialling += need
        self._schedule(now)
        return need

    def _demand_victims(self, now: float) -> tuple[str, list[Slot[C]]]:
        """Shrink by demand (the fair policies' pruning): when the demand window ends, at every
        moment of it at least ``_low`` connections sat idle, so the load never needed them. While
        there is traffic, keep one connection per endpoint so that every proxy keeps its share; a
        window with no borrows at all lets the pool fall to ``min_idle``."""
        if now < self._window_end:
            return "demand", []
        busy = self.hits + self.misses != self._window_borrows
        surplus = min(self._low, self.idle_count, len(self._slots) - self.config.min_idle)
        return "demand", balanced_victims(
            self._slots.values(),
            self._idle,
            surplus,
            keep_one_per_endpoint=busy,
        )

    def discard_dead(self, conn: C) -> list[Slot[C]]:
        """A borrowed connection is unusable (its readiness poll saw the end of the stream, a
        reset or a stale reply): close it as :meth:`discard` does, but later (see
        :meth:`discard_idle`), and return the idle connections, for the shell to poll outside the
        lock (the server may have closed them all)."""
        before = len(self.trash)
        self.discard(conn, "health_check")
        self._defer(before)
        return list(self._idle)

    def discard_idle(self, slots: Iterable[Slot[C]], since: float, reason: str) -> int:
        """Close those of ``slots`` that have been idle since before ``since``: the shell took
        :meth:`discard_dead`'s snapshot at ``since`` and polled it outside the lock, and these
        showed an event too (see the shells' ``_sweep``). One released after ``since`` was in
        use during the poll and is left alone. Their closing waits in :attr:`later` until the
        shell's next release (or maintenance, or :meth:`close`), so that the borrow that found
        them dials at once instead of closing them one by one. Returns how many."""
        before = len(self.trash)
        for slot in slots:
            if slot.released < since:
                self.retire_idle(slot, reason)  # if it is still idle, and still this pool's
        return self._defer(before)

    def _defer(self, before: int) -> int:
        """Move the closes queued in :attr:`trash` after its first ``before`` to :attr:`later`;
        returns how many."""
        trash = self.trash
        retired = trash[before:]
        del trash[before:]
        self.later += retired
        return len(retired)

    def flush_later(self) -> None:
        """Queue the closes :meth:`discard_idle` deferred in :attr:`trash`, for the shell to
        close now."""
        self.trash += self.later
        self.later = []

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
        at the cap, when callers are waiting, or when the pool is closed — and, in a pool that
        does not block, for the last free place while no connection is idle: a caller arriving
        during that dial would find nothing to borrow and no room to dial, and fail, where
        redis-py's pool (which dials nothing on its own) would have served it. It dials there
        itself instead, to the endpoint holding the fewest."""
        room = self.room
        if self.closed or self._waiters or room <= 0:
            return False
        if not self.config.block and not self.idle_count and room == 1:
            return False
        self.dialling += 1
        return True

    def _drop_idle(self, slot: Slot[C], reason: str) -> None:
        self._idle.remove(slot)
        self.idle_count -= 1
        self._drop(slot, reason)

    def _idle_deadline(self, now: float) -> float:
        """When idle pruning may next close something (the policy's answer, see
        :meth:`~fairpool.policies.IdleSet.prune_deadline`)."""
        cfg = self.config
        if cfg.idle_timeout is None:
            return _INF
        room = len(self._slots) - cfg.min_idle
        return self._idle.prune_deadline(now, cfg.idle_timeout, room, self._window_end)

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

    def _scan_leaks(self, now: float, timeout: float) -> None:
        """Report (once each, in :attr:`leaked`) the borrowed connections whose borrow began
        ``timeout`` seconds ago or more (``leak_timeout``), and note when the next one may be
        due."""
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
