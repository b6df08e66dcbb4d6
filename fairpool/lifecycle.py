"""Plans for the shells' background work: dials, the ``min_idle`` refill, reconnects in place,
endpoint probes and rebalancing. I/O-free, like :mod:`fairpool.core`.

:class:`Planner` joins the :class:`~fairpool.core.PoolCore` (capacity, waiters, lifecycle) and,
with ``endpoints=[...]``, the :class:`~fairpool.endpoints.EndpointSet` (dial order, circuit
breakers, the spread of connections). It decides; the shells (sync and asyncio) only execute:

* a dial tries the targets of :meth:`Planner.dial_order` in turn (``[None]`` without endpoints:
  the pool's own host), reporting :meth:`~Planner.dialling` before each attempt,
  :meth:`~Planner.dial_error` after a failed one and :meth:`~Planner.connected` after the one that
  worked — or :meth:`~Planner.dial_abandoned` when every target failed;
* a refill dials :meth:`PoolCore.maintain`'s count and hands back what it did not use with
  :meth:`~Planner.refill_failed`;
* a borrowed connection whose socket is gone is reconnected in place only if
  :meth:`~Planner.may_reconnect`; a failed reconnect asks :meth:`~Planner.reconnect_failed`
  whether the caller should be given another connection instead of the error;
* maintenance probes :meth:`~Planner.probes_due` (:meth:`~Planner.probe_plan` says whether the
  probe's connection joins the pool or is thrown away) and then runs
  :meth:`~Planner.rebalance_step` until it answers :data:`DONE`.

Every method runs under the shell's lock and returns at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from .core import PoolCore
from .endpoints import Endpoint, EndpointSet
from .slot import Slot, _Token

__all__ = ["DIAL_ONE", "DONE", "JOIN", "REBALANCE_BUDGET", "THROWAWAY", "WAIT_RETIRE", "Planner"]

C = TypeVar("C")

REBALANCE_BUDGET = 2.0
"""Seconds one maintenance run may spend moving connections between endpoints."""

DONE = _Token("DONE")
"""Rebalancing: nothing (more) to move."""
DIAL_ONE = _Token("DIAL_ONE")
"""Rebalancing: capacity is reserved; dial one connection (idle) in :meth:`Planner.dial_order`."""
WAIT_RETIRE = _Token("WAIT_RETIRE")
"""Rebalancing: a borrowed connection retires when released; look again shortly."""
JOIN = _Token("JOIN")
"""Probe: capacity is reserved; the probe's connection joins the pool as an idle one."""
THROWAWAY = _Token("THROWAWAY")
"""Probe: the pool is at its cap; connect, then close the probe's connection at once."""


def staying(slots: Iterable[Slot[Any]]) -> list[Any]:
    """The endpoints (``target``) of the connections that are not being retired."""
    return [s.target for s in slots if s.retire is None]


class Planner(Generic[C]):
    """Dial, refill, reconnect, probe and rebalancing decisions over one pool's core and its
    endpoints (``None`` without ``endpoints=[...]``)."""

    __slots__ = ("core", "endpoints")

    def __init__(self, core: PoolCore[C], endpoints: EndpointSet | None) -> None:
        self.core = core
        self.endpoints = endpoints

    # ------------------------------------------------------------------ dials
    def dial_order(self, now: float, only: Endpoint | None = None) -> list[Endpoint | None]:
        """The targets a dial tries, best first: the endpoint holding the fewest connections
        (see :meth:`EndpointSet.dial_order`), or ``only`` that one (a probe); ``[None]`` — the
        pool's own address — without endpoints. (With endpoints every target, and so every
        connection's ``target``, is one of them.)"""
        endpoints = self.endpoints
        if endpoints is None:
            return [None]
        if only is not None:
            return [only]
        return list(endpoints.dial_order(staying(self.core.slots()), now))

    def dialling(self, target: Endpoint | None) -> None:
        """An attempt to connect to ``target`` starts."""
        if self.endpoints is not None:
            self.endpoints.dialling(target)  # type: ignore[arg-type]

    def dial_error(self, target: Endpoint | None, now: float) -> None:
        """The attempt to connect to ``target`` failed: its breaker opens (the dial goes on to the
        next target, or gives up with :meth:`dial_abandoned`)."""
        if self.endpoints is not None:
            self.endpoints.dialled(target, False, now)  # type: ignore[arg-type]

    def dial_abandoned(self) -> None:
        """Every target failed: the dial's reserved capacity is freed."""
        self.core.dial_failed()

    def connected(
        self, conn: C, target: Endpoint | None, now: float, for_caller: bool = True
    ) -> Slot[C]:
        """The attempt to connect to ``target`` worked: its breaker closes and the connection
        joins the pool, borrowed by the caller (``for_caller``) or idle (a refill, a rebalancing
        dial, a probe, a dial whose caller gave up)."""
        if self.endpoints is not None:
            self.endpoints.dialled(target, True, now)  # type: ignore[arg-type]
        core = self.core
        slot = core.dialled(conn, now) if for_caller else core.dialled_idle(conn, now)
        slot.target = target
        return slot

    def refill_failed(self, remaining: int) -> None:
        """A refill stops early: free the capacity reserved for its ``remaining`` dials."""
        for _ in range(remaining):
            self.core.dial_failed()

    # -------------------------------------------------------- reconnect in place
    def may_reconnect(self, slot: Slot[C]) -> bool:
        """Whether a borrowed connection whose socket is gone may reconnect where it was: not
        while its endpoint is down (the caller gets a connection to another endpoint instead, and
        the endpoint's probe tells when it is back)."""
        endpoints = self.endpoints
        return endpoints is None or endpoints.up(slot.target)

    def reconnect_failed(self, slot: Slot[C], now: float) -> bool:
        """A reconnect in place failed (the shell has discarded the connection). With endpoints
        the endpoint is backed off and the caller should get another connection (``True``);
        without them the caller gets the error (``False``)."""
        endpoints = self.endpoints
        if endpoints is None:
            return False
        endpoints.report(slot.target, False, now)
        return True

    # ----------------------------------------------------------- maintenance
    def probes_due(self, now: float, force: bool = False) -> list[Endpoint]:
        """The endpoints to probe now (every one that is down when ``force``)."""
        if self.endpoints is None or self.core.closed:
            return []
        return self.endpoints.probes_due(now, force)

    def probe_plan(self, endpoint: Endpoint) -> _Token | None:
        """How to probe ``endpoint``: :data:`JOIN` (capacity reserved: dial it with
        ``only=endpoint`` and keep the connection), :data:`THROWAWAY` (at the cap: the shell
        reports :meth:`dialling`, connects, closes, then reports :meth:`probe_done`), or ``None``
        (the pool is shut down)."""
        core = self.core
        if core.closed:
            return None
        if core.reserve_dial():
            return JOIN
        self.dialling(endpoint)
        return THROWAWAY

    def probe_done(self, endpoint: Endpoint, ok: bool, now: float) -> None:
        """A throwaway probe of ``endpoint`` ended."""
        assert self.endpoints is not None
        self.endpoints.dialled(endpoint, ok, now)

    def rebalance_step(self, retiring: list[Slot[C]], now: float) -> _Token:
        """One step of moving connections from the most crowded endpoint to a sparse one that is
        up (one that recovered, or was added), until the spread is within one. Spare capacity is
        used first (:data:`DIAL_ONE`); at the cap a connection to the crowded endpoint is retired
        — an idle one at once, a borrowed one when it is released (``rebalance`` in
        ``stats().closed``; it is added to ``retiring`` until its replacement can be dialled, and
        meanwhile no other is retired and the answer is :data:`WAIT_RETIRE`) — and replaced by a
        dial. :data:`DONE` when the
        spread is even and no retired connection is still out, or nothing can be moved."""
        core, endpoints = self.core, self.endpoints
        if endpoints is None or core.closed:
            return DONE
        if retiring:
            # Moves under way: each retired connection is owed its replacement, dialled as soon
            # as capacity frees; no other is retired meanwhile. One that left the pool while
            # callers wait gave its capacity to the oldest of them, whose dial goes to the
            # endpoint holding the fewest: that move is done, and the plan is made afresh.
            if core.reserve_dial():
                retiring.pop(0)
                return DIAL_ONE
            retiring[:] = [s for s in retiring if core.slot_of(s.conn) is s]
            if retiring:
                return WAIT_RETIRE
        plan = endpoints.rebalance(staying(core.slots()), now)
        if plan is None:
            return DONE
        if core.reserve_dial():
            return DIAL_ONE
        if core.room > 0:
            # Below the cap, the free place is left for the callers (a pool that does not block,
            # with nothing idle: see reserve_dial); their dials go to the sparse endpoint. No
            # connection is retired meanwhile.
            return WAIT_RETIRE
        crowded = plan[0]
        victims = [s for s in core.idle_slots() if s.target == crowded] or [
            s for s in core.slots() if s.target == crowded and s.retire is None
        ]
        if not victims or not core.retire(victims[0], "rebalance"):
            return DONE
        if victims[0].in_use:
            retiring.append(victims[0])
        return DIAL_ONE if core.reserve_dial() else WAIT_RETIRE
