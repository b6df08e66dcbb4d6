"""``from_url`` query parameters: fairpool's settings split off a URL and converted to their
types (``?policy=round_robin&max_idle=8&block=true&timeout=2``), from :data:`SETTINGS`."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .settings import SETTING_NAMES, _fail

__all__ = ["convert_query_value", "split_pool_settings", "url_kwargs"]

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
