"""The recovery loops, written once and free of I/O: generators that yield what to send.

Each loop is a generator that yields an operation (:class:`Call`, :class:`Batch` or :data:`FLUSH`),
receives its outcome — the reply, or the ``ResponseError`` the server answered, as a value — and
finally returns the script's reply (or raises a :class:`~fairpool.ScriptError`). The sync and
asyncio drivers in :mod:`fairpool.scripting.drivers` perform the operations; nothing here knows
whether it runs in a thread or on an event loop.

* :func:`direct` — ``EVALSHA`` (or ``EVALSHA_RO``); on ``NOSCRIPT`` or a "not Redis 7" refusal,
  :func:`recover`.
* :func:`recover` — ``SCRIPT LOAD`` + ``EVALSHA`` in one ``MULTI``/``EXEC``, up to
  :data:`~fairpool.scripting.errors.RECOVERY_ATTEMPTS` times.
* :func:`on_cluster` — the same on a cluster, where a transaction cannot span nodes: ``SCRIPT
  LOAD`` on the node that owns the keys' slot, then ``EVALSHA`` routed by the keys.
* :func:`load_on_cluster` — ``SCRIPT LOAD`` on every primary (for preloading).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

from redis.exceptions import NoScriptError as RedisNoScriptError
from redis.exceptions import ResponseError

from .cache import ServerInfo
from .errors import RECOVERY_ATTEMPTS
from .script import Script

__all__ = [
    "FLUSH",
    "Batch",
    "Call",
    "Op",
    "Steps",
    "direct",
    "load_on_cluster",
    "on_cluster",
    "recover",
]


class Call(NamedTuple):
    """Send one command: ``client.execute_command(*args, **route)``."""

    args: tuple[Any, ...]
    route: dict[str, Any]


class Batch(NamedTuple):
    """Send ``commands`` in one round trip (a pipeline, MULTI/EXEC if ``transaction``).

    The outcome is the list of replies (errors in place), or the ``ResponseError`` that refused
    the whole batch (``EXECABORT``).
    """

    commands: tuple[tuple[Any, ...], ...]
    transaction: bool


class _Flush(NamedTuple):
    """Execute the pipeline being driven, as queued; the outcome is its list of replies."""


FLUSH = _Flush()
"""The one :class:`_Flush` operation."""

Op = Call | Batch | _Flush
"""What a step asks its driver to do."""
Steps = Generator[Op, Any, Any]
"""A recovery loop: yields :data:`Op` s, is sent their outcomes, returns the result."""

_NO_REPLY = object()


def _eval(command: str, sha: str, keys: tuple[Any, ...], args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (command, sha, len(keys), *keys, *args)


def _ran(script: Script, server: ServerInfo, command: str, source: str, reply: Any) -> bool:
    """True: ``reply`` is the script's result. False: run it again (``NOSCRIPT``, or the server
    turned out to be older than Redis 7). Raises the script's error for any other failure."""
    if isinstance(reply, RedisNoScriptError):
        return False
    if isinstance(reply, ResponseError):
        script._retry_or_raise(server, command, source, reply)
        return False
    script._learned(server, command, source)
    return True


def direct(
    script: Script,
    server: ServerInfo,
    keys: tuple[Any, ...],
    args: tuple[Any, ...],
    first: Any = _NO_REPLY,
) -> Steps:
    """Run ``script`` once on one server, recovering ``NOSCRIPT``.

    ``first``: the outcome of the first command (as :meth:`Script._choose` picks it), when the
    runner already sent it (its fast path); without it the first command is sent from here.
    """
    command, sha, source = script._choose(server)
    reply = first
    if reply is _NO_REPLY:
        reply = yield Call(_eval(command, sha, keys, args), {})
    if _ran(script, server, command, source, reply):
        return reply
    if isinstance(reply, RedisNoScriptError):
        server.loaded.discard(sha)
    return (yield from recover(script, server, keys, args))


def recover(
    script: Script, server: ServerInfo, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Steps:
    """``SCRIPT LOAD`` + ``EVALSHA`` in one ``MULTI``/``EXEC`` on the server, until it runs."""
    last: BaseException | None = None
    for _ in range(RECOVERY_ATTEMPTS):
        command, sha, source = script._choose(server)
        replies = yield Batch((("SCRIPT", "LOAD", source), _eval(command, sha, keys, args)), True)
        if isinstance(replies, ResponseError):  # EXECABORT: a command was refused when queued
            script._retry_or_raise(server, command, source, replies)
            continue
        loaded, reply = replies
        last = reply if isinstance(reply, BaseException) else loaded
        if isinstance(loaded, ResponseError):
            script._retry_or_raise(server, command, source, loaded)
            continue
        server.loaded.add(sha)
        if _ran(script, server, command, source, reply):
            return reply
        if isinstance(reply, RedisNoScriptError):
            server.loaded.discard(sha)
    raise script._gave_up(last)


def _eval_route(cluster: Any, command: str, keys: tuple[Any, ...]) -> dict[str, Any]:
    # redis-py routes EVALSHA by its keys without a round trip; EVALSHA_RO it would route
    # with COMMAND GETKEYS (a round trip), so fairpool picks the node itself.
    if command != "EVALSHA_RO":
        return {}
    node = cluster.get_node_from_key(keys[0]) if keys else cluster.get_random_node()
    return {"target_nodes": node}


def _load_route(cluster: Any, keys: tuple[Any, ...]) -> dict[str, Any]:
    # The server that answered owns the keys' slot; without keys the script ran on a random
    # node, so load it on every primary (redis-py's default for SCRIPT LOAD).
    return {"target_nodes": cluster.get_node_from_key(keys[0])} if keys else {}


def on_cluster(
    script: Script, cluster: Any, server: ServerInfo, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Steps:
    """Run ``script`` on a ``RedisCluster`` (``cluster`` only picks nodes: no I/O here)."""
    last: BaseException | None = None
    for attempt in range(RECOVERY_ATTEMPTS + 1):
        command, sha, source = script._choose(server)
        if attempt:
            loaded = yield Call(("SCRIPT LOAD", source), _load_route(cluster, keys))
            if isinstance(loaded, ResponseError):
                script._retry_or_raise(server, command, source, loaded)
                continue
        reply = yield Call(_eval(command, sha, keys, args), _eval_route(cluster, command, keys))
        if _ran(script, server, command, source, reply):
            return reply
        if isinstance(reply, RedisNoScriptError):
            last = reply
    raise script._gave_up(last)


def load_on_cluster(script: Script, server: ServerInfo) -> Steps:
    """``SCRIPT LOAD`` on every primary of a cluster; returns the SHA."""
    for _ in range(2):
        source = script._choose_preload(server)
        sha = yield Call(("SCRIPT LOAD", source), {})
        if isinstance(sha, ResponseError):
            script._retry_or_raise(server, "SCRIPT LOAD", source, sha)
            continue
        script._learned(server, "SCRIPT LOAD", source)
        return str(sha.decode() if isinstance(sha, bytes) else sha)
    raise RuntimeError("unreachable: the second round uses the legacy source")
