"""fairpool settings handed over by another library: a mapping of setting names, or the strings
of a URL query."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import SETTING_NAMES, convert_query_value


def split_settings(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``params`` split into fairpool's settings (query strings converted to their types; the pool
    validates them) and the rest (redis-py's connection arguments)."""
    settings: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in params.items():
        if name in SETTING_NAMES:
            settings[name] = convert_query_value(name, value)
        else:
            rest[name] = value
    return settings, rest


def settings_option(options: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """The ``"fairpool"`` entry of a library's options (a mapping of fairpool settings), checked
    for unknown names so that a typo fails loudly."""
    raw = (options or {}).get("fairpool") or {}
    if not isinstance(raw, Mapping):
        raise TypeError(f"{where}['fairpool'] must be a mapping of fairpool settings; got {raw!r}")
    unknown = sorted(set(raw) - SETTING_NAMES)
    if unknown:
        raise ValueError(
            f"{where}['fairpool']: unknown fairpool setting(s) {unknown}; "
            f"known: {sorted(SETTING_NAMES)}"
        )
    settings, _ = split_settings(raw)
    return settings
