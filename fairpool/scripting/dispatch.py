"""Which runner serves which client type; :meth:`fairpool.Script.__call__` asks once per type."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster

from .pipeline import queue
from .runner import cluster_async, cluster_sync, direct_async, direct_sync
from .script import Handler, Script, handlers

__all__ = ["resolve_handler"]


def _refuse_cluster_pipeline(
    script: Script, pipe: Any, keys: tuple[Any, ...], args: tuple[Any, ...]
) -> Any:
    raise TypeError(
        f"script {script.name!r}: redis-py cluster pipelines cannot run scripts; call the "
        "script on the RedisCluster itself"
    )


def resolve_handler(tp: type) -> Handler:
    """The runner for clients of type ``tp``, remembered in ``fairpool.scripting.script.handlers``.

    Raises:
        TypeError: ``tp`` is not a redis-py client type scripts can run on.
    """
    handler: Handler
    if issubclass(tp, (ClusterPipeline, AsyncClusterPipeline)):
        handler = _refuse_cluster_pipeline
    elif issubclass(tp, RedisCluster):
        handler = cluster_sync
    elif issubclass(tp, AsyncRedisCluster):
        handler = cluster_async
    elif issubclass(tp, (Pipeline, AsyncPipeline)):
        handler = queue
    elif issubclass(tp, redis.asyncio.Redis):
        handler = direct_async
    elif issubclass(tp, redis.Redis):
        handler = direct_sync
    else:
        raise TypeError(
            f"cannot run a script on {tp.__name__}: expected a redis.Redis, Pipeline, "
            "RedisCluster or redis.asyncio client"
        )
    handlers[tp] = handler
    return handler
