"""Pool settings, declared once: :data:`SETTINGS`.

Every setting fairpool adds to redis-py's pool is declared here, with its default, its allowed
range and its equivalents in redigo, go-redis and commons-pool2. The same table drives validation
(:func:`fairpool.config.make_config`), the conversion of ``from_url`` query parameters
(:mod:`fairpool.urls`) and the settings table in ``docs/settings.md`` (a test checks the docs
against it). Import these names from :mod:`fairpool.config`, which re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

DEFAULT_MAX_CONNECTIONS = 100
"""Same default as redis-py's ``ConnectionPool`` (``None`` also means this)."""

MAX_SECONDS = 31_536_000
"""Upper bound of every duration setting: one year. Longer waits overflow the platform's timer
(``OverflowError: timestamp out of range for platform time_t``); ``None`` means "no limit"."""


class Policy(str, enum.Enum):
    """Which idle connection a borrow gets.

    * ``LIFO`` — the most recently released one (redis-py's and redigo's order).
    * ``FIFO`` — the least recently released one (go-redis ``PoolFIFO``).
    * ``ROUND_ROBIN`` — connections sit in a ring in creation order; a borrow takes the first idle
      connection after the one handed out last.
    """

    LIFO = "lifo"
    FIFO = "fifo"
    ROUND_ROBIN = "round_robin"

    def __str__(self) -> str:
        return self.value


HealthCheck = str | Callable[[Any], object]
"""``"peek"``, ``"ping"``, ``"none"`` or a callable ``check(connection)`` (falsy/raising = dead)."""


@dataclass(frozen=True)
class PoolConfig:
    """Validated pool settings (build with :func:`make_config`)."""

    policy: Policy = Policy.FIFO
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_idle: int | None = None
    min_idle: int = 0
    block: bool = False
    timeout: float | None = None
    turn_borrows: int = 4
    idle_timeout: float | None = None
    max_lifetime: float | None = None
    lifetime_jitter: float = 0.05
    health_check: HealthCheck = "peek"
    health_check_after: float = 0.25
    maintenance_interval: float | None = None
    endpoints: tuple[tuple[str, int], ...] | None = None
    on_connect: Callable[[Any], object] | None = None
    name: str = ""
    leak_timeout: float | None = None
    max_waiting: int | None = None


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    name: str
    default: str
    bound: str
    redigo: str
    go_redis: str
    commons_pool: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "policy",
        '"fifo"',
        '"lifo", "fifo", "round_robin" (or `fairpool.Policy`)',
        "LIFO only",
        "`PoolFIFO` (bool)",
        "`lifo` (bool)",
        "Which idle connection a borrow gets.",
    ),
    Setting(
        "max_connections",
        "100 (`None` → 100)",
        "integer ≥ 1",
        "`MaxActive`",
        "`PoolSize` / `MaxActiveConns`",
        "`maxTotal`",
        "Hard cap on open connections: idle, in use and being dialled.",
    ),
    Setting(
        "max_idle",
        "`None` (no limit)",
        "`None` or integer ≥ 0, ≥ `min_idle`",
        "`MaxIdle`",
        "`MaxIdleConns`",
        "`maxIdle`",
        "At most this many idle connections are kept; a release beyond it closes the connection.",
    ),
    Setting(
        "min_idle",
        "0",
        "integer 0 … `max_connections`",
        "—",
        "`MinIdleConns`",
        "`minIdle`",
        "Connections the pool keeps open; dialled in the background by maintenance, never below "
        "by pruning.",
    ),
    Setting(
        "block",
        "`False` (`True` in `BlockingConnectionPool`)",
        "bool",
        "`Wait`",
        "always waits",
        "`blockWhenExhausted`",
        "At the cap: raise `MaxConnectionsError` at once, or wait in arrival order.",
    ),
    Setting(
        "timeout",
        "`None` = wait forever (20 in `BlockingConnectionPool`)",
        "`None` or number 0 … 31536000 (seconds; at most one year)",
        "context deadline",
        "`PoolTimeout`",
        "`maxWait`",
        "How long a blocked borrow waits before `ConnectionError`.",
    ),
    Setting(
        "turn_borrows",
        "4",
        "integer ≥ 1 (1 = hand over on every release)",
        "—",
        "—",
        "—",
        "While callers wait: a thread that releases a connection and borrows again before any "
        "other thread uses the pool gets the same connection back, up to this many borrows in a "
        "row (its turn); then the connection goes to the oldest waiter. Threads only.",
    ),
    Setting(
        "idle_timeout",
        "`None` (off)",
        "`None` or number > 0, ≤ 31536000 (seconds)",
        "`IdleTimeout`",
        "`ConnMaxIdleTime`",
        "`minEvictableIdleDuration`",
        "LIFO: close connections idle this long. FIFO/round-robin: each window, close the "
        "connections the load did not need (shrink by demand). Never below `min_idle`.",
    ),
    Setting(
        "max_lifetime",
        "`None` (off)",
        "`None` or number > 0, ≤ 31536000 (seconds)",
        "`MaxConnLifetime`",
        "`ConnMaxLifetime`",
        "`maxConnLifetime` (DBCP)",
        "Connections older than this (minus jitter) are retired when released or found idle.",
    ),
    Setting(
        "lifetime_jitter",
        "0.05",
        "number 0 … 0.5 (fraction of `max_lifetime`)",
        "—",
        "jitter in `ConnMaxLifetime`",
        "—",
        "Each connection's lifetime is shortened by a random fraction up to this.",
    ),
    Setting(
        "health_check",
        '"peek"',
        '"peek", "ping", "none" or a callable(connection)',
        "`TestOnBorrow`",
        "peek on borrow",
        "`testOnBorrow` + validator",
        "How an idle connection is verified before it is handed out (every borrow also polls "
        'the socket for EOF/unexpected data, except with "none").',
    ),
    Setting(
        "health_check_after",
        "0.25",
        "number 0 … 31536000 (seconds)",
        "`lastUsed` argument",
        "—",
        "—",
        "Connections idle for less than this (and not suspect, and whose poll saw nothing) "
        "skip the configured check (HikariCP: 0.5 s).",
    ),
    Setting(
        "maintenance_interval",
        "`None` (lazy, on borrow/release)",
        "`None` or number > 0, ≤ 31536000 (seconds)",
        "—",
        "(reaper removed)",
        "`timeBetweenEvictionRuns`",
        "Run pruning and `min_idle` refill in one daemon thread (asyncio: one task) this often.",
    ),
    Setting(
        "endpoints",
        "`None` (`host`/`port` only)",
        '`None` or a non-empty list of `"host:port"` / `(host, port)`; URL: comma-separated',
        "—",
        "—",
        "—",
        "Proxies to spread new connections over without a balancer (as Codis' Jodis does): each "
        "holds an equal share; failing ones are backed off and rebalanced onto when they recover.",
    ),
    Setting(
        "on_connect",
        "`None`",
        "`None` or a callable(connection) (asyncio: may be async)",
        "`Dial` wrapper",
        "`OnConnect`",
        "`PooledObjectFactory.activateObject`",
        "Called on every newly (re)connected connection after redis-py's handshake, e.g. "
        "`fairpool.ScriptRegistry.on_connect` to preload scripts.",
    ),
    Setting(
        "name",
        '`"fairpool-<n>"` (n counts the pools made)',
        "a non-empty string of at most 200 printable characters",
        "—",
        "—",
        "`jmxNamePrefix`",
        "Labels the pool in `repr()` and every export (Prometheus, OpenTelemetry; "
        "[Statistics](stats.md)).",
    ),
    Setting(
        "leak_timeout",
        "`None` (off)",
        "`None` or number > 0, ≤ 31536000 (seconds)",
        "—",
        "—",
        "`AbandonedConfig.removeAbandonedTimeout` + `logAbandoned`",
        "Report a connection borrowed longer than this once, with a WARNING on the `fairpool` "
        "logger showing where it was borrowed, and one INFO line when it comes back; counted in "
        "`stats().leaks`. Pub/sub, `Monitor` and single-connection clients are exempt "
        "(HikariCP: `leakDetectionThreshold`).",
    ),
    Setting(
        "max_waiting",
        "`None` (no limit)",
        "`None` or integer ≥ 0",
        "—",
        "—",
        "—",
        "With `block`: when this many callers already wait, the next borrow fails at once with "
        "`fairpool.PoolOverloadedError` (load shedding); counted in `stats().sheds` "
        "(psycopg_pool: `max_waiting`).",
    ),
)

SETTING_NAMES = frozenset(s.name for s in SETTINGS)
assert {f.name for f in fields(PoolConfig)} == SETTING_NAMES, "SETTINGS and PoolConfig disagree"

_BOUNDS = {s.name: s.bound for s in SETTINGS}


def _fail(name: str, value: object, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"fairpool setting {name!r} must be {_BOUNDS[name]}; got {value!r}")


def render_settings_table() -> str:
    """The settings table of ``docs/settings.md``, rendered from :data:`SETTINGS`."""
    rows = [
        "| setting | default | allowed | redigo | go-redis | commons-pool2 | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        rows.append(
            f"| `{s.name}` | {s.default} | {s.bound} | {s.redigo} | {s.go_redis} "
            f"| {s.commons_pool} | {s.meaning} |"
        )
    return "\n".join(rows) + "\n"
