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
pool alive), so an exporter can find all of them; the pool's ``name`` setting labels it (a cluster
node's pool is named after its node, ``<name>@<host>:<port>``: see :mod:`fairpool.cluster`).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["labelled", "register", "registered"]

_POOLS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
"""Every live pool, with the number it was registered under (counting up)."""
_numbers = itertools.count()


def register(pool: Any) -> None:
    """Make ``pool`` visible to the exporters (the pools call this when they are made)."""
    _POOLS[pool] = next(_numbers)


def registered() -> list[Any]:
    """Every live fairpool pool, in the order of their names (then of their making)."""
    return [pool for pool, _ in sorted(list(_POOLS.items()), key=_made)]


def _made(item: tuple[Any, int]) -> tuple[str, int]:
    return item[0].config.name, item[1]


def _number(pool: Any) -> int:
    try:
        return _POOLS.get(pool, -1)
    except TypeError:  # not weakly referenceable: not a pool that registered
        return -1


def labelled(pools: Iterable[Any]) -> list[tuple[str, Any]]:
    """``(label, pool)`` pairs, in the order given: the label is the pool's ``name``. Of pools
    sharing a name, the one made last keeps the name and the others get ``#2``, ``#3``, ...
    appended (newest first), so that no two pools export the same series and a pool made again
    under the same name — such as a cluster node's pool built again by redis-py — takes over
    the series of the one it replaces."""
    pools = list(pools)
    by_name: dict[str, list[int]] = {}
    for i, pool in enumerate(pools):
        by_name.setdefault(pool.config.name, []).append(i)
    labels: dict[int, str] = {}
    for name, indices in by_name.items():
        newest_first = sorted(indices, key=lambda i: (_number(pools[i]), i), reverse=True)
        for n, i in enumerate(newest_first, 1):
            labels[i] = name if n == 1 else f"{name}#{n}"
    return [(labels[i], pool) for i, pool in enumerate(pools)]
