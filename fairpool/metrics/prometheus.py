"""A ``prometheus_client`` collector for every fairpool pool (extra ``prometheus``).

    from prometheus_client import REGISTRY, start_http_server
    from fairpool.metrics.prometheus import Collector

    REGISTRY.register(Collector())  # every pool, present and future, labelled pool="<name>"
    start_http_server(9100)

Each scrape takes one ``pool.stats()`` per pool (under its lock, no I/O) and never resets the
pool's window. The metric names are listed in ``docs/stats.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..stats import PoolStats
from ..tools._extras import missing_extra
from . import labelled, registered
from .figures import BREAKDOWNS, COUNTERS, GAUGES, HISTOGRAMS, breakdowns, gauge
from .histogram import HistogramSnapshot

__all__ = ["Collector"]


def _prometheus_core() -> Any:
    try:
        import prometheus_client.core
    except ImportError as exc:
        raise missing_extra(
            "fairpool.metrics.prometheus", "prometheus_client", "prometheus"
        ) from exc
    return prometheus_client.core


class Collector:
    """Exposes every live fairpool pool (sync and asyncio), or only ``pools`` when given (a
    callable returning them, or an iterable, held as given), labelled ``pool="<name>"``.

    Register it once: ``prometheus_client.REGISTRY.register(Collector())``.
    """

    def __init__(self, pools: Callable[[], Iterable[Any]] | Iterable[Any] | None = None) -> None:
        self._core = _prometheus_core()  # raises MissingExtra without prometheus_client
        if pools is None:
            self._pools: Callable[[], Iterable[Any]] = registered
        elif callable(pools):
            self._pools = pools
        else:
            fixed = list(pools)
            self._pools = lambda: fixed

    def describe(self) -> list[Any]:
        """Nothing: the series change with the pools, so prometheus_client must collect."""
        return []

    def collect(self) -> Iterator[Any]:
        """One family per metric, a series per pool (and per endpoint / close reason)."""
        snapshots = [(label, pool.stats()) for label, pool in labelled(self._pools())]
        yield from _families(self._core, snapshots)


def _families(core: Any, snapshots: list[tuple[str, PoolStats]]) -> Iterator[Any]:
    CounterMetricFamily = core.CounterMetricFamily
    GaugeMetricFamily = core.GaugeMetricFamily
    HistogramMetricFamily = core.HistogramMetricFamily
    InfoMetricFamily = core.InfoMetricFamily
    info = InfoMetricFamily("fairpool_pool", "A fairpool pool and its policy.", labels=["pool"])
    for label, s in snapshots:
        info.add_metric([label], {"policy": s.policy})
    yield info
    for key, attr, doc in COUNTERS:
        counter = CounterMetricFamily(f"fairpool_{key}", doc, labels=["pool"])
        for label, s in snapshots:
            counter.add_metric([label], getattr(s, attr))
        yield counter
    for key, attr, doc in GAUGES:
        gauge_ = GaugeMetricFamily(f"fairpool_{key}", doc, labels=["pool"])
        for label, s in snapshots:
            gauge_.add_metric([label], gauge(s, key, attr))
        yield gauge_
    for key, attr, doc in HISTOGRAMS:
        hist = HistogramMetricFamily(f"fairpool_{key}", doc, labels=["pool"])
        for label, s in snapshots:
            h: HistogramSnapshot = getattr(s, attr)
            buckets = [(_le(le), float(n)) for le, n in h.cumulative()]
            hist.add_metric([label], buckets, h.sum)
        yield hist
    for key, kind, by, doc in BREAKDOWNS:
        family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
            f"fairpool_{key}", doc, labels=["pool", by]
        )
        for label, s in snapshots:
            for value_label, value in breakdowns(s, key):
                family.add_metric([label, value_label], value)
        yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(bound)
