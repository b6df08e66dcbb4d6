"""Pool statistics: an immutable snapshot and the fairness figures computed from it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

from .metrics.histogram import HistogramSnapshot
from .metrics.window import StatsWindow

__all__ = ["CLOSE_REASONS", "Fairness", "PoolStats", "fairness"]

CLOSE_REASONS = (
    "idle",  # LIFO: idle longer than idle_timeout
    "demand",  # FIFO/round-robin: not needed during an idle_timeout window
    "lifetime",  # older than max_lifetime (minus jitter)
    "health_check",  # failed the borrow check (peek / ping / callable)
    "max_idle",  # released while max_idle connections were already idle
    "error",  # connect failed, or released unusable / no longer owned by the pool
    "rebalance",  # moved to a sparser endpoint (endpoints=[...])
    "drain",  # replaced by pool.drain()
    "resize",  # above the cap after pool.resize() shrank it
    "closed",  # the pool was closed
)
"""Why the pool closed a connection; the keys of :attr:`PoolStats.closed`."""


@dataclass(frozen=True)
class Fairness:
    """How evenly borrows are spread over endpoints (or connections).

    ``max_mean`` is the busiest one's count over the mean (1.0 = perfectly even); ``jain`` is Jain's
    fairness index ``(Σx)² / (n·Σx²)``, from ``1/n`` (one takes everything) to 1.0 (even).
    """

    n: int
    max_mean: float
    jain: float


def fairness(counts: Iterable[int]) -> Fairness:
    """Fairness figures of a list of per-endpoint (or per-connection) counts."""
    xs = [c for c in counts]
    n = len(xs)
    total = sum(xs)
    if n == 0 or total == 0:
        return Fairness(n=n, max_mean=1.0, jain=1.0)
    squares = sum(x * x for x in xs)
    return Fairness(n=n, max_mean=max(xs) / (total / n), jain=total * total / (n * squares))


def _frozen(d: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class PoolStats:
    """An immutable snapshot of a pool's counters (``pool.stats()``).

    Connection counts are current; all other counters are totals since the pool was created (or
    forked). ``borrows = hits + misses``: a *hit* is served by an existing connection (idle, or
    handed over by a releasing caller), a *miss* dials a new one. ``waits`` counts borrows that had
    to queue; ``wait_time_total``/``wait_time_max`` are their waiting times in seconds.
    ``reborrows`` counts the hits that gave a thread back the connection it had just released, in
    its turn (``turn_borrows``), while others waited.
    ``wait_histogram``, ``hold_histogram`` (borrow to release) and ``dial_histogram`` bucket those
    times (:data:`fairpool.metrics.histogram.BUCKETS`); ``window`` counts afresh since the last
    ``stats(reset=True)`` (see :class:`~fairpool.metrics.window.StatsWindow`). ``leaks``, ``sheds``
    and ``drains`` count leaked borrows reported, borrows refused by ``max_waiting`` and drains.
    ``endpoint_borrows`` maps each ``host:port`` the sockets are connected to (the proxy behind a
    balancer) to the borrows it served; ``endpoint_fairness`` summarises it.
    """

    policy: str
    max_connections: int
    idle: int
    in_use: int
    dialling: int
    waiting: int
    created: int
    closed: Mapping[str, int]
    borrows: int
    hits: int
    misses: int
    waits: int
    wait_time_total: float
    wait_time_max: float
    timeouts: int
    reborrows: int = 0
    endpoint_borrows: Mapping[str, int] = field(default_factory=dict)
    endpoint_connections: Mapping[str, int] = field(default_factory=dict)
    leaks: int = 0
    sheds: int = 0
    drains: int = 0
    wait_histogram: HistogramSnapshot = field(default_factory=HistogramSnapshot)
    hold_histogram: HistogramSnapshot = field(default_factory=HistogramSnapshot)
    dial_histogram: HistogramSnapshot = field(default_factory=HistogramSnapshot)
    window: StatsWindow = field(default_factory=StatsWindow)

    @property
    def open(self) -> int:
        """Connections the pool holds now (idle + in use; not those still dialling)."""
        return self.idle + self.in_use

    @property
    def closed_total(self) -> int:
        """All connections closed, whatever the reason."""
        return sum(self.closed.values())

    @property
    def endpoint_fairness(self) -> Fairness:
        """Fairness of borrows over endpoints."""
        return fairness(self.endpoint_borrows.values())

    def as_dict(self) -> dict[str, Any]:
        """A plain ``dict`` (JSON-ready), with the derived figures included."""
        d = asdict(self)
        d["closed"] = dict(self.closed)
        d["endpoint_borrows"] = dict(self.endpoint_borrows)
        d["endpoint_connections"] = dict(self.endpoint_connections)
        d["open"] = self.open
        d["closed_total"] = self.closed_total
        d["endpoint_fairness"] = asdict(self.endpoint_fairness)
        for name in ("wait", "hold", "dial"):
            d[f"{name}_histogram"] = getattr(self, f"{name}_histogram").as_dict()
        d["window"] = self.window.as_dict()
        return d


def snapshot(
    core: Any,
    slots: Iterable[Any],
    closed: dict[str, int],
    closed_endpoint_borrows: dict[str, int],
) -> PoolStats:
    """``core``'s counters as a :class:`PoolStats` (:meth:`fairpool.core.PoolCore.stats`):
    ``slots`` are the connections it holds, ``closed`` its closes per reason and
    ``closed_endpoint_borrows`` the borrows of closed connections per endpoint."""
    borrows = dict(closed_endpoint_borrows)
    conns: dict[str, int] = {}
    for slot in slots:
        if slot.endpoint is not None:
            borrows[slot.endpoint] = borrows.get(slot.endpoint, 0) + slot.borrows
            conns[slot.endpoint] = conns.get(slot.endpoint, 0) + 1
    return PoolStats(
        policy=core.config.policy.value,
        max_connections=core.config.max_connections,
        idle=core.idle_count,
        in_use=core.in_use_count,
        dialling=core.dialling,
        waiting=core.waiting,
        created=core.created,
        closed=dict(closed),
        borrows=core.hits + core.misses,
        hits=core.hits,
        misses=core.misses,
        waits=core.waits,
        wait_time_total=core.wait_total,
        wait_time_max=core.wait_max,
        timeouts=core.timeouts,
        reborrows=core.reborrows,
        endpoint_borrows=borrows,
        endpoint_connections=conns,
        leaks=core.leaks,
        sheds=core.sheds,
        drains=core.drains,
    )
