"""The Lua linter: heuristics on a script's text for what tends to hurt a Redis server.

:class:`fairpool.Script` runs :func:`lint` at construction and warns with
:class:`~fairpool.scripting.errors.ScriptLintWarning`. No Lua parser, no I/O; imports nothing from
the package.
"""

from __future__ import annotations

import re

__all__ = ["LINT_MAX_SOURCE_BYTES", "lint"]

LINT_MAX_SOURCE_BYTES = 4096
"""Scripts longer than this (in UTF-8 bytes) get a :class:`~fairpool.ScriptLintWarning`."""


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
