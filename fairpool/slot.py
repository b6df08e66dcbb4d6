"""The records the core and the shells share: :class:`Slot` (one connection), :class:`Waiter`
(one queued caller) and the :data:`DIAL` / :data:`WAIT` answers of a borrow.

They live apart from :mod:`fairpool.core` so that the idle policies (:mod:`fairpool.policies`),
which store slots, and the core, which uses the policies, import them without a cycle.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["DIAL", "EXEMPT", "LEAKED", "WAIT", "Slot", "Waiter"]

C = TypeVar("C")


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
LEAKED = 1
""":attr:`Slot.leak`: reported as leaked (``leak_timeout``)."""
EXEMPT = 2
""":attr:`Slot.leak`: exempt from leak detection until released (0: watched)."""


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
        "fresh",
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
        # when the current borrow began (or it was created): the hold time's and leak_timeout's
        # start
        self.borrowed = now
        self.endpoint: str | None = None  # host:port the socket is connected to (set by the shell)
        self.borrows = 0
        self.in_use = False
        self.suspect = False  # must be verified before reuse (an older sibling was found dead)
        self.retire: str | None = None  # close it when released, for this reason (see retire())
        self.aux: Any = None  # the shell's own per-connection data
        self.target: Any = None  # the configured endpoint it was dialled to (endpoints=[...])
        self.turn = 0  # borrows in a row by its current caller (see turn_borrows)
        self.taken = False  # out of the idle set for the shell's I/O (take_idle / put_back)
        # Set by the core when it hands the connection out: used recently enough (and not
        # suspect) to skip the borrow check; the shell's cheap readiness poll still runs.
        self.fresh = False
        # leak detection (leak_timeout): 0 while it is watched, LEAKED once reported, EXEMPT for a
        # pub/sub, Monitor or single-connection client (until released); where it was borrowed
        # (the stack the shell captured, see fairpool.leaks)
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
