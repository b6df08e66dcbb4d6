"""The core's run-time controls (a base of :class:`~fairpool.core.PoolCore`, over
:class:`~fairpool.upkeep.Upkeep`): ``resize()`` of the caps, ``drain()`` of every connection (or
one endpoint's), and the leak reports of ``leak_timeout`` (found by maintenance, see
:meth:`~fairpool.upkeep.Upkeep._scan_leaks`). I/O-free; the shells close what lands in the trash
and log the leaks (:mod:`fairpool.leaks`)."""

from __future__ import annotations

import math
from typing import TypeVar

from .config import PoolConfig
from .endpoints import Endpoint, label
from .policies import balanced_victims
from .slot import EXEMPT, Slot
from .upkeep import Upkeep

__all__ = ["Controls"]

C = TypeVar("C")
_INF = math.inf


class Controls(Upkeep[C]):
    """Resize, drain and leak reports over the core's state (kept by :class:`PoolCore`)."""

    _max_idle: int | None
    drains: int
    leaks_back: list[tuple[Slot[C], float]]

    def _grant_capacity(self) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------- leaks
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

    # ---------------------------------------------------------------- resize
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
        self._close_idle(-self.room, "resize")
        slots = self._slots.values()
        over = -self.room
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
        victims = balanced_victims(
            self._slots.values(), self._idle, count, keep_one_per_endpoint=False
        )
        chosen = set(map(id, victims))
        victims += [s for s in self._idle if id(s) not in chosen][: max(count - len(victims), 0)]
        for slot in victims:
            self._drop_idle(slot, reason)

    def _over_cap(self, slot: Slot[C]) -> None:
        """A new connection joins a pool that :meth:`resize` shrank below what was open or being
        dialled: retire it (when released) unless enough others retire already."""
        over = -self.room
        if over <= 0:
            return
        retiring = sum(1 for s in self._slots.values() if s.retire is not None)
        if over > retiring:
            slot.retire = "resize"
            slot.expires = -_INF

    # ----------------------------------------------------------------- drain
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
