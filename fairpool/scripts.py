"""Lua scripts on Redis: :class:`Script`, typed :class:`ScriptError` s, :class:`ScriptRegistry`.

``Script(source)(client, keys, args)`` runs a script on a ``redis.Redis``, a ``Pipeline`` (also
inside MULTI), a ``redis.asyncio.Redis`` (returns an awaitable) or a ``RedisCluster``:

* **EVALSHA first.** On ``NOSCRIPT`` the script is loaded with ``SCRIPT LOAD`` on the server that
  answered and run again with ``EVALSHA``, both in one ``MULTI``/``EXEC`` round trip, so a
  ``SCRIPT FLUSH`` cannot slip in between. Never ``EVAL``: from Redis 8 scripts that EVAL loaded
  live in an LRU and get evicted; ``SCRIPT LOAD`` ed ones stay.
* **Pipelines** never pay redis-py's ``SCRIPT EXISTS`` round trip. fairpool remembers, per server,
  which scripts it has loaded there; when it does not know, it queues ``SCRIPT LOAD`` just before
  the ``EVALSHA`` in the same pipeline (transactions always do, so a MULTI block is atomic even if
  the script cache was flushed). ``pipe.execute()`` drops those extra replies, recovers a
  ``NOSCRIPT`` and keeps every result in its place (see :func:`execute`).
* **Read-only scripts** (a ``#!lua flags=no-writes`` shebang, or ``readonly=True``) run with
  ``EVALSHA_RO`` on Redis 7+, ``EVALSHA`` before; a shebang is turned into a comment for servers
  older than 7, which do not understand it. fairpool learns a server's generation from its
  replies, at no extra round trip on Redis 7+.
* **Cluster:** the keys must hash to one slot; that is checked on the client before anything is
  sent, and :class:`CrossSlotError` suggests a ``{hash tag}``.
* **Typed errors:** :class:`ScriptError` carries the script's name, the line the server reported
  (``@user_script:N``) and that line's text; :class:`NoScriptError`, :class:`ScriptBusyError`
  and :class:`CrossSlotError` tell ``NOSCRIPT``, ``BUSY`` and ``CROSSSLOT`` apart. They subclass
  redis-py's ``ResponseError`` (and ``NoScriptError`` / ``ClusterCrossSlotError``), so existing
  ``except`` clauses keep working.
* **Lint** at construction, as :class:`ScriptLintWarning`: sources over
  :data:`LINT_MAX_SOURCE_BYTES`, ``KEYS``/``SCAN`` and other O(N) calls, and key names built in
  Lua instead of passed in ``KEYS``.

:class:`ScriptRegistry` registers scripts once and loads them all on a client
(:meth:`ScriptRegistry.preload`) or on every connection a pool dials
(:meth:`ScriptRegistry.on_connect`).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import warnings
import weakref
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple, cast, overload

import redis
import redis.asyncio
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError, ResponseError
from redis.exceptions import NoScriptError as RedisNoScriptError

from ._compat import ERRORS_TAKE_STATUS_CODE

__all__ = [
    "LINT_MAX_SOURCE_BYTES",
    "CrossSlotError",
    "NoScriptError",
    "Script",
    "ScriptBusyError",
    "ScriptError",
    "ScriptLintWarning",
    "ScriptRegistry",
    "aexecute",
    "check_slot",
    "execute",
    "lint",
]

KeyT = str | bytes | memoryview
"""A key: what redis-py accepts as one."""
ArgT = str | bytes | memoryview | int | float
"""An argument: what redis-py can encode."""

LINT_MAX_SOURCE_BYTES = 4096
"""Scripts longer than this (in UTF-8 bytes) get a :class:`ScriptLintWarning`."""

_RECOVERY_ATTEMPTS = 3
"""How many SCRIPT LOAD + EVALSHA rounds before giving up (each one is atomic but a
generation change of the server -- a restart into another version -- costs one)."""

_LINE_RE = re.compile(r"user_script:(\d+)")


# --------------------------------------------------------------------------------------------
# Errors and warnings
# --------------------------------------------------------------------------------------------


class ScriptError(ResponseError):
    """A Lua script failed on the server (or, for :class:`CrossSlotError`, was refused before).

    ``str(error)`` reads like ``script 'limiter' line 12 (local x = KEYS[1] + 1): <server
    message>``. It is a ``redis.exceptions.ResponseError``, so code catching that still works.

    Attributes:
        script_name: the script's name (:attr:`Script.name`).
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
    """A script does something that tends to hurt a Redis server; see :func:`lint`."""


# --------------------------------------------------------------------------------------------
# What fairpool knows about each server
# --------------------------------------------------------------------------------------------


class _Server:
    """Per-server knowledge: which script SHAs are loaded, and whether it is Redis 7+."""

    __slots__ = ("__weakref__", "loaded", "modern")

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        # True: Redis 7+ (EVALSHA_RO, shebangs). False: older. None: not known yet.
        self.modern: bool | None = None


_servers: dict[Hashable, _Server] = {}
_servers_lock = threading.Lock()
_by_owner: weakref.WeakKeyDictionary[Any, _Server] = weakref.WeakKeyDictionary()


def _server_at(address: Hashable) -> _Server:
    server = _servers.get(address)
    if server is None:
        with _servers_lock:
            server = _servers.setdefault(address, _Server())
    return server


def _address_of_kwargs(kwargs: Any) -> Hashable | None:
    if not isinstance(kwargs, dict):
        return None
    path = kwargs.get("path")
    if path:
        return ("unix", str(path))
    return (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))


def _address_of_connection(connection: Any) -> Hashable:
    path = getattr(connection, "path", None)
    if path:
        return ("unix", str(path))
    host = getattr(connection, "host", None)
    port = getattr(connection, "port", None)
    if host is None or port is None:
        return ("connection", id(connection))
    return (str(host), int(port))


def _server_for_pool(pool: Any) -> _Server:
    """The :class:`_Server` a connection pool talks to, keyed by its host/port (or socket path)."""
    try:
        return _by_owner[pool]
    except (KeyError, TypeError):
        pass
    address = _address_of_kwargs(getattr(pool, "connection_kwargs", None))
    server = _server_at(address if address is not None else ("pool", id(pool)))
    with contextlib.suppress(TypeError):  # not weak-referenceable: look it up each time
        _by_owner[pool] = server
    return server


def _server_for_client(client: Any) -> _Server:
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return _Server()
    return _server_for_pool(pool)


def _server_for_cluster(cluster: Any) -> _Server:
    """A cluster's nodes are assumed to share one Redis generation: one :class:`_Server`."""
    try:
        return _by_owner[cluster]
    except (KeyError, TypeError):
        pass
    server = _Server()
    with contextlib.suppress(TypeError):
        _by_owner[cluster] = server
    return server


def forget_servers() -> None:
    """Forget everything learned about servers (loaded scripts, versions). For tests."""
    with _servers_lock:
        for server in _servers.values():
            server.loaded.clear()
            server.modern = None
        _servers.clear()
    _by_owner.clear()


def _message(error: BaseException) -> str:
    return str(error.args[0]) if error.args else str(error)


def _is_unknown_command(error: BaseException) -> bool:
    return "unknown command" in _message(error).lower()


def _is_shebang_error(error: BaseException) -> bool:
    # Redis < 7 compiling a "#!lua" first line: "user_script:1: unexpected symbol near '#'".
    return "near '#'" in _message(error)


# --------------------------------------------------------------------------------------------
# Cluster slot check
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Lint
# --------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Commands that walk a whole keyspace, set, hash or list: O(N) in the data, not in the call.
_ON_COMMANDS = _words(
    "KEYS SCAN SSCAN HSCAN ZSCAN SMEMBERS HGETALL HKEYS HVALS SUNION SUNIONSTORE SINTER "
    "SINTERSTORE SDIFF SDIFFSTORE SORT SORT_RO FLUSHALL FLUSHDB"
)
# Range commands: O(N) when asked for the whole range (0 .. -1, -inf .. +inf, - .. +).
_RANGE_COMMANDS = _words(
    "LRANGE ZRANGE ZREVRANGE ZRANGEBYSCORE ZREVRANGEBYSCORE ZRANGEBYLEX ZREVRANGEBYLEX "
    "XRANGE XREVRANGE"
)
_WHOLE_RANGES = (("0", "-1"), ("'-inf'", "'+inf'"), ("'+inf'", "'-inf'"), ("'-'", "'+'"))
# Commands whose first argument is not a key.
_NO_KEY_FIRST = _words(
    "ACL AUTH BGSAVE BITOP BLMPOP BZMPOP CLIENT CLUSTER COMMAND CONFIG DBSIZE DEBUG ECHO "
    "FLUSHALL FLUSHDB FUNCTION HELLO INFO KEYS LASTSAVE LATENCY LMPOP LOLWUT MEMORY MODULE "
    "OBJECT PING PUBLISH PUBSUB RANDOMKEY READONLY READWRITE ROLE SCAN SCRIPT SELECT "
    "SINTERCARD SLOWLOG SPUBLISH SWAPDB TIME WAIT XREAD XREADGROUP ZDIFF ZINTER ZINTERCARD "
    "ZMPOP ZUNION"
)
# Commands where every argument is a key.
_ALL_KEYS = frozenset({"DEL", "UNLINK", "EXISTS", "TOUCH", "MGET", "PFCOUNT", "WATCH"})

_CALL_RE = re.compile(r"\bredis\s*\.\s*p?call\s*\(")
_LOCAL_RE = re.compile(r"\blocal\s+([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=\s*([^\n;]+)")
_KEYS_INDEX_RE = re.compile(r"KEYS\s*\[[^\]]+\]")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")
_STRING_RE = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\[(=*)\[.*?\]\1\]""", re.S)


def _long_bracket(text: str, i: int) -> int:
    """If text[i:] opens a long bracket ``[==[``, return its level, else -1."""
    if text[i] != "[":
        return -1
    j = i + 1
    while j < len(text) and text[j] == "=":
        j += 1
    return j - i - 1 if j < len(text) and text[j] == "[" else -1


def _blank(text: str) -> str:
    return "".join("\n" if c == "\n" else " " for c in text)


def _strip_comments(source: str) -> str:
    """Lua source with comments blanked out (line numbers and string literals kept)."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c in "'\"":
            j = i + 1
            while j < n and source[j] != c and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            out.append(source[i : j + 1])
            i = j + 1
        elif c == "[" and _long_bracket(source, i) >= 0:
            level = _long_bracket(source, i)
            end = source.find("]" + "=" * level + "]", i)
            end = n if end < 0 else end + level + 2
            out.append(source[i:end])
            i = end
        elif source.startswith("--", i):
            level = _long_bracket(source, i + 2) if i + 2 < n else -1
            if level >= 0:
                end = source.find("]" + "=" * level + "]", i)
                end = n if end < 0 else end + level + 2
            else:
                end = source.find("\n", i)
                end = n if end < 0 else end
            out.append(_blank(source[i:end]))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split_args(text: str, start: int) -> list[str]:
    """The top-level comma-separated arguments of a call whose '(' ends just before start."""
    args: list[str] = []
    depth = 0
    current: list[str] = []
    i, n = start, len(text)
    while i < n:
        c = text[i]
        if c in "'\"[":
            m = _STRING_RE.match(text, i)
            if m:
                current.append(m.group(0))
                i = m.end()
                continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif c == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            i += 1
            continue
        current.append(c)
        i += 1
    tail = "".join(current).strip()
    if tail or args:
        args.append(tail)
    return args


def _literal(expr: str) -> str | None:
    """The text of a Lua string literal, or None if ``expr`` is not one."""
    m = _STRING_RE.fullmatch(expr)
    if not m:
        return None
    text = m.group(0)
    if text[0] in "'\"":
        return text[1:-1]
    level = len(m.group(1) or "")
    return text[level + 2 : -level - 2]


def _key_problem(expr: str, locals_: dict[str, str], depth: int = 0) -> str | None:
    e = expr.strip()
    while e.startswith("(") and e.endswith(")"):
        e = e[1:-1].strip()
    if _KEYS_INDEX_RE.fullmatch(e):
        return None
    if _NAME_RE.fullmatch(e):
        if e in locals_ and depth < 8:
            return _key_problem(locals_[e], locals_, depth + 1)
        return None  # a parameter, a loop variable...: cannot tell
    if _literal(e) is not None:
        return f"is the hard-coded name {e}"
    if ".." in e or "ARGV" in e or "string.format" in e or "table.concat" in e:
        return f"is built in Lua ({e})"
    return None


def lint(source: str, *, name: str | None = None) -> list[str]:
    """Return the problems :class:`Script` warns about, one message each (empty: none).

    Checks (heuristics on the text, no Lua parser):

    * the source is over :data:`LINT_MAX_SOURCE_BYTES`: a script blocks the whole server while it
      runs; split big ones;
    * ``redis.call``/``pcall`` of ``KEYS``, ``SCAN``, ``SMEMBERS``, ``HGETALL`` and other O(N)
      commands, or of a range command over its whole range (``0, -1``, ``'-inf', '+inf'``);
    * a key argument that is a string literal, a concatenation, ``string.format`` or ``ARGV``
      instead of ``KEYS[i]`` (directly or through a ``local``): undeclared keys break cluster
      routing and ACL key patterns.
    """
    who = f"script {name!r}" if name else "script"
    problems: list[str] = []
    size = len(source.encode("utf-8"))
    if size > LINT_MAX_SOURCE_BYTES:
        problems.append(
            f"{who} is {size} bytes (over {LINT_MAX_SOURCE_BYTES}): a script blocks the whole "
            "server while it runs; keep scripts small and split big ones"
        )
    code = _strip_comments(source)
    locals_: dict[str, str] = {}
    for m in _LOCAL_RE.finditer(code):
        names = [n.strip() for n in m.group(1).split(",")]
        values = _split_args(m.group(2) + ")", 0)
        for var, value in zip(names, values, strict=False):
            locals_.setdefault(var, value)
    for m in _CALL_RE.finditer(code):
        line = code.count("\n", 0, m.start()) + 1
        args = _split_args(code, m.end())
        if not args:
            continue
        command = _literal(args[0])
        if command is None:
            continue
        command = command.upper()
        where = f"{who} line {line}"
        if command in _ON_COMMANDS:
            problems.append(
                f"{where}: {command} is O(N) in the data and blocks the server while it runs; "
                "keep scripts O(1) (use SCAN-family commands from the client, in small batches)"
            )
        elif command in _RANGE_COMMANDS and len(args) >= 4 and (args[2], args[3]) in _WHOLE_RANGES:
            problems.append(
                f"{where}: {command} over the whole range ({args[2]}, {args[3]}) is O(N); "
                "bound the range"
            )
        if command in _NO_KEY_FIRST or len(args) < 2:
            continue
        key_args = args[1:] if command in _ALL_KEYS else args[1:2]
        for key_arg in key_args:
            problem = _key_problem(key_arg, locals_)
            if problem:
                problems.append(
                    f"{where}: the key of {command} {problem}; pass every key the script "
                    "touches in KEYS (cluster routing, ACL key patterns)"
                )
                break
    return problems


_lint = lint

# --------------------------------------------------------------------------------------------
# Script
# --------------------------------------------------------------------------------------------

_Handler = Callable[["Script", Any, tuple[Any, ...], tuple[Any, ...]], Any]
_handlers: dict[type, _Handler] = {}


class Script:
    """A Lua script, run with EVALSHA on any redis-py client; see the module docs.

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
            lint: emit :class:`ScriptLintWarning` s for the problems :func:`lint` finds.
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
            for problem in _lint(source, name=self.name):
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
        handler = _handlers.get(type(client))
        if handler is None:
            handler = _resolve_handler(type(client))
        return handler(self, client, tuple(keys), tuple(args))

    # -- helpers -----------------------------------------------------------------------------

    def _choose(self, server: _Server) -> tuple[str, str, str]:
        """(command, sha, source) for a server, given what is known about it."""
        if self._plain:
            return "EVALSHA", self.sha, self.source
        if server.modern is False:
            return "EVALSHA", self.legacy_sha, self.legacy_source
        return ("EVALSHA_RO" if self.readonly else "EVALSHA"), self.sha, self.source

    def _choose_queued(self, server: _Server) -> tuple[str, str, str]:
        """Like :meth:`_choose`, but safe on any server when its generation is unknown.

        A queued command cannot be retried in another form, so an unknown server gets the form
        every Redis runs: EVALSHA of the legacy source.
        """
        if not self._plain and server.modern is None:
            return "EVALSHA", self.legacy_sha, self.legacy_source
        return self._choose(server)

    def _choose_preload(self, server: _Server) -> str:
        """The source to SCRIPT LOAD on a server whose generation may be unknown."""
        if self.has_shebang and server.modern is False:
            return self.legacy_source
        return self.source

    def _load_cluster(self, cluster: Any) -> str:
        """SCRIPT LOAD on every primary of a sync cluster; returns the SHA."""
        server = _server_for_cluster(cluster)
        for _ in range(2):
            source = self._choose_preload(server)
            try:
                sha = cluster.execute_command("SCRIPT LOAD", source)
            except ResponseError as e:
                if self._downgrade(server, "SCRIPT LOAD", source, e):
                    continue
                raise self._error(e) from e
            self._learned(server, "SCRIPT LOAD", source)
            return str(sha.decode() if isinstance(sha, bytes) else sha)
        raise RuntimeError("unreachable: the second round uses the legacy source")

    async def _load_cluster_async(self, cluster: Any) -> str:
        """SCRIPT LOAD on every primary of an asyncio cluster; returns the SHA."""
        server = _server_for_cluster(cluster)
        for _ in range(2):
            source = self._choose_preload(server)
            try:
                sha = await cluster.execute_command("SCRIPT LOAD", source)
            except ResponseError as e:
                if self._downgrade(server, "SCRIPT LOAD", source, e):
                    continue
                raise self._error(e) from e
            self._learned(server, "SCRIPT LOAD", source)
            return str(sha.decode() if isinstance(sha, bytes) else sha)
        raise RuntimeError("unreachable: the second round uses the legacy source")

    def _learned(self, server: _Server, command: str, source: str) -> None:
        """A command/source that only Redis 7+ accepts has just worked."""
        if command == "EVALSHA_RO" or (self.has_shebang and source is self.source):
            server.modern = True

    def _downgrade(self, server: _Server, command: str, source: str, error: BaseException) -> bool:
        """True (and the server marked pre-7) if ``error`` says it does not speak Redis 7."""
        if (command == "EVALSHA_RO" and _is_unknown_command(error)) or (
            self.has_shebang and source is self.source and _is_shebang_error(error)
        ):
            server.modern = False
            return True
        return False

    def _error(self, error: BaseException) -> ScriptError:
        """Turn a server error into the matching :class:`ScriptError`."""
        if isinstance(error, ScriptError):
            return error
        text = _message(error)
        status = getattr(error, "status_code", None)
        m = _LINE_RE.search(text)
        line = int(m.group(1)) if m else None
        source_line = None
        if line is not None and 1 <= line <= len(self._lines):
            source_line = self._lines[line - 1].strip() or None
        cls: type[ScriptError]
        if isinstance(error, RedisNoScriptError):
            cls = NoScriptError
        elif status == "BUSY" or text.startswith("BUSY"):
            cls = ScriptBusyError
        elif isinstance(error, ClusterCrossSlotError) or text.startswith("CROSSSLOT"):
            cls = CrossSlotError
        else:
            cls = ScriptError
        where = f"script {self.name!r}"
        if line is not None:
            where += f" line {line}"
            if source_line:
                where += f" ({source_line})"
        return cls(
            f"{where}: {text}",
            script_name=self.name,
            sha=self.sha,
            line=line,
            source_line=source_line,
            server_message=text,
            status_code=status,
        )

    def _gave_up(self, last: BaseException | None) -> ScriptError:
        return NoScriptError(
            f"script {self.name!r}: still NOSCRIPT after {_RECOVERY_ATTEMPTS} SCRIPT LOAD "
            f"attempts ({_message(last) if last else 'no reply'})",
            script_name=self.name,
            sha=self.sha,
            server_message=_message(last) if last else "",
            status_code="NOSCRIPT",
        )


# --------------------------------------------------------------------------------------------
# Direct calls: redis.Redis (and a WATCHing pipeline), redis.asyncio.Redis
# --------------------------------------------------------------------------------------------


def _direct_sync(script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    if script._plain:
        try:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisNoScriptError:
            pass
        except ResponseError as e:
            raise script._error(e) from e
        server = _server_for_client(client)
        server.loaded.discard(script.sha)
        return _recover_sync(script, client, keys, args, server)
    server = _server_for_client(client)
    command, sha, source = script._choose(server)
    try:
        reply = client.execute_command(command, sha, len(keys), *keys, *args)
    except RedisNoScriptError:
        server.loaded.discard(sha)
    except ResponseError as e:
        if not script._downgrade(server, command, source, e):
            raise script._error(e) from e
    else:
        script._learned(server, command, source)
        return reply
    return _recover_sync(script, client, keys, args, server)


def _recover_sync(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...], server: _Server
) -> Any:
    """SCRIPT LOAD + EVALSHA in one MULTI/EXEC on the client's server."""
    last: BaseException | None = None
    for _ in range(_RECOVERY_ATTEMPTS):
        command, sha, source = script._choose(server)
        pipe = client.pipeline(transaction=True)
        try:
            pipe.execute_command("SCRIPT LOAD", source)
            pipe.execute_command(command, sha, len(keys), *keys, *args)
            loaded, reply = Pipeline.execute(pipe, raise_on_error=False)
        except ResponseError as e:  # EXECABORT: a command was refused when queued
            if script._downgrade(server, command, source, e):
                continue
            raise script._error(e) from e
        finally:
            pipe.reset()
        outcome = _after_recovery(script, server, command, sha, source, loaded, reply)
        if outcome is _RETRY:
            last = reply if isinstance(reply, BaseException) else loaded
            continue
        return outcome
    raise script._gave_up(last)


_RETRY = object()


def _after_recovery(
    script: Script, server: _Server, command: str, sha: str, source: str, loaded: Any, reply: Any
) -> Any:
    """Interpret the [SCRIPT LOAD, EVALSHA] replies of a recovery round."""
    if isinstance(loaded, ResponseError):
        if script._downgrade(server, command, source, loaded):
            return _RETRY
        raise script._error(loaded) from loaded
    server.loaded.add(sha)
    if isinstance(reply, ResponseError):
        if isinstance(reply, RedisNoScriptError):
            server.loaded.discard(sha)
            return _RETRY
        if script._downgrade(server, command, source, reply):
            return _RETRY
        raise script._error(reply) from reply
    script._learned(server, command, source)
    return reply


async def _direct_async(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    server = _server_for_client(client)
    command, sha, source = script._choose(server)
    try:
        reply = await client.execute_command(command, sha, len(keys), *keys, *args)
    except RedisNoScriptError:
        server.loaded.discard(sha)
    except ResponseError as e:
        if not script._downgrade(server, command, source, e):
            raise script._error(e) from e
    else:
        script._learned(server, command, source)
        return reply
    return await _recover_async(script, client, keys, args, server)


async def _recover_async(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...], server: _Server
) -> Any:
    last: BaseException | None = None
    for _ in range(_RECOVERY_ATTEMPTS):
        command, sha, source = script._choose(server)
        pipe = client.pipeline(transaction=True)
        try:
            pipe.execute_command("SCRIPT LOAD", source)
            pipe.execute_command(command, sha, len(keys), *keys, *args)
            loaded, reply = await AsyncPipeline.execute(pipe, raise_on_error=False)
        except ResponseError as e:
            if script._downgrade(server, command, source, e):
                continue
            raise script._error(e) from e
        finally:
            await pipe.reset()
        outcome = _after_recovery(script, server, command, sha, source, loaded, reply)
        if outcome is _RETRY:
            last = reply if isinstance(reply, BaseException) else loaded
            continue
        return outcome
    raise script._gave_up(last)


def _direct_async_entry(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    return _direct_async(script, client, keys, args)


# --------------------------------------------------------------------------------------------
# Cluster: RedisCluster and redis.asyncio RedisCluster
# --------------------------------------------------------------------------------------------


def _cluster_route(cluster: Any, command: str, keys: tuple[Any, ...]) -> dict[str, Any]:
    # redis-py routes EVALSHA by its keys without a round trip; EVALSHA_RO it would route
    # with COMMAND GETKEYS (a round trip), so fairpool picks the node itself.
    if command != "EVALSHA_RO":
        return {}
    node = cluster.get_node_from_key(keys[0]) if keys else cluster.get_random_node()
    return {"target_nodes": node}


def _cluster_load_route(cluster: Any, keys: tuple[Any, ...]) -> dict[str, Any]:
    # The server that answered owns the keys' slot; without keys the script ran on a random
    # node, so load it on every primary (redis-py's default for SCRIPT LOAD).
    return {"target_nodes": cluster.get_node_from_key(keys[0])} if keys else {}


def _cluster_sync(
    script: Script, cluster: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    check_slot(keys, encoder=cluster.get_encoder(), script_name=script.name)
    server = _server_for_cluster(cluster)
    last: BaseException | None = None
    for attempt in range(_RECOVERY_ATTEMPTS + 1):
        command, sha, source = script._choose(server)
        if attempt:
            try:
                cluster.execute_command("SCRIPT LOAD", source, **_cluster_load_route(cluster, keys))
            except ResponseError as e:
                if script._downgrade(server, command, source, e):
                    continue
                raise script._error(e) from e
        try:
            reply = cluster.execute_command(
                command, sha, len(keys), *keys, *args, **_cluster_route(cluster, command, keys)
            )
        except RedisNoScriptError as e:
            last = e
            continue
        except ResponseError as e:
            if script._downgrade(server, command, source, e):
                continue
            raise script._error(e) from e
        script._learned(server, command, source)
        return reply
    raise script._gave_up(last)


async def _cluster_async(
    script: Script, cluster: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    server = _server_for_cluster(cluster)
    last: BaseException | None = None
    for attempt in range(_RECOVERY_ATTEMPTS + 1):
        command, sha, source = script._choose(server)
        if attempt:
            try:
                await cluster.execute_command(
                    "SCRIPT LOAD", source, **_cluster_load_route(cluster, keys)
                )
            except ResponseError as e:
                if script._downgrade(server, command, source, e):
                    continue
                raise script._error(e) from e
        try:
            reply = await cluster.execute_command(
                command, sha, len(keys), *keys, *args, **_cluster_route(cluster, command, keys)
            )
        except RedisNoScriptError as e:
            last = e
            continue
        except ResponseError as e:
            if script._downgrade(server, command, source, e):
                continue
            raise script._error(e) from e
        script._learned(server, command, source)
        return reply
    raise script._gave_up(last)


def _cluster_async_entry(
    script: Script, cluster: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    # The slot check runs now, before an awaitable even exists.
    check_slot(keys, encoder=cluster.get_encoder(), script_name=script.name)
    return _cluster_async(script, cluster, keys, args)


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------

_STATE = "_fairpool_scripts"


class _Queued:
    """What fairpool queued in one pipeline batch."""

    __slots__ = ("evals", "loading", "loads", "server", "stack")

    def __init__(self, stack: list[Any], server: _Server) -> None:
        self.stack = stack  # the pipeline's command_stack this state belongs to
        self.server = server
        self.loads: dict[int, str] = {}  # stack index of an injected SCRIPT LOAD -> sha
        self.evals: dict[int, tuple[Script, tuple[Any, ...], tuple[Any, ...], str, str, str]] = {}
        self.loading: set[str] = set()  # shas with a SCRIPT LOAD queued in this batch


def _queued_state(pipe: Any) -> _Queued:
    state: _Queued | None = pipe.__dict__.get(_STATE)
    if state is None or state.stack is not pipe.command_stack:
        state = _Queued(pipe.command_stack, _server_for_pool(pipe.connection_pool))
        pipe.__dict__[_STATE] = state
    return state


def _take_state(pipe: Any) -> _Queued | None:
    state: _Queued | None = pipe.__dict__.pop(_STATE, None)
    if state is None or state.stack is not pipe.command_stack or not state.evals:
        return None
    return state


def _pipeline(script: Script, pipe: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    is_async = isinstance(pipe, AsyncPipeline)
    if pipe.watching and not pipe.explicit_transaction:
        # After WATCH and before MULTI, a pipeline runs commands immediately.
        if is_async:
            return _direct_async(script, pipe, keys, args)
        return _direct_sync(script, pipe, keys, args)
    transaction = bool(pipe.is_transaction if is_async else pipe.transaction)
    transaction = transaction or bool(pipe.explicit_transaction)
    state = _queued_state(pipe)
    server = state.server
    command, sha, source = script._choose_queued(server)
    stack = pipe.command_stack
    # In a transaction the script is always loaded first: if the cache was flushed since
    # fairpool last saw it, a NOSCRIPT inside EXEC could not be retried atomically.
    if sha not in state.loading and (transaction or sha not in server.loaded):
        pipe.pipeline_execute_command("SCRIPT LOAD", source)
        state.loads[len(stack) - 1] = sha
        state.loading.add(sha)
    pipe.pipeline_execute_command(command, sha, len(keys), *keys, *args)
    state.evals[len(stack) - 1] = (script, keys, args, command, sha, source)
    if "execute" not in pipe.__dict__:
        pipe.__dict__["execute"] = _Execute(pipe, is_async)
    return pipe


class _Execute:
    """``pipe.execute`` once a script was queued on ``pipe``: :func:`execute` / :func:`aexecute`.

    It holds the pipeline (``script(r.pipeline(), ...).execute()`` must work); the reference
    cycle this makes is undone by :func:`execute`, which removes the wrapper.
    """

    __slots__ = ("_async", "_pipe")

    def __init__(self, pipe: Any, is_async: bool) -> None:
        self._pipe = pipe
        self._async = is_async

    def __call__(self, raise_on_error: bool = True) -> Any:
        if self._async:
            return aexecute(self._pipe, raise_on_error)
        return execute(self._pipe, raise_on_error)


def _uninstall(pipe: Any) -> None:
    if isinstance(pipe.__dict__.get("execute"), _Execute):
        del pipe.__dict__["execute"]


def _sort_results(
    pipe: Any, state: _Queued, stack: list[Any], results: list[Any]
) -> tuple[list[Any], list[tuple[int, Script, tuple[Any, ...], tuple[Any, ...]]]]:
    """Drop injected replies; return (results, [(index, script, keys, args) to recover])."""
    server = state.server
    out: list[Any] = []
    redo: list[tuple[int, Script, tuple[Any, ...], tuple[Any, ...]]] = []
    for i, reply in enumerate(results):
        sha_loaded = state.loads.get(i)
        if sha_loaded is not None:
            if not isinstance(reply, BaseException):
                server.loaded.add(sha_loaded)
            continue
        entry = state.evals.get(i)
        if entry is not None:
            script, keys, args, command, sha, source = entry
            if isinstance(reply, ResponseError):
                if isinstance(reply, RedisNoScriptError) or script._downgrade(
                    server, command, source, reply
                ):
                    server.loaded.discard(sha)
                    redo.append((len(out), script, keys, args))
                else:
                    reply = script._error(reply)
            else:
                server.loaded.add(sha)
                script._learned(server, command, source)
        out.append(reply)
    return out, redo


def _raise_first(pipe: Any, state: _Queued, stack: list[Any], out: list[Any]) -> None:
    user_indices = [i for i in range(len(stack)) if i not in state.loads]
    for n, reply in enumerate(out):
        if isinstance(reply, ResponseError):
            if not isinstance(reply, ScriptError):
                pipe.annotate_exception(reply, n + 1, stack[user_indices[n]][0])
            raise reply


def execute(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
    """Execute a pipeline that :class:`Script` calls were queued on; replies in order.

    ``pipe.execute()`` calls this by itself once a :class:`Script` ran on ``pipe``; call it
    directly to be explicit. Compared with ``Pipeline.execute`` it: drops the replies of the
    ``SCRIPT LOAD`` s fairpool queued; recovers a ``NOSCRIPT`` (the script cache was flushed, or
    the server restarted, since fairpool last loaded the script) by loading the script and
    running that call again right after the pipeline, its reply put back in its place; and
    turns script failures into :class:`ScriptError` s. With ``raise_on_error`` (the default)
    the first error is raised, like redis-py does; otherwise errors are left in the list.

    A recovered call runs after the rest of the pipeline: without a transaction the pipeline
    was never atomic, so that is a reordering only a concurrent reader could see. Transactions
    never need it: the script is always loaded inside the same MULTI block.
    """
    _uninstall(pipe)
    state = _take_state(pipe)
    if state is None:
        return Pipeline.execute(pipe, raise_on_error)
    stack = pipe.command_stack
    results = Pipeline.execute(pipe, raise_on_error=False)
    out, redo = _sort_results(pipe, state, stack, results)
    for index, script, keys, args in redo:
        try:
            out[index] = _recover_sync(script, pipe, keys, args, state.server)
        except ScriptError as e:
            out[index] = e
    if raise_on_error:
        _raise_first(pipe, state, stack, out)
    return out


async def aexecute(pipe: AsyncPipeline, raise_on_error: bool = True) -> list[Any]:
    """The ``redis.asyncio`` pipeline version of :func:`execute`."""
    _uninstall(pipe)
    state = _take_state(pipe)
    if state is None:
        return await AsyncPipeline.execute(pipe, raise_on_error)
    stack = pipe.command_stack
    results = await AsyncPipeline.execute(pipe, raise_on_error=False)
    out, redo = _sort_results(pipe, state, stack, results)
    for index, script, keys, args in redo:
        try:
            out[index] = await _recover_async(script, pipe, keys, args, state.server)
        except ScriptError as e:
            out[index] = e
    if raise_on_error:
        _raise_first(pipe, state, stack, out)
    return out


def _refuse_cluster_pipeline(
    script: Script, pipe: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    raise TypeError(
        f"script {script.name!r}: redis-py cluster pipelines cannot run scripts; call the "
        "script on the RedisCluster itself"
    )


def _resolve_handler(tp: type) -> _Handler:
    handler: _Handler
    if issubclass(tp, (ClusterPipeline, AsyncClusterPipeline)):
        handler = _refuse_cluster_pipeline
    elif issubclass(tp, RedisCluster):
        handler = _cluster_sync
    elif issubclass(tp, AsyncRedisCluster):
        handler = _cluster_async_entry
    elif issubclass(tp, (Pipeline, AsyncPipeline)):
        handler = _pipeline
    elif issubclass(tp, redis.asyncio.Redis):
        handler = _direct_async_entry
    elif issubclass(tp, redis.Redis):
        handler = _direct_sync
    else:
        raise TypeError(
            f"cannot run a script on {tp.__name__}: expected a redis.Redis, Pipeline, "
            "RedisCluster or redis.asyncio client"
        )
    _handlers[tp] = handler
    return handler


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


class _LoadPlan(NamedTuple):
    scripts: list[Script]
    sources: list[str]
    commands: list[tuple[Any, ...]]


class ScriptRegistry:
    """Scripts registered once by name, to preload on a server or on every new connection.

    >>> registry = ScriptRegistry()
    >>> limiter = registry.register("return redis.call('INCR', KEYS[1])", name="incr")
    >>> registry.preload(client)                  # SCRIPT LOAD all, one round trip
    >>> pool = fairpool.ConnectionPool(..., on_connect=registry.on_connect)  # every connection

    Loading is only an optimisation: scripts recover from ``NOSCRIPT`` by themselves.
    """

    def __init__(self, scripts: Iterable[Script] = ()) -> None:
        """Start with ``scripts`` registered."""
        self._scripts: dict[str, Script] = {}
        self._lock = threading.Lock()
        for script in scripts:
            self.register(script)

    def register(
        self,
        source: str | bytes | Script,
        *,
        name: str | None = None,
        readonly: bool | None = None,
    ) -> Script:
        """Register a script (a :class:`Script`, or a source to build one) and return it.

        Registering the same script under the same name again returns the registered one.

        Raises:
            ValueError: another script is registered under that name.
        """
        if isinstance(source, Script):
            if name is not None or readonly is not None:
                raise TypeError("name and readonly apply to a source, not to a Script")
            script = source
        else:
            script = Script(source, name=name, readonly=readonly)
        with self._lock:
            existing = self._scripts.get(script.name)
            if existing is not None:
                if existing.sha != script.sha or existing.readonly != script.readonly:
                    raise ValueError(f"another script is registered as {script.name!r}")
                return existing
            self._scripts[script.name] = script
        return script

    def __getitem__(self, name: str) -> Script:
        """The script registered as ``name``."""
        return self._scripts[name]

    def __contains__(self, item: object) -> bool:
        """True for a registered name or :class:`Script`."""
        if isinstance(item, Script):
            return self._scripts.get(item.name) == item
        return item in self._scripts

    def __iter__(self) -> Iterator[Script]:
        """The registered scripts, in registration order."""
        return iter(list(self._scripts.values()))

    def __len__(self) -> int:
        """How many scripts are registered."""
        return len(self._scripts)

    def __repr__(self) -> str:
        """``<ScriptRegistry ['a', 'b']>``."""
        return f"<ScriptRegistry {list(self._scripts)}>"

    # -- loading -----------------------------------------------------------------------------

    def _load_commands(self, server: _Server) -> _LoadPlan:
        """What to send: [INFO server]? + one SCRIPT LOAD per script."""
        scripts = list(self)
        sources = [s._choose_preload(server) for s in scripts]
        commands: list[tuple[Any, ...]] = []
        if any(not s._plain for s in scripts) and server.modern is None:
            commands.append(("INFO", "server"))
        commands += [("SCRIPT", "LOAD", source) for source in sources]
        return _LoadPlan(scripts, sources, commands)

    def _digest(self, server: _Server, plan: _LoadPlan, replies: list[Any]) -> list[str] | None:
        """SHAs loaded, from the replies to a :class:`_LoadPlan`; None: send again."""
        if plan.commands and plan.commands[0][0] == "INFO":
            _learn_generation(server, replies[0])
            replies = replies[1:]
        shas: list[str] = []
        retry = False
        for script, source, reply in zip(plan.scripts, plan.sources, replies, strict=False):
            if isinstance(reply, ResponseError):
                if script._downgrade(server, "SCRIPT LOAD", source, reply):
                    retry = True
                    continue
                raise script._error(reply) from reply
            sha = reply.decode() if isinstance(reply, bytes) else str(reply)
            server.loaded.add(sha)
            script._learned(server, "SCRIPT LOAD", source)
            shas.append(sha)
        return None if retry else shas

    def preload(self, client: Any) -> Any:
        """``SCRIPT LOAD`` every registered script on ``client``'s server(s).

        ``client`` is a ``redis.Redis`` (one round trip), a ``RedisCluster`` (every primary) or
        a ``redis.asyncio`` client (returns an awaitable). Returns the list of loaded SHAs.
        Also marks them loaded on that server, so pipelines skip their ``SCRIPT LOAD``.

        Raises:
            ScriptError: a script does not compile.
        """
        if isinstance(client, (AsyncRedisCluster, redis.asyncio.Redis)):
            return self._preload_async(client)
        if isinstance(client, RedisCluster):
            return [script._load_cluster(client) for script in self]
        server = _server_for_client(client)
        for _ in range(2):
            plan = self._load_commands(server)
            pipe = client.pipeline(transaction=False)
            try:
                for command in plan.commands:
                    pipe.execute_command(*command)
                replies = Pipeline.execute(pipe, raise_on_error=False)
            finally:
                pipe.reset()
            shas = self._digest(server, plan, replies)
            if shas is not None:
                return shas
        raise RuntimeError("unreachable: the second round always uses the right sources")

    async def _preload_async(self, client: Any) -> list[str]:
        if isinstance(client, AsyncRedisCluster):
            return [await script._load_cluster_async(client) for script in self]
        server = _server_for_client(client)
        for _ in range(2):
            plan = self._load_commands(server)
            pipe = client.pipeline(transaction=False)
            try:
                for command in plan.commands:
                    pipe.execute_command(*command)
                replies = await AsyncPipeline.execute(pipe, raise_on_error=False)
            finally:
                await pipe.reset()
            shas = self._digest(server, plan, replies)
            if shas is not None:
                return shas
        raise RuntimeError("unreachable: the second round always uses the right sources")

    def on_connect(self, connection: Any) -> None:
        """Load every registered script on a freshly connected redis-py ``Connection``.

        Meant as a pool's ``on_connect`` callback: one round trip (with ``INFO server`` in the
        same write when a script needs to know whether the server is Redis 7+). Marks the
        scripts as loaded on that server, so pipelines skip their ``SCRIPT LOAD``.

        Raises:
            ScriptError: a script does not compile (so a broken script fails loudly).
        """
        if not self._scripts:
            return
        server = _server_at(_address_of_connection(connection))
        for _ in range(2):
            plan = self._load_commands(server)
            connection.send_packed_command(connection.pack_commands(plan.commands))
            replies: list[Any] = []
            for _command in plan.commands:
                try:
                    replies.append(connection.read_response())
                except ResponseError as e:
                    replies.append(e)
            if self._digest(server, plan, replies) is not None:
                return

    async def async_on_connect(self, connection: Any) -> None:
        """The ``redis.asyncio`` ``Connection`` version of :meth:`on_connect`."""
        if not self._scripts:
            return
        server = _server_at(_address_of_connection(connection))
        for _ in range(2):
            plan = self._load_commands(server)
            await connection.send_packed_command(connection.pack_commands(plan.commands))
            replies: list[Any] = []
            for _command in plan.commands:
                try:
                    replies.append(await connection.read_response())
                except ResponseError as e:
                    replies.append(e)
            if self._digest(server, plan, replies) is not None:
                return


def _learn_generation(server: _Server, info: Any) -> None:
    """Set ``server.modern`` from an ``INFO server`` reply (a dict or the raw text)."""
    version: str | None = None
    if isinstance(info, dict):
        version = str(info.get("redis_version", "")) or None
    elif isinstance(info, (bytes, str)):
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
        m = re.search(r"^redis_version:(\S+)", text, re.M)
        version = m.group(1) if m else None
    if version:
        with contextlib.suppress(ValueError):
            server.modern = int(version.split(".")[0]) >= 7
