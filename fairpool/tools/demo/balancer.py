"""The L4 balancer of ``fairpool demo``: every new TCP connection goes to the next proxy in turn."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis

__all__ = ["BalancedConnection", "RoundRobinBalancer"]


class RoundRobinBalancer:
    """Hands out endpoints in turn, as an L4 load balancer does with new TCP connections.

    Thread-safe. :attr:`dials` counts the connections sent to each endpoint.
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        """Balance over ``endpoints``, a non-empty sequence of ``(host, port)``."""
        if not endpoints:
            raise ValueError("RoundRobinBalancer needs at least one endpoint")
        self.endpoints: tuple[tuple[str, int], ...] = tuple(endpoints)
        self.dials: list[int] = [0] * len(self.endpoints)
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> tuple[str, int]:
        """The endpoint for the next new connection."""
        with self._lock:
            i = self._next
            self._next = (i + 1) % len(self.endpoints)
            self.dials[i] += 1
        return self.endpoints[i]

    def reset(self) -> None:
        """Start again from the first endpoint, with zero counts."""
        with self._lock:
            self._next = 0
            self.dials = [0] * len(self.endpoints)


class BalancedConnection(redis.Connection):
    """A ``redis.Connection`` whose every new TCP socket goes to ``balancer.next()``.

    Pass ``connection_class=BalancedConnection, balancer=RoundRobinBalancer([...])`` to any pool:
    the balancer is shared by all of its connections. A reconnect is a new TCP connection, so it
    may land on another endpoint, as it would behind a real balancer.
    """

    def __init__(self, *, balancer: RoundRobinBalancer, **kwargs: Any) -> None:
        """Create an unconnected connection; ``kwargs`` are ``redis.Connection``'s."""
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        self.balancer = balancer
        host, port = balancer.endpoints[0]
        super().__init__(host=host, port=port, **kwargs)  # type: ignore[no-untyped-call]

    def _connect(self) -> Any:
        self._host, self.port = self.balancer.next()
        return super()._connect()  # type: ignore[no-untyped-call]
