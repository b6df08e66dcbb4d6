"""Leak detection, the shells' side (``leak_timeout``): where a connection was borrowed, who is
exempt, and the log lines.

The core (:class:`fairpool.core.PoolCore`) decides *which* borrows have lasted longer than
``leak_timeout`` (each reported once) and flags a reported connection's release; the shells call
:func:`borrower` on every borrow while the setting is on and :func:`report` with what the core
returns.

Exempt by default: clients that hold one connection on purpose for as long as they live —
redis-py's ``PubSub`` and ``Monitor`` (sync and asyncio) and a ``Redis(...,
single_connection_client=True)`` client. redis-py 5.1 and later borrow for them with
``get_connection()`` and no arguments, so they are recognised by the function that borrows (the
caller's code object, looked up a few frames up); redis-py 5.0 also passes a command name
(``"pubsub"``, ``"MONITOR"``, ``"_"``). Exempt your own long-lived holders with
:func:`exempt_caller` (a decorator), or one borrow with ``pool.exempt_from_leak_detection(conn)``.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = [
    "EXEMPT_COMMANDS",
    "Borrower",
    "borrower",
    "check_interval",
    "exempt_caller",
    "format_borrower",
    "report",
]

F = TypeVar("F", bound=Callable[..., Any])

EXEMPT_COMMANDS = frozenset({"pubsub", "MONITOR", "_"})
"""Command names redis-py 5.0 passes to ``get_connection()`` for pub/sub, ``Monitor`` and
single-connection clients."""

STACK_LIMIT = 16
"""Frames kept of a borrower's stack (innermost last)."""

_SEARCH_DEPTH = 4  # frames above get_connection() searched for an exempt caller
_MIN_INTERVAL = 0.01  # seconds: the fastest leak check the shells schedule

_exempt_codes: set[CodeType] = set()

Borrower = list[tuple[CodeType, int]]
"""A borrower's stack: ``(code, instruction offset)`` pairs, innermost first."""


def exempt_caller(func: F) -> F:
    """Exempt every borrow made by ``func`` (directly, or through up to a few wrappers) from leak
    detection. Usable as a decorator; returns ``func``."""
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):
        raise TypeError(f"fairpool: exempt_caller() needs a Python function; got {func!r}")
    _exempt_codes.add(code)
    return func


def _exempt_redis_py() -> None:
    """redis-py's long-lived holders (those this version has)."""
    import redis.asyncio.client as aclient
    import redis.client as client

    for owner, name in (
        (client.Redis, "__init__"),  # single_connection_client=True
        (client.PubSub, "execute_command"),
        (client.Monitor, "__init__"),
        (aclient.Redis, "initialize"),
        (aclient.PubSub, "connect"),
        (aclient.Monitor, "connect"),
    ):
        func = getattr(owner, name, None)
        if func is not None and isinstance(getattr(func, "__code__", None), CodeType):
            _exempt_codes.add(func.__code__)


_exempt_redis_py()


def borrower(frame: FrameType | None, command_name: object = None) -> Borrower | None:
    """Where a borrow made from ``frame`` (the caller of ``get_connection()``) comes from: its
    innermost :data:`STACK_LIMIT` frames as ``(code, instruction offset)`` pairs, or ``None`` if
    the borrow is exempt from leak detection. Cheap (no line numbers, no ``traceback`` objects):
    it runs on every borrow while ``leak_timeout`` is on; :func:`format_borrower` formats it when
    a leak is reported."""
    if command_name in EXEMPT_COMMANDS:
        return None
    stack: Borrower = []
    f = frame
    while f is not None and len(stack) < STACK_LIMIT:
        code = f.f_code
        if len(stack) < _SEARCH_DEPTH and code in _exempt_codes:
            return None
        stack.append((code, f.f_lasti))  # the line is looked up only if it is reported
        f = f.f_back
    return stack


def _line(code: CodeType, lasti: int) -> int:
    """The source line of the instruction at byte offset ``lasti`` of ``code``."""
    for start, end, line in code.co_lines():
        if start <= lasti < end and line is not None:
            return line
    return code.co_firstlineno


def format_borrower(stack: Borrower | None) -> str:
    """A borrower's stack as a traceback prints it (most recent call last)."""
    if not stack:
        return "(stack not captured)"
    summary = traceback.StackSummary.from_list(
        [
            (code.co_filename, _line(code, lasti), code.co_name, None)
            for code, lasti in reversed(stack)
        ]
    )
    return "".join(summary.format()).rstrip("\n")


def check_interval(leak_timeout: float | None, maintenance_interval: float | None) -> float | None:
    """How often the shell's maintenance thread (asyncio: task) runs: ``maintenance_interval``,
    or more often with ``leak_timeout`` so that a leak is reported at most a quarter of
    ``leak_timeout`` late even when nothing else happens in the pool. ``None``: no thread."""
    if leak_timeout is None:
        return maintenance_interval
    quarter = max(leak_timeout / 4, _MIN_INTERVAL)
    return quarter if maintenance_interval is None else min(quarter, maintenance_interval)


def report(
    logger: logging.Logger,
    leak_timeout: float | None,
    leaked: Iterable[Any],
    back: Iterable[tuple[Any, float]],
    now: float,
) -> None:
    """Log the core's leak reports (:meth:`~fairpool.core.PoolCore.take_leaks`): a WARNING with
    the borrower's stack per connection newly found borrowed longer than ``leak_timeout``, and
    one INFO line per reported connection that came back."""
    for slot in leaked:
        where = format_borrower(slot.borrower)
        logger.warning(
            "fairpool: possible connection leak: %r to %s borrowed %.3fs ago "
            "(leak_timeout=%ss), not released yet; borrowed at (most recent call last):\n%s",
            slot.conn,
            slot.endpoint or "?",
            now - slot.borrowed,
            leak_timeout,
            where,
        )
    for slot, held in back:
        logger.info(
            "fairpool: connection %r reported as leaked came back after %.3fs",
            slot.conn,
            held,
        )
