"""OpenTelemetry observable instruments for fairpool pools (extra ``otel``).

    from fairpool.metrics.otel import instrument

    pool = fairpool.ConnectionPool(name="cache")
    instrument(pool)  # the global MeterProvider, or instrument(pool, meter_provider=provider)

The figures are those of the Prometheus collector (``docs/stats.md``), named
``fairpool.pool.<key>`` with the attribute ``pool.name``. They come on top of redis-py's own
``db.client.connection.*`` metrics. OpenTelemetry has no observable histogram, so each histogram
is published as three observable counters (``.count``, ``.sum``, ``.bucket`` with an ``le``
attribute, cumulative as in Prometheus) and a ``.max`` gauge.

Instruments are made once per meter provider; every pool instrumented on it is observed by the
same callbacks, weakly (a pool that is garbage-collected simply stops being reported).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..stats import PoolStats
from ..tools._extras import missing_extra
from . import labelled
from .figures import BREAKDOWNS, COUNTERS, GAUGES, HISTOGRAMS, breakdowns, gauge
from .histogram import HistogramSnapshot

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

__all__ = ["instrument"]

_ATTR = "pool.name"
_lock = threading.Lock()
_providers: weakref.WeakKeyDictionary[Any, weakref.WeakSet[Any]] = weakref.WeakKeyDictionary()

_Callback = Callable[["CallbackOptions"], Iterable["Observation"]]


def instrument(pool: Any, meter_provider: MeterProvider | None = None) -> None:
    """Publish ``pool``'s figures through ``meter_provider`` (default: the global one).

    Instrumenting a pool twice on the same provider does nothing more.
    """
    try:
        from opentelemetry import metrics
    except ImportError as exc:
        raise missing_extra("fairpool.metrics.otel.instrument", "opentelemetry", "otel") from exc
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        pools = _providers.get(provider)
        if pools is None:
            pools = _providers[provider] = weakref.WeakSet()
            _create_instruments(provider, pools)
        pools.add(pool)


def _create_instruments(provider: MeterProvider, pools: weakref.WeakSet[Any]) -> None:
    from opentelemetry.metrics import Observation

    meter = provider.get_meter("fairpool")

    def snapshots() -> list[tuple[str, PoolStats]]:
        return [(label, pool.stats()) for label, pool in labelled(_sorted(pools))]

    def per_pool(value: Callable[[PoolStats], float]) -> _Callback:
        def callback(options: CallbackOptions) -> Iterator[Observation]:
            for label, s in snapshots():
                yield Observation(value(s), {_ATTR: label})

        return callback

    for key, attr, doc in COUNTERS:
        meter.create_observable_counter(f"fairpool.pool.{key}", [per_pool(_field(attr))], "1", doc)
    for key, attr, doc in GAUGES:
        unit = "s" if key.endswith("seconds_max") else "1"
        meter.create_observable_gauge(
            f"fairpool.pool.{key}", [per_pool(_gauge(key, attr))], unit, doc
        )
    for key, attr, doc in HISTOGRAMS:
        hist = _field(attr)
        name = f"fairpool.pool.{key}"
        meter.create_observable_counter(
            f"{name}.count", [per_pool(_part(attr, "count"))], "1", f"{doc} (count)"
        )
        meter.create_observable_counter(
            f"{name}.sum", [per_pool(_part(attr, "sum"))], "s", f"{doc} (sum)"
        )
        meter.create_observable_gauge(
            f"{name}.max", [per_pool(_part(attr, "max"))], "s", f"{doc} (longest)"
        )
        meter.create_observable_counter(
            f"{name}.bucket", [_buckets(snapshots, hist)], "1", f"{doc} (values <= le)"
        )
    for key, kind, by, doc in BREAKDOWNS:
        create = (
            meter.create_observable_counter
            if kind == "counter"
            else meter.create_observable_up_down_counter
            if key in ("connections", "endpoint_connections")
            else meter.create_observable_gauge
        )
        create(f"fairpool.pool.{key}", [_breakdown(snapshots, key, by)], "1", doc)


def _sorted(pools: weakref.WeakSet[Any]) -> list[Any]:
    return sorted(list(pools), key=lambda pool: (pool.config.name, id(pool)))


def _field(attr: str) -> Callable[[PoolStats], Any]:
    return lambda s: getattr(s, attr)


def _part(attr: str, part: str) -> Callable[[PoolStats], float]:
    return lambda s: float(getattr(getattr(s, attr), part))


def _gauge(key: str, attr: str) -> Callable[[PoolStats], float]:
    return lambda s: gauge(s, key, attr)


def _buckets(
    snapshots: Callable[[], list[tuple[str, PoolStats]]],
    hist: Callable[[PoolStats], HistogramSnapshot],
) -> _Callback:
    from opentelemetry.metrics import Observation

    def callback(options: CallbackOptions) -> Iterator[Observation]:
        for label, s in snapshots():
            for le, n in hist(s).cumulative():
                yield Observation(n, {_ATTR: label, "le": "+Inf" if le == math.inf else repr(le)})

    return callback


def _breakdown(
    snapshots: Callable[[], list[tuple[str, PoolStats]]], key: str, by: str
) -> _Callback:
    from opentelemetry.metrics import Observation

    def callback(options: CallbackOptions) -> Iterator[Observation]:
        for label, s in snapshots():
            for value_label, value in breakdowns(s, key):
                yield Observation(value, {_ATTR: label, by: value_label})

    return callback
