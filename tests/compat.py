"""What the installed redis-py (5.0 through 8.x) offers, for tests of features only some versions
have. Detected the way fairpool detects them (fairpool/_compat.py), never from version strings;
a test of a missing feature skips with the reason."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import redis

from fairpool import _compat
from fairpool._compat import borrow_args

__all__ = ["borrow_args"]

needs_events = pytest.mark.skipif(
    not _compat.HAS_EVENTS, reason="this redis-py has no connection events / re-auth (5.1+)"
)
needs_caching = pytest.mark.skipif(
    not _compat.HAS_CACHING, reason="this redis-py has no client-side caching (5.1+)"
)
needs_maint_notifications = pytest.mark.skipif(
    not _compat.HAS_MAINT_NOTIFICATIONS,
    reason="this redis-py has no maintenance notifications (7.x+)",
)
needs_driver_info = pytest.mark.skipif(
    not _compat.HAS_DRIVER_INFO, reason="this redis-py has no DriverInfo (8.x)"
)
needs_observability = pytest.mark.skipif(
    not _compat.HAS_OBSERVABILITY, reason="this redis-py has no OpenTelemetry metrics (7.x+)"
)


CLUSTER_KEEPS_NODE_POOLS = hasattr(redis.cluster.NodesManager, "move_node_to_end_of_cached_nodes")
"""Whether ``RedisCluster`` keeps a failed node's client and pool (redis-py 7.x+); before, it
drops them and builds new ones (with the same pool class) when the node is rediscovered."""


def connect_retries_refused() -> bool:
    """Whether ``Connection.connect()`` retries (per its ``retry``) a refused connection (8.x);
    before, the refusal surfaces from the borrow, outside the client's command retry. Asked of
    redis-py itself, without a socket."""
    from redis.backoff import NoBackoff
    from redis.connection import Connection
    from redis.retry import Retry

    attempts = [0]

    class Refused(Connection):
        def _connect(self) -> Any:
            attempts[0] += 1
            raise ConnectionRefusedError(111, "Connection refused")

    conn = Refused(retry=Retry(NoBackoff(), 2))
    with contextlib.suppress(Exception):
        conn.connect()
    return attempts[0] > 1
