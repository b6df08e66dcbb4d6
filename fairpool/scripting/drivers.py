"""The thin drivers: perform what a recovery loop (:mod:`fairpool.scripting.steps`) yields.

:func:`run` and :func:`arun` step a loop to its end; :class:`SyncIO` / :class:`AsyncIO` perform its
operations on a redis-py client, pipeline or cluster, and :class:`ConnectionIO` /
:class:`AsyncConnectionIO` on a bare ``Connection`` (a pool's on-connect hook). Besides the
direct runners' first command (:mod:`fairpool.scripting.runner`), this is the only place where
the sync and asyncio sides differ; each operation is a few lines of redis-py calls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.exceptions import ResponseError

from .steps import Batch, Call, Op, Steps

__all__ = ["AsyncConnectionIO", "AsyncIO", "ConnectionIO", "SyncIO", "arun", "run"]


def run(steps: Steps, perform: Callable[[Any], Any]) -> Any:
    """Drive ``steps`` with the sync ``perform(op)``; return what they return."""
    try:
        op = next(steps)
        while True:
            op = steps.send(perform(op))
    except StopIteration as done:
        return done.value


async def arun(steps: Steps, perform: Callable[[Any], Awaitable[Any]]) -> Any:
    """Drive ``steps`` with the asyncio ``await perform(op)``; return what they return."""
    outcome = None
    while True:
        try:
            op = steps.send(outcome)
        except StopIteration as done:
            return done.value
        outcome = await perform(op)


class SyncIO:
    """Operations on a sync ``Redis``, ``Pipeline`` (flush: its own queue) or ``RedisCluster``."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    def __call__(self, op: Op) -> Any:
        """Perform ``op``; a ``ResponseError`` is returned, not raised."""
        try:
            if type(op) is Call:
                return self.target.execute_command(*op.args, **op.route)
            if type(op) is Batch:
                return self._batch(op)
            return Pipeline.execute(self.target, raise_on_error=False)
        except ResponseError as e:
            return e

    def _batch(self, op: Batch) -> Any:
        pipe = self.target.pipeline(transaction=op.transaction)
        try:
            for command in op.commands:
                pipe.execute_command(*command)
            return Pipeline.execute(pipe, raise_on_error=False)
        finally:
            pipe.reset()


class AsyncIO:
    """:class:`SyncIO` for ``redis.asyncio`` clients, pipelines and clusters."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    async def __call__(self, op: Op) -> Any:
        """Perform ``op``; a ``ResponseError`` is returned, not raised."""
        target = self.target
        try:
            if type(op) is Call:
                return await target.execute_command(*op.args, **op.route)
            if type(op) is not Batch:
                return await AsyncPipeline.execute(target, raise_on_error=False)
            pipe = target.pipeline(transaction=op.transaction)
            try:
                for command in op.commands:
                    pipe.execute_command(*command)
                return await AsyncPipeline.execute(pipe, raise_on_error=False)
            finally:
                await pipe.reset()
        except ResponseError as e:
            return e


class ConnectionIO:
    """Batches on a bare sync redis-py ``Connection``: one write, then one read per command."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    def __call__(self, op: Batch) -> list[Any]:
        """Send ``op.commands`` in one write and read every reply (errors in place)."""
        connection = self.target
        connection.send_packed_command(connection.pack_commands(op.commands))
        replies: list[Any] = []
        for _command in op.commands:
            try:
                replies.append(connection.read_response())
            except ResponseError as e:
                replies.append(e)
        return replies


class AsyncConnectionIO:
    """:class:`ConnectionIO` for a ``redis.asyncio`` ``Connection``."""

    __slots__ = ("target",)

    def __init__(self, target: Any) -> None:
        self.target = target

    async def __call__(self, op: Batch) -> list[Any]:
        """Send ``op.commands`` in one write and read every reply (errors in place)."""
        await self.target.send_packed_command(self.target.pack_commands(op.commands))
        replies: list[Any] = []
        while len(replies) < len(op.commands):
            try:
                replies.append(await self.target.read_response())
            except ResponseError as e:
                replies.append(e)
        return replies
