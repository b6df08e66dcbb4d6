"""Spreading connections over several proxy endpoints without a balancer (``endpoints=[...]``).

I/O-free bookkeeping shared by the pool shells: which endpoint the next connection is dialled to
(the one holding the fewest, counting dials in flight; endpoints that are up first, in rotation),
a circuit breaker per endpoint, and the rebalancing plan that moves connections back onto an
endpoint that recovered.

The breaker: an endpoint is *up* until a dial to it fails; it is then *down* for a back-off of
:data:`BACKOFF_BASE` seconds, doubling with each further failed dial of the same outage up to
:data:`BACKOFF_MAX`. Failures are counted per outage: a dial (or a reconnect) that fails while the
endpoint is already down adds nothing, so the connections that break together when a proxy dies
count once. When the back-off ends the endpoint is *half-open*: one probe dial may try it (the
shell's maintenance makes it; callers try it only when every endpoint that is up has failed them).
A probe that connects closes the breaker; one that fails opens it again for a doubled back-off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["BACKOFF_BASE", "BACKOFF_MAX", "REBALANCE_PERIOD", "Endpoint", "EndpointSet"]

Endpoint = tuple[str, int]

BACKOFF_BASE = 0.5
"""Seconds an endpoint is avoided after the first failed dial of an outage (doubling with each
failed probe)."""
BACKOFF_MAX = 1.0
"""The longest back-off, in seconds: a recovered endpoint is probed within this long."""
REBALANCE_PERIOD = 0.5
"""How often (seconds) maintenance probes endpoints whose back-off ended and checks the spread of
connections over endpoints."""


def label(endpoint: Endpoint) -> str:
    """``host:port``."""
    return f"{endpoint[0]}:{endpoint[1]}"


class EndpointSet:
    """Dial order, circuit breakers and rebalancing over a fixed list of endpoints. Not
    thread-safe: the shells call it under their pool lock."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints: tuple[Endpoint, ...] = tuple(endpoints)
        self._pending = dict.fromkeys(self.endpoints, 0)
        self._failures = dict.fromkeys(self.endpoints, 0)  # failed dials in the current outage
        self._down_until = dict.fromkeys(self.endpoints, -math.inf)
        self._probing: set[Endpoint] = set()  # half-open endpoints with their probe in flight
        self._turn = 0

    def up(self, endpoint: Endpoint) -> bool:
        """No failed dial since its last successful one."""
        return self._failures[endpoint] == 0

    def healthy(self, endpoint: Endpoint, now: float) -> bool:
        """Up, or half-open with no probe in flight (worth one dial)."""
        if self._failures[endpoint] == 0:
            return True
        return now >= self._down_until[endpoint] and endpoint not in self._probing

    def failures(self, endpoint: Endpoint) -> int:
        """Failed dials in the endpoint's current outage (0 while it is up)."""
        return self._failures[endpoint]

    def counts(self, targets: Iterable[Endpoint | None]) -> dict[Endpoint, int]:
        """Open connections per endpoint (from each connection's target), dials in flight
        included."""
        counts = dict(self._pending)
        for target in targets:
            if target in counts:
                counts[target] += 1
        return counts

    def dial_order(self, targets: Iterable[Endpoint | None], now: float) -> list[Endpoint]:
        """Endpoints to try for a new connection, best first: those that are up, holding the
        fewest connections (ties in rotation); then half-open ones; then those in back-off,
        soonest to recover first."""
        counts = self.counts(targets)
        n = len(self.endpoints)
        start = self._turn
        self._turn = (self._turn + 1) % n
        rotation = {e: (i - start) % n for i, e in enumerate(self.endpoints)}

        def rank(e: Endpoint) -> tuple[int, float, int, int]:
            if self._failures[e] == 0:
                return (0, 0.0, counts[e], rotation[e])
            if self.healthy(e, now):
                return (1, 0.0, counts[e], rotation[e])
            return (2, self._down_until[e], counts[e], rotation[e])

        return sorted(self.endpoints, key=rank)

    def probes_due(self, now: float, force: bool = False) -> list[Endpoint]:
        """Endpoints that are down and due for their probe dial: the back-off has ended (or
        ``force``: an explicit ``maintain()``) and no probe is in flight."""
        return [
            e
            for e in self.endpoints
            if self._failures[e]
            and e not in self._probing
            and (force or now >= self._down_until[e])
        ]

    def dialling(self, endpoint: Endpoint) -> None:
        """A dial to ``endpoint`` starts (the probe, if the endpoint is not up)."""
        self._pending[endpoint] += 1
        if self._failures[endpoint]:
            self._probing.add(endpoint)

    def dialled(self, endpoint: Endpoint, ok: bool, now: float) -> None:
        """A dial to ``endpoint`` ended: success closes its breaker, failure opens it."""
        self._pending[endpoint] -= 1
        self._probing.discard(endpoint)
        self.report(endpoint, ok, now)

    def report(self, endpoint: Endpoint, ok: bool, now: float) -> None:
        """A connect to ``endpoint`` succeeded or failed (outside a planned dial, too: a
        reconnect in place). A failure while the endpoint is already down belongs to the same
        outage and changes nothing."""
        if ok:
            self._failures[endpoint] = 0
            self._down_until[endpoint] = -math.inf
        elif self._failures[endpoint] == 0 or now >= self._down_until[endpoint]:
            self._failures[endpoint] += 1
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (self._failures[endpoint] - 1))
            self._down_until[endpoint] = now + delay

    def rebalance(
        self, targets: Iterable[Endpoint | None], now: float
    ) -> tuple[Endpoint, Endpoint] | None:
        """``(crowded, sparse)`` if a connection should move from the endpoint holding the most to
        one that is up and holds at least two fewer; ``None`` when the spread is even enough."""
        counts = self.counts(targets)
        up = [e for e in self.endpoints if self._failures[e] == 0]
        if not up:
            return None
        sparse = min(up, key=lambda e: counts[e])
        crowded = max(self.endpoints, key=lambda e: counts[e])
        if counts[crowded] - counts[sparse] >= 2:
            return crowded, sparse
        return None
