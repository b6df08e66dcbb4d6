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
(:meth:`ScriptRegistry.on_connect`). The rate limiters built on scripts are in
:mod:`fairpool.scripting.ratelimit`.

The modules, by concept (each imports only those above it):

* :mod:`~fairpool.scripting.errors` — the typed errors, the lint warning;
* :mod:`~fairpool.scripting.cache` — what fairpool knows about each server;
* :mod:`~fairpool.scripting.slots` — the cluster slot check;
* :mod:`~fairpool.scripting.lint` — the Lua linter;
* :mod:`~fairpool.scripting.script` — :class:`Script` (data and per-server choices, no I/O);
* :mod:`~fairpool.scripting.steps` — the recovery loops, once, as I/O-free generators;
* :mod:`~fairpool.scripting.drivers` — the sync and asyncio drivers that perform their I/O;
* :mod:`~fairpool.scripting.runner`, :mod:`~fairpool.scripting.pipeline`,
  :mod:`~fairpool.scripting.dispatch` — a call on a client, cluster or pipeline;
* :mod:`~fairpool.scripting.registry` — :class:`ScriptRegistry`;
* :mod:`~fairpool.scripting.ratelimit` — the limiters, with their Lua files in ``lua/``.
"""

from __future__ import annotations

from .cache import forget_servers
from .errors import (
    CrossSlotError,
    NoScriptError,
    ScriptBusyError,
    ScriptError,
    ScriptLintWarning,
)
from .lint import LINT_MAX_SOURCE_BYTES, lint
from .pipeline import aexecute, execute
from .registry import ScriptRegistry
from .script import Script
from .slots import check_slot

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
    "forget_servers",
    "lint",
]
