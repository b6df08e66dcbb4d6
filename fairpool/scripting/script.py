"""``Script``: a Lua script's source, SHAs and flags, and the choices a call makes about a server.

A :class:`Script` is data plus small decisions (which command, SHA and source to send to a server,
what a reply teaches about that server, which typed error a failure is); it does no I/O itself.
Calling it hands over to the runner for the client's type (:mod:`fairpool.scripting.dispatch`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, overload

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .cache import ServerInfo
from .errors import (
    ScriptError,
    ScriptLintWarning,
    gave_up,
    is_shebang_error,
    is_unknown_command,
    script_error,
)
from .lint import lint as lint_source

__all__ = ["ArgT", "Handler", "KeyT", "Script", "handlers"]

KeyT = str | bytes | memoryview
"""A key: what redis-py accepts as one."""
ArgT = str | bytes | memoryview | int | float
"""An argument: what redis-py can encode."""

Handler = Callable[["Script", Any, tuple[Any, ...], tuple[Any, ...]], Any]
"""A runner: ``handler(script, client, keys, args)`` runs the script on that kind of client."""
handlers: dict[type, Handler] = {}
"""Client type -> runner; filled on first use of each type by :mod:`fairpool.scripting.dispatch`."""


class Script:
    """A Lua script, run with EVALSHA on any redis-py client; see :mod:`fairpool.scripting`.

    ``Script(source)(client, keys=(), args=())`` returns the script's reply (an awaitable for
    asyncio clients; the pipeline itself for pipelines, whose ``execute()`` returns the reply).

    Attributes:
        source: the script text.
        name: a name for errors and warnings (default ``script:<sha prefix>``).
        sha: the SHA1 of :attr:`source`, as ``EVALSHA`` wants it.
        readonly: runs with ``EVALSHA_RO`` on Redis 7+.
        flags: the flags of a ``#!lua flags=...`` first line (empty without one).
        legacy_source: what Redis < 7 gets: the shebang turned into a comment (or :attr:`source`).
        legacy_sha: the SHA1 of :attr:`legacy_source`.
    """

    __slots__ = (
        "_lines",
        "_plain",
        "flags",
        "has_shebang",
        "legacy_sha",
        "legacy_source",
        "name",
        "readonly",
        "sha",
        "source",
    )

    def __init__(
        self,
        source: str | bytes,
        *,
        name: str | None = None,
        readonly: bool | None = None,
        lint: bool = True,
    ) -> None:
        """Prepare a script; nothing is sent to any server here.

        Args:
            source: Lua source (bytes are decoded as UTF-8).
            name: shown in errors and warnings.
            readonly: use ``EVALSHA_RO`` (Redis 7+). Default: True when the source starts with
                ``#!lua flags=...`` including ``no-writes``.
            lint: emit :class:`~fairpool.ScriptLintWarning` s for the problems
                :func:`fairpool.scripting.lint` finds.
        """
        if isinstance(source, bytes):
            source = source.decode("utf-8")
        if not isinstance(source, str):
            raise TypeError(f"source must be str or bytes, not {type(source).__name__}")
        if not source.strip():
            raise ValueError("source must not be empty")
        self.source = source
        self.sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
        self.name = name if name is not None else f"script:{self.sha[:8]}"
        self.has_shebang = source.startswith("#!")
        flags: tuple[str, ...] = ()
        if self.has_shebang:
            first, _, rest = source.partition("\n")
            for word in first[2:].split():
                if word.startswith("flags="):
                    flags = tuple(f for f in word[len("flags=") :].split(",") if f)
            self.legacy_source = "--" + first + ("\n" + rest if _ else "")
        else:
            self.legacy_source = source
        self.legacy_sha = hashlib.sha1(self.legacy_source.encode("utf-8")).hexdigest()
        self.flags = flags
        self.readonly = bool(readonly) if readonly is not None else "no-writes" in flags
        self._plain = not self.readonly and not self.has_shebang
        self._lines = source.splitlines()
        if lint:
            for problem in lint_source(source, name=self.name):
                warnings.warn(problem, ScriptLintWarning, stacklevel=2)

    def __repr__(self) -> str:
        """``<Script 'name' sha=abcdef12 readonly>``."""
        ro = " readonly" if self.readonly else ""
        return f"<Script {self.name!r} sha={self.sha[:8]}{ro}>"

    def __eq__(self, other: object) -> bool:
        """Scripts are equal when their source, name and readonly flag are."""
        if not isinstance(other, Script):
            return NotImplemented
        return (self.sha, self.name, self.readonly) == (other.sha, other.name, other.readonly)

    def __hash__(self) -> int:
        """Hash of (sha, name, readonly)."""
        return hash((self.sha, self.name, self.readonly))

    # -- running -----------------------------------------------------------------------------

    @overload
    def __call__(
        self,
        client: redis.asyncio.Redis | AsyncRedisCluster,
        keys: Sequence[KeyT] = (),
        args: Iterable[ArgT] = (),
    ) -> Awaitable[Any]: ...

    @overload
    def __call__(
        self,
        client: redis.Redis | RedisCluster,
        keys: Sequence[KeyT] = (),
        args: Iterable[ArgT] = (),
    ) -> Any: ...

    def __call__(self, client: Any, keys: Sequence[KeyT] = (), args: Iterable[ArgT] = ()) -> Any:
        """Run the script on ``client`` with ``keys`` (KEYS) and ``args`` (ARGV).

        Returns the reply; for ``redis.asyncio`` clients an awaitable of it; for a pipeline the
        pipeline (the reply comes from its ``execute()``).

        Raises:
            ScriptError: the script failed (subclasses for NOSCRIPT, BUSY, CROSSSLOT).
            CrossSlotError: on a cluster, before sending, when the keys span slots.
            TypeError: ``client`` is not a redis-py client, or is a cluster pipeline.
        """
        if isinstance(keys, (str, bytes)) or isinstance(args, (str, bytes)):
            raise TypeError("keys and args are sequences: write [key], not key")
        handler = handlers.get(type(client))
        if handler is None:
            from .dispatch import resolve_handler  # the runners import this module

            handler = resolve_handler(type(client))
        return handler(self, client, tuple(keys), tuple(args))

    # -- choices about a server (no I/O) -----------------------------------------------------

    def _choose(self, server: ServerInfo) -> tuple[str, str, str]:
        """(command, sha, source) for a server, given what is known about it."""
        if self._plain:
            return "EVALSHA", self.sha, self.source
        if server.modern is False:
            return "EVALSHA", self.legacy_sha, self.legacy_source
        return ("EVALSHA_RO" if self.readonly else "EVALSHA"), self.sha, self.source

    def _choose_queued(self, server: ServerInfo) -> tuple[str, str, str]:
        """Like :meth:`_choose`, but safe on any server when its generation is unknown.

        A queued command cannot be retried in another form, so an unknown server gets the form
        every Redis runs: EVALSHA of the legacy source.
        """
        if not self._plain and server.modern is None:
            return "EVALSHA", self.legacy_sha, self.legacy_source
        return self._choose(server)

    def _choose_preload(self, server: ServerInfo) -> str:
        """The source to SCRIPT LOAD on a server whose generation may be unknown."""
        if self.has_shebang and server.modern is False:
            return self.legacy_source
        return self.source

    def _learned(self, server: ServerInfo, command: str, source: str) -> None:
        """A command/source that only Redis 7+ accepts has just worked."""
        if command == "EVALSHA_RO" or (self.has_shebang and source is self.source):
            server.modern = True

    def _downgrade(
        self, server: ServerInfo, command: str, source: str, error: BaseException
    ) -> bool:
        """True (and the server marked pre-7) if ``error`` says it does not speak Redis 7."""
        if (command == "EVALSHA_RO" and is_unknown_command(error)) or (
            self.has_shebang and source is self.source and is_shebang_error(error)
        ):
            server.modern = False
            return True
        return False

    def _retry_or_raise(
        self, server: ServerInfo, command: str, source: str, error: BaseException
    ) -> None:
        """Return if ``error`` only says "not Redis 7" (retry the old form); raise it otherwise."""
        if not self._downgrade(server, command, source, error):
            raise self._error(error) from error

    def _error(self, error: BaseException) -> ScriptError:
        """Turn a server error into the matching :class:`~fairpool.ScriptError`."""
        return script_error(error, name=self.name, sha=self.sha, lines=self._lines)

    def _gave_up(self, last: BaseException | None) -> ScriptError:
        return gave_up(self.name, self.sha, last)
