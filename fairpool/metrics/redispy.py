"""redis-py's OpenTelemetry instruments (redis-py 7.x+ observability), fed by both pools.

redis-py's pools report the idle and used connection counts, each new connection's creation time
and (``BlockingConnectionPool``) each borrow's wait time to a metrics *collector* that exists only
while observability is enabled. fairpool reports the same figures through the same collector:
:func:`collector` / :func:`async_collector` create it on first use as redis-py's recorders do, and
the pools' hot paths call the functions below only once it exists (a module attribute read
otherwise). Where the installed redis-py has no observability, :mod:`fairpool._compat` stands in
a recorder that never has a collector. Metrics never break a command: every error is swallowed, as
in redis-py's recorders.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .._compat import ConnectionState, get_pool_name
from .._compat import arecorder as _arecorder
from .._compat import recorder as _recorder

__all__ = ["async_collector", "collector", "record_counts", "record_wait"]


def collector() -> Any:
    """redis-py's (sync) metrics collector, created on first use as redis-py's own recorder does
    (so that the first borrow is counted like the rest); ``None`` while observability is off."""
    found = _recorder._metrics_collector
    if found is None:
        found = _recorder._metrics_collector = _recorder._get_or_create_collector()
    return found


def async_collector() -> Any:
    """redis.asyncio's metrics collector (see :func:`collector`)."""
    return _arecorder._async_metrics_collector or _arecorder._get_or_create_collector()


def record_counts(found: Any, pool: Any, idle_delta: int, used_delta: int) -> None:
    """Add to ``pool``'s idle and used connection-count gauges in the collector ``found``."""
    try:
        name = get_pool_name(pool)
        if idle_delta:
            found.record_connection_count(
                pool_name=name, connection_state=ConnectionState.IDLE, counter=idle_delta
            )
        if used_delta:
            found.record_connection_count(
                pool_name=name, connection_state=ConnectionState.USED, counter=used_delta
            )
    except Exception:  # as redis-py's recorder: metrics never break a command
        pass


def record_wait(found: Any, pool: Any, seconds: float) -> None:
    """Report how long a borrow took to obtain its connection (redis-py's
    ``BlockingConnectionPool`` does on every borrow)."""
    with contextlib.suppress(Exception):
        found.record_connection_wait_time(pool_name=get_pool_name(pool), duration_seconds=seconds)
