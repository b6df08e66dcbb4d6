"""The typed script errors, the lint warning, and how a server error becomes one of them.

Every error is a ``redis.exceptions.ResponseError`` (and :class:`NoScriptError` /
:class:`CrossSlotError` the matching redis-py class), so existing ``except`` clauses keep working.
Imports nothing from the rest of the package.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from redis.exceptions import ClusterCrossSlotError, ResponseError
from redis.exceptions import NoScriptError as RedisNoScriptError

from .._compat import ERRORS_TAKE_STATUS_CODE

__all__ = [
    "RECOVERY_ATTEMPTS",
    "CrossSlotError",
    "NoScriptError",
    "ScriptBusyError",
    "ScriptError",
    "ScriptLintWarning",
    "gave_up",
    "is_shebang_error",
    "is_unknown_command",
    "message_of",
    "script_error",
]

RECOVERY_ATTEMPTS = 3
"""How many SCRIPT LOAD + EVALSHA rounds before giving up (each one is atomic but a
generation change of the server -- a restart into another version -- costs one)."""

_LINE_RE = re.compile(r"user_script:(\d+)")


class ScriptError(ResponseError):
    """A Lua script failed on the server (or, for :class:`CrossSlotError`, was refused before).

    ``str(error)`` reads like ``script 'limiter' line 12 (local x = KEYS[1] + 1): <server
    message>``. It is a ``redis.exceptions.ResponseError``, so code catching that still works.

    Attributes:
        script_name: the script's name (:attr:`fairpool.Script.name`).
        sha: the SHA1 of the source that ran.
        line: the line number from the server's ``@user_script:N``, or None.
        source_line: the text of that line in the script, stripped, or None.
        server_message: the server's error message, unchanged.
    """

    def __init__(
        self,
        message: str,
        *,
        script_name: str | None = None,
        sha: str | None = None,
        line: int | None = None,
        source_line: str | None = None,
        server_message: str = "",
        status_code: str | None = None,
    ) -> None:
        """Build the error; ``message`` is the full text, the rest are the parts."""
        if ERRORS_TAKE_STATUS_CODE:
            super().__init__(message, status_code=status_code)
        else:  # redis-py before 8.x: its errors take no status code
            super().__init__(message)
        self.script_name = script_name
        self.sha = sha
        self.line = line
        self.source_line = source_line
        self.server_message = server_message


class NoScriptError(ScriptError, RedisNoScriptError):
    """``NOSCRIPT``: the server did not have the script, even right after ``SCRIPT LOAD``.

    fairpool recovers from ``NOSCRIPT`` itself; this surfaces only when loading kept failing.
    """


class ScriptBusyError(ScriptError):
    """``BUSY``: the server is running a (possibly other) script past ``busy-reply-threshold``.

    Retry later; ``SCRIPT KILL`` stops the running script only if it has not written yet.
    """


class CrossSlotError(ScriptError, ClusterCrossSlotError):
    """The script's keys hash to more than one cluster slot (``CROSSSLOT``).

    Raised by the client-side check before anything is sent, or mapped from the server's reply.
    """


class ScriptLintWarning(UserWarning):
    """A script does something that tends to hurt a Redis server (``fairpool.scripting.lint``)."""


def message_of(error: BaseException) -> str:
    """The server's message in ``error`` (its first argument)."""
    return str(error.args[0]) if error.args else str(error)


def is_unknown_command(error: BaseException) -> bool:
    """True for ``ERR unknown command`` (e.g. ``EVALSHA_RO`` before Redis 7)."""
    return "unknown command" in message_of(error).lower()


def is_shebang_error(error: BaseException) -> bool:
    """True when Redis < 7 failed to compile a ``#!lua`` first line."""
    # "user_script:1: unexpected symbol near '#'"
    return "near '#'" in message_of(error)


def script_error(error: BaseException, *, name: str, sha: str, lines: Sequence[str]) -> ScriptError:
    """Turn a server error about script ``name`` (source ``lines``) into a :class:`ScriptError`."""
    if isinstance(error, ScriptError):
        return error
    text = message_of(error)
    status = getattr(error, "status_code", None)
    m = _LINE_RE.search(text)
    line = int(m.group(1)) if m else None
    source_line = None
    if line is not None and 1 <= line <= len(lines):
        source_line = lines[line - 1].strip() or None
    cls: type[ScriptError]
    if isinstance(error, RedisNoScriptError):
        cls = NoScriptError
    elif status == "BUSY" or text.startswith("BUSY"):
        cls = ScriptBusyError
    elif isinstance(error, ClusterCrossSlotError) or text.startswith("CROSSSLOT"):
        cls = CrossSlotError
    else:
        cls = ScriptError
    where = f"script {name!r}"
    if line is not None:
        where += f" line {line}"
        if source_line:
            where += f" ({source_line})"
    return cls(
        f"{where}: {text}",
        script_name=name,
        sha=sha,
        line=line,
        source_line=source_line,
        server_message=text,
        status_code=status,
    )


def gave_up(name: str, sha: str, last: BaseException | None) -> NoScriptError:
    """The error when :data:`RECOVERY_ATTEMPTS` rounds of SCRIPT LOAD did not help."""
    return NoScriptError(
        f"script {name!r}: still NOSCRIPT after {RECOVERY_ATTEMPTS} SCRIPT LOAD "
        f"attempts ({message_of(last) if last else 'no reply'})",
        script_name=name,
        sha=sha,
        server_message=message_of(last) if last else "",
        status_code="NOSCRIPT",
    )
