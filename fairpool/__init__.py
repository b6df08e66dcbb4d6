"""fairpool: a fair connection pool for redis-py.

``redis.Redis(connection_pool=fairpool.ConnectionPool(policy="fifo", ...))`` spreads commands evenly
over the pool's connections (and so over the proxies behind them), serves waiting callers in arrival
order, and still shrinks when demand falls.
"""

from __future__ import annotations

from .cluster import cluster, cluster_stats
from .config import SETTINGS, Policy, PoolConfig, make_config
from .errors import PoolClosedError, PoolExhaustedError, PoolOverloadedError, PoolTimeoutError
from .pool import BlockingConnectionPool, ConnectionPool
from .scripting import (
    CrossSlotError,
    NoScriptError,
    Script,
    ScriptBusyError,
    ScriptError,
    ScriptLintWarning,
    ScriptRegistry,
)
from .sentinel import SentinelConnectionPool
from .stats import Fairness, PoolStats, fairness

__version__ = "0.1.0"

__all__ = [
    "SETTINGS",
    "BlockingConnectionPool",
    "ConnectionPool",
    "CrossSlotError",
    "Fairness",
    "NoScriptError",
    "Policy",
    "PoolClosedError",
    "PoolConfig",
    "PoolExhaustedError",
    "PoolOverloadedError",
    "PoolStats",
    "PoolTimeoutError",
    "Script",
    "ScriptBusyError",
    "ScriptError",
    "ScriptLintWarning",
    "ScriptRegistry",
    "SentinelConnectionPool",
    "__version__",
    "cluster",
    "cluster_stats",
    "fairness",
    "make_config",
]
