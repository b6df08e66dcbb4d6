"""``ScriptRegistry``: scripts registered once by name, loaded on a client or on new connections.

Loading is one loop, :func:`_preload_steps` (``INFO server`` when a script needs to know the
server's generation, then one ``SCRIPT LOAD`` per script, in one round trip), driven on a client
or on a bare connection, sync or asyncio, by :mod:`fairpool.scripting.drivers`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from .cache import (
    ServerInfo,
    learn_generation,
    server_for_client,
    server_for_cluster,
    server_for_connection,
)
from .drivers import AsyncConnectionIO, AsyncIO, ConnectionIO, SyncIO, arun, run
from .script import Script
from .steps import Batch, Steps, load_on_cluster

__all__ = ["ScriptRegistry"]


class _LoadPlan(NamedTuple):
    scripts: list[Script]
    sources: list[str]
    commands: tuple[tuple[Any, ...], ...]


def _plan(scripts: list[Script], server: ServerInfo) -> _LoadPlan:
    """What to send: [INFO server]? + one SCRIPT LOAD per script."""
    sources = [s._choose_preload(server) for s in scripts]
    commands: list[tuple[Any, ...]] = []
    if any(not s._plain for s in scripts) and server.modern is None:
        commands.append(("INFO", "server"))
    commands += [("SCRIPT", "LOAD", source) for source in sources]
    return _LoadPlan(scripts, sources, tuple(commands))


def _digest(server: ServerInfo, plan: _LoadPlan, replies: list[Any]) -> list[str] | None:
    """SHAs loaded, from the replies to a :class:`_LoadPlan`; None: send again."""
    if plan.commands and plan.commands[0][0] == "INFO":
        learn_generation(server, replies[0])
        replies = replies[1:]
    shas: list[str] = []
    retry = False
    for script, source, reply in zip(plan.scripts, plan.sources, replies, strict=False):
        if isinstance(reply, ResponseError):
            script._retry_or_raise(server, "SCRIPT LOAD", source, reply)
            retry = True
            continue
        sha = reply.decode() if isinstance(reply, bytes) else str(reply)
        server.loaded.add(sha)
        script._learned(server, "SCRIPT LOAD", source)
        shas.append(sha)
    return None if retry else shas


def _preload_steps(scripts: list[Script], server: ServerInfo) -> Steps:
    """Load ``scripts`` on one server in one round trip (two if it turns out to be pre-7)."""
    for _ in range(2):
        plan = _plan(scripts, server)
        shas = _digest(server, plan, (yield Batch(plan.commands, False)))
        if shas is not None:
            return shas
    raise RuntimeError("unreachable: the second round always uses the right sources")


def _cluster_steps(scripts: list[Script], server: ServerInfo) -> Steps:
    """Load ``scripts`` on every primary of a cluster, one after the other."""
    shas: list[str] = []
    for script in scripts:
        shas.append((yield from load_on_cluster(script, server)))
    return shas


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
        """Register a script (a :class:`~fairpool.Script`, or a source to build one) and return it.

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
        """True for a registered name or :class:`~fairpool.Script`."""
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

    def preload(self, client: Any) -> Any:
        """``SCRIPT LOAD`` every registered script on ``client``'s server(s).

        ``client`` is a ``redis.Redis`` (one round trip), a ``RedisCluster`` (every primary) or
        a ``redis.asyncio`` client (returns an awaitable). Returns the list of loaded SHAs.
        Also marks them loaded on that server, so pipelines skip their ``SCRIPT LOAD``.

        Raises:
            ScriptError: a script does not compile.
        """
        scripts = list(self)
        if isinstance(client, (RedisCluster, AsyncRedisCluster)):
            loop = _cluster_steps(scripts, server_for_cluster(client))
        else:
            loop = _preload_steps(scripts, server_for_client(client))
        if isinstance(client, (AsyncRedisCluster, redis.asyncio.Redis)):
            return arun(loop, AsyncIO(client))
        return run(loop, SyncIO(client))

    def on_connect(self, connection: Any) -> None:
        """Load every registered script on a freshly connected redis-py ``Connection``.

        Meant as a pool's ``on_connect`` callback: one round trip (with ``INFO server`` in the
        same write when a script needs to know whether the server is Redis 7+). Marks the
        scripts as loaded on that server, so pipelines skip their ``SCRIPT LOAD``.

        Raises:
            ScriptError: a script does not compile (so a broken script fails loudly).
        """
        if self._scripts:
            loop = _preload_steps(list(self), server_for_connection(connection))
            run(loop, ConnectionIO(connection))

    async def async_on_connect(self, connection: Any) -> None:
        """The ``redis.asyncio`` ``Connection`` version of :meth:`on_connect`."""
        if self._scripts:
            loop = _preload_steps(list(self), server_for_connection(connection))
            await arun(loop, AsyncConnectionIO(connection))
