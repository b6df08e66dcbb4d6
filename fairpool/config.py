"""Pool settings: one table, one validator.

Every setting fairpool adds to redis-py's pool is declared once in :data:`SETTINGS`, with its
default, its allowed range and its equivalents in redigo, go-redis and commons-pool2. The same table
drives validation (:func:`make_config`), the conversion of ``from_url`` query parameters
(:func:`convert_query_value`) and the settings table in ``docs/settings.md`` (a test checks the docs
against it).
"""

from __future__ import annotations

import difflib
import enum
import inspect
import itertools
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "SETTINGS",
    "HealthCheck",
    "Policy",
    "PoolConfig",
    "Setting",
    "convert_query_value",
    "make_config",
]

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
_HEALTH_CHECK_NAMES = ("peek", "ping", "none")


class _MaxConnectionsValueError(TypeError, ValueError):
    """A bad ``max_connections``: a ``ValueError`` as redis-py raises, and a ``TypeError`` as
    fairpool raises for a value of the wrong type."""


def _fail(name: str, value: object, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"fairpool setting {name!r} must be {_BOUNDS[name]}; got {value!r}")


def _int(name: str, value: object, *, lo: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, value, TypeError)
    if value < lo:
        raise _fail(name, value)
    return value


def _seconds(name: str, value: object, *, positive: bool, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, TypeError)
    f = float(value)
    if math.isnan(f) or f < 0 or (positive and f == 0) or f > MAX_SECONDS:
        raise _fail(name, value)
    return f


def _policy(value: object) -> Policy:
    if isinstance(value, Policy):
        return value
    if isinstance(value, str):
        try:
            return Policy(value.strip().lower().replace("-", "_"))
        except ValueError:
            raise _fail("policy", value) from None
    raise _fail("policy", value, TypeError)


def make_config(
    *,
    policy: Policy | str = Policy.FIFO,
    max_connections: int | None = None,
    max_idle: int | None = None,
    min_idle: int = 0,
    block: bool = False,
    timeout: float | None = None,
    turn_borrows: int = 4,
    idle_timeout: float | None = None,
    max_lifetime: float | None = None,
    lifetime_jitter: float = 0.05,
    health_check: HealthCheck = "peek",
    health_check_after: float = 0.25,
    maintenance_interval: float | None = None,
    endpoints: Any = None,
    on_connect: Callable[[Any], object] | None = None,
    name: str | None = None,
    leak_timeout: float | None = None,
    max_waiting: int | None = None,
) -> PoolConfig:
    """Validate every setting and return a :class:`PoolConfig`.

    Raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range; the
    message names the setting and its allowed range.
    """
    mc = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
    try:
        mc_ = _int("max_connections", mc, lo=1)
    except (TypeError, ValueError) as exc:
        # Also redis-py's words (and a ValueError, as redis-py raises), for code matching them.
        redis_py_words = '"max_connections" must be a positive integer'
        raise _MaxConnectionsValueError(f"{exc} ({redis_py_words})") from None
    assert mc_ is not None
    mi = _int("min_idle", min_idle, lo=0)
    assert mi is not None
    if mi > mc_:
        raise ValueError(
            f"fairpool setting 'min_idle' must be {_BOUNDS['min_idle']}; "
            f"got {mi!r} with max_connections={mc_}"
        )
    mx = _int("max_idle", max_idle, lo=0, allow_none=True)
    if mx is not None and mx < mi:
        raise ValueError(
            f"fairpool setting 'max_idle' must be {_BOUNDS['max_idle']}; "
            f"got {mx!r} with min_idle={mi}"
        )
    if not isinstance(block, bool):
        raise _fail("block", block, TypeError)
    if callable(health_check):
        hc: HealthCheck = health_check
    elif isinstance(health_check, str) and health_check.lower() in _HEALTH_CHECK_NAMES:
        hc = health_check.lower()
    else:
        raise _fail(
            "health_check",
            health_check,
            TypeError if not isinstance(health_check, str) else ValueError,
        )
    jitter = _seconds("lifetime_jitter", lifetime_jitter, positive=False, allow_none=False)
    assert jitter is not None
    if jitter > 0.5:
        raise _fail("lifetime_jitter", lifetime_jitter)
    hca = _seconds("health_check_after", health_check_after, positive=False, allow_none=False)
    assert hca is not None
    turn = _int("turn_borrows", turn_borrows, lo=1)
    assert turn is not None
    return PoolConfig(
        policy=_policy(policy),
        max_connections=mc_,
        max_idle=mx,
        min_idle=mi,
        block=block,
        timeout=_seconds("timeout", timeout, positive=False),
        turn_borrows=turn,
        idle_timeout=_seconds("idle_timeout", idle_timeout, positive=True),
        max_lifetime=_seconds("max_lifetime", max_lifetime, positive=True),
        lifetime_jitter=jitter,
        health_check=hc,
        health_check_after=hca,
        maintenance_interval=_seconds("maintenance_interval", maintenance_interval, positive=True),
        endpoints=_endpoints(endpoints),
        on_connect=_callback("on_connect", on_connect),
        name=_name(name),
        leak_timeout=_seconds("leak_timeout", leak_timeout, positive=True),
        max_waiting=_int("max_waiting", max_waiting, lo=0, allow_none=True),
    )


_pool_numbers = itertools.count(1)


def _name(value: object) -> str:
    if value is None:
        return f"fairpool-{next(_pool_numbers)}"
    if not isinstance(value, str):
        raise _fail("name", value, TypeError)
    if not value or len(value) > 200 or not value.isprintable():
        raise _fail("name", value)
    return value


def resized_config(
    config: PoolConfig,
    *,
    max_connections: int | None = None,
    min_idle: int | None = None,
    max_idle: Any = ...,
) -> PoolConfig:
    """``config`` with new caps (``pool.resize(...)``), validated as :func:`make_config` does.

    ``None`` (or, for ``max_idle``, ``...``) keeps a setting; ``max_idle=None`` lifts its limit."""
    current = {f.name: getattr(config, f.name) for f in fields(config)}
    if max_connections is not None:
        current["max_connections"] = max_connections
    if min_idle is not None:
        current["min_idle"] = min_idle
    if max_idle is not ...:
        current["max_idle"] = max_idle
    return make_config(**current)


def _callback(name: str, value: object) -> Callable[[Any], object] | None:
    if value is None or callable(value):
        return value
    raise _fail(name, value, TypeError)


def _endpoint(item: object) -> tuple[str, int]:
    host: object
    port: object
    if isinstance(item, str):
        host, sep, port_s = item.strip().rpartition(":")
        if not sep or not host:
            raise _fail("endpoints", item)
        try:
            port = int(port_s)
        except ValueError:
            raise _fail("endpoints", item) from None
    elif isinstance(item, (tuple, list)) and len(item) == 2:
        host, port = item
    else:
        raise _fail("endpoints", item, TypeError)
    if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int):
        raise _fail("endpoints", item, TypeError)
    if not 0 < port < 65536:
        raise _fail("endpoints", item)
    return host.strip("[]"), port


def drain_target(
    endpoint: object, endpoints: tuple[tuple[str, int], ...] | None
) -> tuple[str, int] | None:
    """The endpoint ``pool.drain(endpoint=...)`` names, as ``(host, port)``; with ``endpoints``
    configured it must be one of them. ``None`` drains every endpoint."""
    if endpoint is None:
        return None
    try:
        target = _endpoint(endpoint)
    except (TypeError, ValueError):
        raise ValueError(
            f'fairpool: drain(endpoint=...) must be "host:port" or (host, port); got {endpoint!r}'
        ) from None
    if endpoints is not None and target not in endpoints:
        known = ", ".join(f"{h}:{p}" for h, p in endpoints)
        raise ValueError(
            f"fairpool: drain(endpoint={endpoint!r}): not one of the pool's endpoints ({known})"
        )
    return target


def _endpoints(value: object) -> tuple[tuple[str, int], ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise _fail("endpoints", value, TypeError)
    if not value:
        raise _fail("endpoints", value)
    result = tuple(_endpoint(item) for item in value)
    if len(set(result)) != len(result):
        raise ValueError(f"fairpool setting 'endpoints' lists an endpoint twice: {value!r}")
    return result


_TRUE = frozenset({"1", "true", "yes", "on", "y", "t"})
_FALSE = frozenset({"0", "false", "no", "off", "n", "f"})
_NONE = frozenset({"", "none", "null", "off", "never"})


def _to_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _fail(name, raw)


def _to_opt_number(name: str, raw: str, conv: Callable[[str], Any]) -> Any:
    if raw.strip().lower() in _NONE:
        return None
    try:
        return conv(raw.strip())
    except ValueError:
        raise _fail(name, raw) from None


_QUERY_CONVERTERS: Mapping[str, Callable[[str, str], Any]] = {
    "policy": lambda n, r: r,
    "max_connections": lambda n, r: _to_opt_number(n, r, int),
    "max_idle": lambda n, r: _to_opt_number(n, r, int),
    "min_idle": lambda n, r: _to_opt_number(n, r, int),
    "block": _to_bool,
    "timeout": lambda n, r: _to_opt_number(n, r, float),
    "turn_borrows": lambda n, r: _to_opt_number(n, r, int),
    "idle_timeout": lambda n, r: _to_opt_number(n, r, float),
    "max_lifetime": lambda n, r: _to_opt_number(n, r, float),
    "lifetime_jitter": lambda n, r: _to_opt_number(n, r, float),
    "health_check": lambda n, r: r,
    "health_check_after": lambda n, r: _to_opt_number(n, r, float),
    "maintenance_interval": lambda n, r: _to_opt_number(n, r, float),
    "endpoints": lambda n, r: r,
    "on_connect": lambda n, r: r,
    "name": lambda n, r: r,
    "leak_timeout": lambda n, r: _to_opt_number(n, r, float),
    "max_waiting": lambda n, r: _to_opt_number(n, r, int),
}
assert set(_QUERY_CONVERTERS) == SETTING_NAMES


def url_kwargs(
    parse_url: Callable[[str], Mapping[str, Any]], url: str, kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The keyword arguments of ``Pool.from_url(url, **kwargs)``: redis-py's ``parse_url`` (the
    sync or asyncio one) with fairpool's query parameters converted to their types; query values
    win over ``kwargs``, as in redis-py.

    fairpool's settings are taken out of the query before redis-py parses it: redis-py converts
    ``timeout`` and ``max_connections`` itself and would reject ``none``."""
    url, settings = split_pool_settings(url, SETTING_NAMES)
    url_options = dict(parse_url(url))
    url_options.update(settings)
    if "connection_class" in kwargs:
        url_options["connection_class"] = kwargs["connection_class"]
    return {**kwargs, **url_options}


def split_pool_settings(url: str, names: Collection[str]) -> tuple[str, dict[str, Any]]:
    """Take the query parameters in ``names`` (fairpool settings) out of ``url``: the URL without
    them, and their values converted to their types (:func:`convert_query_value`)."""
    parts = urlsplit(url)
    if not parts.query:
        return url, {}
    keep: list[tuple[str, str]] = []
    settings: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in names:
            settings[name] = convert_query_value(name, value)
        else:
            keep.append((name, value))
    if not settings:
        return url, {}
    return urlunsplit(parts._replace(query=urlencode(keep))), settings


def convert_query_value(name: str, raw: object) -> Any:
    """Convert a ``from_url`` query-string value of fairpool setting ``name`` to its type.

    Values that are not strings (already converted by redis-py, or passed as keyword arguments)
    are returned unchanged; validation happens in :func:`make_config`.
    """
    if not isinstance(raw, str):
        return raw
    return _QUERY_CONVERTERS[name](name, raw)


def connection_keywords(connection_class: object) -> frozenset[str] | None:
    """The keyword arguments ``connection_class(...)`` accepts, read from the ``__init__``
    signatures along its MRO (a class taking ``**kwargs`` passes them on to the next one), so
    that keywords added by later redis-py versions are known without a list here. ``None`` when
    the signatures do not tell (every ``__init__`` takes ``**kwargs``)."""
    names: set[str] = set()
    for klass in getattr(connection_class, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return frozenset(names)  # this one passes on only what it names itself
    return None


_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")


def check_connection_kwargs(
    pool_name: str,
    connection_class: Any,
    kwargs: Mapping[str, Any],
    known: Collection[str],
    siblings: Collection[Any] = (),
) -> None:
    """Reject a keyword argument that would reach ``connection_class`` and that it does not
    accept (a misspelt setting, typically), with a suggestion; raises ``TypeError``.

    Keywords of redis-py's other connection classes (``siblings``: e.g. ``ssl_password`` given
    with a plain ``Connection``) pass, as redis-py's pool lets them. A keyword the signatures do
    not name is tried once on a throw-away connection (built, never connected): classes taking
    ``**kwargs`` (redis-py's Sentinel connection, user subclasses) may still accept it, and then
    it passes.
    """
    accepted = connection_keywords(connection_class)
    if accepted is None:
        return
    for sibling in siblings:
        accepted |= connection_keywords(sibling) or frozenset()
    if accepted.issuperset(kwargs):
        return
    try:
        connection_class(**{k: v for k, v in kwargs.items() if k not in accepted})
    except TypeError as exc:
        match = _UNEXPECTED.search(str(exc))
        if match is None or match.group(1) not in kwargs:
            return  # some other problem: redis-py reports it when the connection is used
        name = match.group(1)
    except Exception:
        return
    else:
        return
    raise unknown_keyword(
        pool_name,
        name,
        accepted | set(known),
        f"{getattr(connection_class, '__name__', connection_class)} does not accept it",
    )


def unknown_keyword(owner: str, name: str, known: Collection[str], why: str) -> TypeError:
    """The ``TypeError`` for a keyword argument nobody accepts, suggesting the closest known
    keyword or fairpool setting ("did you mean 'max_connections'?")."""
    candidates = sorted(SETTING_NAMES | set(known))
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(
        f"{owner}: unknown keyword argument {name!r} (not a fairpool setting, and {why}){hint}"
    )


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
