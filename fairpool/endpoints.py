"""Spreading connections over several proxy endpoints without a balancer (``endpoints=[...]``).

I/O-free bookkeeping shared by the pool shells: which endpoint the next connection is dialled to
(the one holding the fewest, counting dials in flight; healthy ones first, in rotation), back-off
for endpoints that fail to connect (exponential, from :data:`BACKOFF_BASE` to :data:`BACKOFF_MAX`
seconds), and the rebalancing plan that moves connections back onto an endpoint that recovered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "REBALANCE_PERIOD", "Endpoint", "EndpointSet"]

Endpoint = tuple[str, int]

BACKOFF_BASE = 0.5
"""Seconds an endpoint is avoided after its first failed connect (doubling on each failure)."""
BACKOFF_MAX = 30.0
"""The longest back-off, in seconds."""
REBALANCE_PERIOD = 1.0
"""How often (seconds) maintenance checks the spread of connections over endpoints."""


def label(endpoint: Endpoint) -> str:
    """``host:port``."""
    return f"{endpoint[0]}:{endpoint[1]}"


class EndpointSet:
    """Dial order, back-off and rebalancing over a fixed list of endpoints. Not thread-safe: the
    shells call it under their pool lock."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self._pending = dict.fromkeys(self.endpoints, 0)
        self._failures = dict.fromkeys(self.endpoints, 0)
        self._down_until = dict.fromkeys(self.endpoints, -math.inf)
        self._turn = 0

    def healthy(self, endpoint: Endpoint, now: float) -> bool:
        """Not in back-off (never failed, or its back-off has run out: worth trying again)."""
        return now >= self._down_until[endpoint]

    def counts(self, targets: Iterable[Endpoint | None]) -> dict[Endpoint, int]:
        """Open connections per endpoint (from each connection's target), dials in flight
        included."""
        counts = dict(self._pending)
        for target in targets:
            if target in counts:
                counts[target] += 1
        return counts

    def dial_order(self, targets: Iterable[Endpoint | None], now: float) -> list[Endpoint]:
        """Endpoints to try for a new connection, best first: healthy ones holding the fewest
        connections (ties in rotation), then those in back-off, soonest to recover first."""
        counts = self.counts(targets)
        n = len(self.endpoints)
        start = self._turn
        self._turn = (self._turn + 1) % n
        rotation = {e: (i - start) % n for i, e in enumerate(self.endpoints)}
        return sorted(
            self.endpoints,
            key=lambda e: (
                not self.healthy(e, now),
                self._down_until[e] if not self.healthy(e, now) else 0.0,
                counts[e],
                rotation[e],
            ),
        )

    def dialling(self, endpoint: Endpoint) -> None:
        """A dial to ``endpoint`` starts."""
        self._pending[endpoint] += 1

    def dialled(self, endpoint: Endpoint, ok: bool, now: float) -> None:
        """A dial to ``endpoint`` ended: success clears its back-off, failure extends it."""
        self._pending[endpoint] -= 1
        self.report(endpoint, ok, now)

    def report(self, endpoint: Endpoint, ok: bool, now: float) -> None:
        """A connect to ``endpoint`` succeeded or failed (outside a planned dial, too)."""
        if ok:
            self._failures[endpoint] = 0
            self._down_until[endpoint] = -math.inf
        else:
            self._failures[endpoint] += 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self._failures[endpoint] - 1))
            self._down_until[endpoint] = now + delay

    def rebalance(
        self, targets: Iterable[Endpoint | None], now: float
    ) -> tuple[Endpoint, Endpoint] | None:
        """``(crowded, sparse)`` if a connection should move from the endpoint holding the most to
        a healthy one holding at least two fewer; ``None`` when the spread is even enough."""
        counts = self.counts(targets)
        healthy = [e for e in self.endpoints if self.healthy(e, now)]
        if not healthy:
            return None
        sparse = min(healthy, key=lambda e: counts[e])
        crowded = max(self.endpoints, key=lambda e: counts[e])
        if counts[crowded] - counts[sparse] >= 2:
            return crowded, sparse
        return None
