"""Pool metrics: latency histograms, windowed counters and exporters.

* :mod:`fairpool.metrics.histogram` — the fixed-bucket histograms behind ``stats()``'s wait, hold
  and dial times (no dependency);
* :mod:`fairpool.metrics.window` — the windowed counters of ``stats(reset=True)`` (no dependency);
* :mod:`fairpool.metrics.prometheus` — :class:`~fairpool.metrics.prometheus.Collector`, a
  ``prometheus_client`` collector for every pool (extra ``prometheus``);
* :mod:`fairpool.metrics.otel` — :func:`~fairpool.metrics.otel.instrument`, OpenTelemetry
  observable instruments for one pool (extra ``otel``);
* :mod:`fairpool.metrics.redispy` — redis-py's own OpenTelemetry instruments (connection counts,
  wait and create times), reported by both pools as redis-py's pools report them.

Every fairpool pool registers itself here when it is made (weakly: the registry never keeps a
pool alive), so an exporter can find all of them; the pool's ``name`` setting labels it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["labelled", "register", "registered"]

_POOLS: weakref.WeakSet[Any] = weakref.WeakSet()


def register(pool: Any) -> None:
    """Make ``pool`` visible to the exporters (the pools call this when they are made)."""
    _POOLS.add(pool)


def registered() -> list[Any]:
    """Every live fairpool pool, in the order of their names."""
    return sorted(list(_POOLS), key=lambda pool: (pool.config.name, id(pool)))


def labelled(pools: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(label, pool)`` pairs: the label is the pool's ``name``; pools sharing a name (e.g. one
    per cluster node made with the same settings) get ``#2``, ``#3``, ... appended in turn, so
    no two pools export the same series."""
    seen: dict[str, int] = {}
    result = []
    for pool in pools:
        name = pool.config.name
        n = seen[name] = seen.get(name, 0) + 1
        result.append((name if n == 1 else f"{name}#{n}", pool))
    return result
