"""The runners: a script call on a client, driven through one recovery loop for sync and asyncio.

Each runner picks the :class:`~fairpool.scripting.cache.ServerInfo`, builds the loop from
:mod:`fairpool.scripting.steps` and hands it to a driver. The direct runners send the
first ``EVALSHA`` themselves — the hot path, with no generator — and enter the loop only when the
server answered with an error; the loop takes it from there (``first``).
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
    if script._plain:  # no choice to make: not even the server's info is needed
        try:
            return client.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        except ResponseError as e:
            loop = steps.direct(script, server_for_client(client), keys, args, e)
        return run(loop, SyncIO(client))
    server = server_for_client(client)
    command, sha, source = script._choose(server)
    try:
        reply = client.execute_command(command, sha, len(keys), *keys, *args)
    except ResponseError as e:
        return run(steps.direct(script, server, keys, args, e), SyncIO(client))
    script._learned(server, command, source)
    return reply


async def direct_async(
    script: Script, client: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    """Run on a ``redis.asyncio.Redis`` (a coroutine)."""
    server = server_for_client(client)
    command, sha, source = script._choose(server)
    try:
        reply = await client.execute_command(command, sha, len(keys), *keys, *args)
    except ResponseError as e:
        return await arun(steps.direct(script, server, keys, args, e), AsyncIO(client))
    script._learned(server, command, source)
    return reply


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
