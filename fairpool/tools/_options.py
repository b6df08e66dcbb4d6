"""Parsing the comma-separated lists of names that ``fairpool demo`` and ``fairpool bench`` take."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["parse_choice_list"]


def parse_choice_list(
    text: str | Iterable[str], aliases: dict[str, str], choices: Sequence[str], *, what: str
) -> tuple[str, ...]:
    """Parse a comma-separated list (or a sequence) of names through ``aliases`` into
    de-duplicated canonical names, in order. Raises ``ValueError`` naming the valid ``choices``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in aliases:
            raise ValueError(f"unknown {what} {item.strip()!r}; choose from {', '.join(choices)}")
        if aliases[name] not in out:
            out.append(aliases[name])
    if not out:
        raise ValueError(f"no {what} given; choose from {', '.join(choices)}")
    return tuple(out)
