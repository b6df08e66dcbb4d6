"""The figures every exporter publishes, named once (no dependency).

Each row is ``(key, PoolStats field, help)``. Prometheus names are ``fairpool_<key>`` (counters
get ``_total``); OpenTelemetry names are ``fairpool.pool.<key>``. Per-state, per-reason and
per-endpoint series come from :func:`breakdowns`.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..stats import PoolStats

__all__ = ["BREAKDOWNS", "COUNTERS", "GAUGES", "HISTOGRAMS", "breakdowns", "gauge"]

COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("borrows", "borrows", "Borrows (hits + misses)."),
    ("hits", "hits", "Borrows served by an existing connection."),
    ("misses", "misses", "Borrows that dialled a new connection."),
    ("waits", "waits", "Borrows that queued for a connection."),
    ("timeouts", "timeouts", "Borrows that gave up waiting (timeout)."),
    ("reborrows", "reborrows", "Borrows that got back their own connection in a turn."),
    ("connections_created", "created", "Connections dialled."),
    ("leaks", "leaks", "Borrows reported as leaked (leak_timeout)."),
    ("sheds", "sheds", "Borrows refused at once by max_waiting."),
    ("drains", "drains", "Drains started (drain())."),
)
"""Plain counters: one series per pool."""

GAUGES: tuple[tuple[str, str, str], ...] = (
    ("max_connections", "max_connections", "The cap on open connections."),
    ("waiting", "waiting", "Callers queued for a connection now."),
    ("wait_seconds_max", "wait_time_max", "The longest wait since the pool was made."),
    ("endpoint_fairness_jain", "", "Jain's index of borrows over endpoints (1 = even)."),
    ("endpoint_fairness_max_mean", "", "The busiest endpoint's borrows over the mean (1 = even)."),
)
"""Plain gauges: one series per pool (the fairness ones are computed, no field)."""

HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    ("wait_seconds", "wait_histogram", "Time borrows spent queued."),
    ("hold_seconds", "hold_histogram", "Time from borrow to release."),
    ("dial_seconds", "dial_histogram", "Time to make and connect a connection."),
)
"""Histograms (buckets: :data:`fairpool.metrics.histogram.BUCKETS`)."""


def gauge(s: PoolStats, key: str, field: str) -> float:
    """The value of gauge ``key`` of :data:`GAUGES` in ``s``."""
    if key == "endpoint_fairness_jain":
        return s.endpoint_fairness.jain
    if key == "endpoint_fairness_max_mean":
        return s.endpoint_fairness.max_mean
    return float(getattr(s, field))


BREAKDOWNS: tuple[tuple[str, str, str, str], ...] = (
    # (key, kind, label, help)
    ("connections", "gauge", "state", "Connections now, by state (idle, in_use, dialling)."),
    ("connections_closed", "counter", "reason", "Connections closed, by reason."),
    ("endpoint_borrows", "counter", "endpoint", "Borrows served per endpoint (host:port)."),
    ("endpoint_connections", "gauge", "endpoint", "Open connections per endpoint."),
    ("endpoint_share", "gauge", "endpoint", "Each endpoint's share of the borrows (0-1)."),
)
"""Series split by a second label."""


def breakdowns(s: PoolStats, key: str) -> Iterator[tuple[str, float]]:
    """``(label value, value)`` of breakdown ``key`` of :data:`BREAKDOWNS` in ``s``."""
    if key == "connections":
        yield from (("idle", s.idle), ("in_use", s.in_use), ("dialling", s.dialling))
    elif key == "connections_closed":
        yield from s.closed.items()
    elif key == "endpoint_borrows":
        yield from s.endpoint_borrows.items()
    elif key == "endpoint_connections":
        yield from s.endpoint_connections.items()
    else:
        total = sum(s.endpoint_borrows.values())
        for endpoint, n in s.endpoint_borrows.items():
            yield endpoint, n / total if total else 0.0
