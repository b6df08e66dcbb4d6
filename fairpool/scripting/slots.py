"""The cluster slot check: a script's keys must hash to one slot, checked before anything is sent.

Imports only :mod:`fairpool.scripting.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from redis.crc import key_slot

from .errors import CrossSlotError

__all__ = ["check_slot"]


def _encode_key(key: Any, encoder: Any) -> bytes:
    if encoder is not None:
        return cast(bytes, encoder.encode(key))
    if isinstance(key, bytes):
        return key
    if isinstance(key, memoryview):
        return key.tobytes()
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (int, float)) and not isinstance(key, bool):
        return repr(key).encode("ascii")
    raise TypeError(f"invalid key {key!r}: expected str, bytes, memoryview, int or float")


def _suggest_tag(names: Sequence[str]) -> str:
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    cut = max(prefix.rfind(":"), prefix.rfind("."), prefix.rfind("/"), prefix.rfind("-"))
    tag = prefix[:cut] if cut > 0 else ""
    if tag and "{" not in tag and "}" not in tag:
        example = ", ".join(repr("{" + tag + "}" + n[len(tag) :]) for n in names[:2])
        return f"give them a common hash tag, e.g. {example} (keys with one tag share a slot)"
    return (
        "give them a common {hash tag}: only the part between the first '{' and the next '}' "
        "is hashed, e.g. '{order:42}:items' and '{order:42}:total'"
    )


def check_slot(
    keys: Sequence[Any], *, encoder: Any = None, script_name: str | None = None
) -> int | None:
    """Return the one cluster slot ``keys`` hash to (None for no keys), or raise.

    Args:
        keys: the script's KEYS.
        encoder: a redis-py ``Encoder`` (``cluster.get_encoder()``) to turn keys into bytes;
            by default str is UTF-8 and numbers use ``repr``, like redis-py's default.
        script_name: named in the error message.

    Raises:
        CrossSlotError: the keys hash to different slots; the message lists each key's slot
            and suggests a ``{hash tag}``.
    """
    if not keys:
        return None
    slots: dict[int, list[str]] = {}
    for key in keys:
        raw = _encode_key(key, encoder)
        slots.setdefault(key_slot(raw), []).append(raw.decode("utf-8", "replace"))
    if len(slots) == 1:
        return next(iter(slots))
    listing = ", ".join(f"{name!r} -> slot {slot}" for slot, ns in slots.items() for name in ns)
    names = [name for ns in slots.values() for name in ns]
    who = f"script {script_name!r}" if script_name else "script"
    message = (
        f"{who}: its KEYS hash to {len(slots)} different cluster slots ({listing}); a script's "
        f"keys must all live in one slot: {_suggest_tag(names)}"
    )
    raise CrossSlotError(message, script_name=script_name, server_message="")
