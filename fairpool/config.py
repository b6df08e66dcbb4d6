"""Pool settings: one table, one validator.

The settings are declared once in :data:`SETTINGS` (:mod:`fairpool.settings`); this module
validates them (:func:`make_config`, :func:`resized_config` for ``pool.resize()``,
:func:`drain_target` for ``pool.drain(endpoint)``) and checks the keyword arguments that reach the
connection class (:func:`check_connection_kwargs`). The conversion of ``from_url`` query
parameters lives in :mod:`fairpool.urls`. Every name of those modules is importable from here.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from typing import Any

from .settings import (
    _BOUNDS,
    DEFAULT_MAX_CONNECTIONS,
    MAX_SECONDS,
    SETTING_NAMES,
    SETTINGS,
    HealthCheck,
    Policy,
    PoolConfig,
    Setting,
    _fail,
    render_settings_table,
)
from .urls import convert_query_value, split_pool_settings, url_kwargs

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "MAX_SECONDS",
    "NAME_MAX",
    "SETTINGS",
    "SETTING_NAMES",
    "HealthCheck",
    "Policy",
    "PoolConfig",
    "Setting",
    "check_connection_kwargs",
    "convert_query_value",
    "drain_target",
    "make_config",
    "render_settings_table",
    "resized_config",
    "split_pool_settings",
    "url_kwargs",
]

_HEALTH_CHECK_NAMES = ("peek", "ping", "none")


class _MaxConnectionsValueError(TypeError, ValueError):
    """A bad ``max_connections``: a ``ValueError`` as redis-py raises, and a ``TypeError`` as
    fairpool raises for a value of the wrong type."""


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


NAME_MAX = 200
"""The longest ``name`` a pool may have."""

_pool_numbers = itertools.count(1)


def _name(value: object) -> str:
    if value is None:
        return f"fairpool-{next(_pool_numbers)}"
    if not isinstance(value, str):
        raise _fail("name", value, TypeError)
    if not value or len(value) > NAME_MAX or not value.isprintable():
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
