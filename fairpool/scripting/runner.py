"""The runners: a script call on a client, driven through one recovery loop for sync and asyncio.

Each runner picks the :class:`~fairpool.scripting.cache.ServerInfo`, builds the loop from
:mod:`fairpool.scripting.steps` and hands it to a driver. The sync runner of a plain script
sends its ``EVALSHA`` itself first — the hot path, with no generator — and enters the loop only
when the server did not answer with the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from redis.exceptions import ResponseError

from . import steps
from .cache import server_for_client, server_for_cluster
from .drivers import AsyncIO, SyncIO, arun, run
from .script import Script
from .slots import check_slot

__all__ = ["cluster_async", "cluster_sync", "direct_async", "direct_sync"]


def direct_sync(script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    """Run on a ``redis.Redis`` (or a pipeline after ``WATCH``, which runs commands at once)."""
    if script._plain:
        try:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as e:
            first = e
        loop = steps.direct(script, server_for_client(client), keys, args, first)
    else:
        loop = steps.direct(script, server_for_client(client), keys, args)
    return run(loop, SyncIO(client))


def direct_async(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Awaitable[Any]:
    """Run on a ``redis.asyncio.Redis``: an awaitable of the reply."""
    return arun(steps.direct(script, server_for_client(client), keys, args), AsyncIO(client))


def cluster_sync(script: Script, cluster: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    """Run on a ``RedisCluster``, after the client-side slot check."""
    check_slot(keys, encoder=cluster.get_encoder(), script_name=script.name)
    loop = steps.on_cluster(script, cluster, server_for_cluster(cluster), keys, args)
    return run(loop, SyncIO(cluster))


def cluster_async(
    script: Script, cluster: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Awaitable[Any]:
    """Run on an asyncio ``RedisCluster``; the slot check runs now, before an awaitable exists."""
    check_slot(keys, encoder=cluster.get_encoder(), script_name=script.name)
    loop = steps.on_cluster(script, cluster, server_for_cluster(cluster), keys, args)
    return arun(loop, AsyncIO(cluster))
