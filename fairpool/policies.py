"""Idle-connection orders: where a borrow finds its connection.

Each policy is a small container of idle :class:`~fairpool.slot.Slot` objects with the same
interface — ``push`` (a connection became idle), ``take`` (the next one to hand out; the core
calls it only when one is idle),
``remove`` (a specific idle connection is being closed), ``__len__`` and ``__iter__``
(hand-out order) — and its own pruning strategy for ``idle_timeout`` (``prune`` and
``prune_deadline``): LIFO closes each connection idle for ``idle_timeout``; the fair policies,
whose rotation keeps every connection's idle time short, shrink by demand (the core's demand
window). ``reorder`` says which idle connections sit by last release (FIFO, LIFO) rather than by
creation (the round-robin ring). The core pool calls them under its lock; none does I/O.

* :class:`LifoIdle` — a stack: the most recently released connection goes out first.
* :class:`FifoIdle` — a queue: the least recently released connection goes out first.
* :class:`RoundRobinIdle` — a ring in creation order with a cursor: the first idle connection
  after the one handed out last.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .config import Policy
from .slot import Slot

Victims = tuple[str, list[Slot[Any]]]
"""What a pruning closes: the close reason and the idle connections, oldest first."""

__all__ = [
    "FifoIdle",
    "IdleSet",
    "LifoIdle",
    "RoundRobinIdle",
    "balanced_victims",
    "make_idle_set",
]


class IdleSet:
    """Interface of an idle container (see the module docstring)."""

    __slots__ = ()

    def push(self, slot: Slot[Any]) -> None:
        """Add a connection that just became idle."""
        raise NotImplementedError

    def take(self) -> Slot[Any]:
        """Remove and return the next connection to hand out; only called when one is idle (the
        core counts them). FIFO and LIFO bind it to their container's C method."""
        raise NotImplementedError

    def remove(self, slot: Slot[Any]) -> None:
        """Remove a specific idle connection (it is being closed)."""
        raise NotImplementedError

    def handed_out(self, slot: Slot[Any]) -> None:
        """Note that ``slot`` was handed out by another route (a dial or a direct hand-off)."""

    def prune(
        self, now: float, timeout: float, room: int, by_demand: Callable[[float], Victims]
    ) -> Victims:
        """The idle connections ``idle_timeout`` (``timeout``) closes now, at most ``room`` of
        them (the connections above ``min_idle``). The fair policies shrink by demand: the
        core's ``by_demand(now)`` chooses."""
        return by_demand(now)

    def prune_deadline(self, now: float, timeout: float, room: int, window_end: float) -> float:
        """When :meth:`prune` may next close something: for the fair policies the end of the
        core's demand window."""
        return window_end

    def reorder(self) -> list[Slot[Any]]:
        """Take out (and return) the idle connections placed by their last release, so that
        connections put back after I/O can be placed among them by the same rule: every one for
        FIFO and LIFO; none for the round-robin ring, which orders by creation."""
        slots = list(self)
        for slot in slots:
            self.remove(slot)
        return slots

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Slot[Any]]:
        raise NotImplementedError


class LifoIdle(IdleSet):
    """A stack (redis-py's and redigo's order)."""

    __slots__ = ("_stack", "push", "take")

    def __init__(self) -> None:
        self._stack: list[Slot[Any]] = []
        # Bound C methods: the hot path pays no Python frame for push/take.
        self.push = self._stack.append  # type: ignore[method-assign,assignment]
        self.take = self._stack.pop  # type: ignore[method-assign]

    def remove(self, slot: Slot[Any]) -> None:
        self._stack.remove(slot)

    def __len__(self) -> int:
        return len(self._stack)

    def __iter__(self) -> Iterator[Slot[Any]]:
        return iter(self._stack[::-1])

    def prune(
        self, now: float, timeout: float, room: int, by_demand: Callable[[float], Victims]
    ) -> Victims:
        """Under LIFO the idle connections at the bottom of the stack are the ones the load does
        not need: close each that has been idle for ``timeout``, oldest first."""
        stale = [s for s in self._stack if s.released + timeout <= now]
        stale.sort(key=lambda s: s.released)
        return "idle", stale[: max(room, 0)]

    def prune_deadline(self, now: float, timeout: float, room: int, window_end: float) -> float:
        """The oldest idle connection's idle timeout, while there is room to prune (at or below
        ``min_idle`` nothing may be pruned, and a dial that lifts the pool above it brings this
        forward)."""
        if room <= 0:
            return math.inf
        return min((s.released for s in self._stack), default=now) + timeout


class FifoIdle(IdleSet):
    """A queue (go-redis ``PoolFIFO``)."""

    __slots__ = ("_queue", "push", "take")

    def __init__(self) -> None:
        self._queue: deque[Slot[Any]] = deque()
        self.push = self._queue.append  # type: ignore[method-assign,assignment]
        self.take = self._queue.popleft  # type: ignore[method-assign]

    def remove(self, slot: Slot[Any]) -> None:
        self._queue.remove(slot)

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Slot[Any]]:
        return iter(self._queue)


class RoundRobinIdle(IdleSet):
    """A ring in creation order: a borrow takes the first idle slot after the last one handed out.

    The idle slots are kept in hand-out order — by creation sequence number, starting after the
    cursor (the one handed out last) and wrapping around — so a borrow is a ``popleft``. A
    release appends (the usual case: the connection handed out longest ago comes back first) or,
    out of turn, is inserted in its place; a hand-out by another route moves the cursor and
    rotates the ring.
    """

    __slots__ = ("_cursor", "_ring")

    def __init__(self) -> None:
        self._ring: deque[Slot[Any]] = deque()
        self._cursor = -1

    def _after_cursor(self, seq: int) -> int:
        """``seq``'s place in hand-out order: how far after the cursor it comes."""
        return (seq - self._cursor - 1) % _WRAP

    def push(self, slot: Slot[Any]) -> None:
        ring = self._ring
        if ring:
            place = self._after_cursor
            key = place(slot.seq)
            if key < place(ring[-1].seq):
                for i, other in enumerate(ring):
                    if key < place(other.seq):
                        ring.insert(i, slot)
                        return
        ring.append(slot)

    def take(self) -> Slot[Any]:
        slot = self._ring.popleft()
        self._cursor = slot.seq
        return slot

    def remove(self, slot: Slot[Any]) -> None:
        self._ring.remove(slot)

    def handed_out(self, slot: Slot[Any]) -> None:
        self._cursor = slot.seq
        ring = self._ring
        if ring:
            place = self._after_cursor
            first = min(range(len(ring)), key=lambda i: place(ring[i].seq))
            ring.rotate(-first)

    def reorder(self) -> list[Slot[Any]]:
        return []  # the ring is in creation order: put-back connections find their place

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Slot[Any]]:
        return iter(self._ring)


_WRAP = 1 << 62
"""Larger than any creation sequence number: the ring's order wraps at the cursor."""


def balanced_victims(
    slots: Iterable[Slot[Any]], idle: Iterable[Slot[Any]], count: int, keep_one_per_endpoint: bool
) -> list[Slot[Any]]:
    """Demand pruning's choice (the fair policies, :meth:`fairpool.core.PoolCore.maintain`):
    of the ``idle`` connections among all the pool's ``slots``, choose up to ``count`` to close
    so that the open connections left stay balanced over endpoints: always take from the
    endpoint that holds the most (oldest connection first). With ``keep_one_per_endpoint``,
    never take an endpoint's last one. Never widen the spread (most minus fewest over the
    endpoints that keep connections) beyond what it was, or 1: when the crowded endpoints'
    connections are all in use, a sparse
    endpoint's idle connection stays rather than fall further behind."""
    if count <= 0:
        return []
    per_endpoint: dict[str | None, int] = {}
    for slot in slots:
        per_endpoint[slot.endpoint] = per_endpoint.get(slot.endpoint, 0) + 1
    known = [n for e, n in per_endpoint.items() if e is not None]
    limit = max(max(known, default=0) - min(known, default=0), 1)
    candidates: dict[str | None, list[Slot[Any]]] = {}
    for slot in sorted(idle, key=lambda s: s.seq, reverse=True):
        candidates.setdefault(slot.endpoint, []).append(slot)  # oldest last: popped first
    keep = 1 if keep_one_per_endpoint else 0
    victims: list[Slot[Any]] = []
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


_CLASSES: dict[Policy, type[IdleSet]] = {
    Policy.LIFO: LifoIdle,
    Policy.FIFO: FifoIdle,
    Policy.ROUND_ROBIN: RoundRobinIdle,
}


def make_idle_set(policy: Policy) -> IdleSet:
    """Return an empty idle container for ``policy``."""
    return _CLASSES[policy]()
