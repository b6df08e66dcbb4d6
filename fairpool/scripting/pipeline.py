"""Scripts in pipelines: queue ``EVALSHA`` (``SCRIPT LOAD`` where needed), then :func:`execute`.

Queuing records what fairpool added to the pipeline (:class:`_Queued`) and routes the pipeline's
``execute`` through :func:`execute` / :func:`aexecute`. Both drive one loop, :func:`_execute_steps`:
flush the pipeline, drop the injected replies, recover each ``NOSCRIPT`` with
:func:`fairpool.scripting.steps.recover` and put its reply back in its place.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline
from redis.exceptions import NoScriptError as RedisNoScriptError
from redis.exceptions import ResponseError

from .cache import ServerInfo, server_for_pool
from .drivers import AsyncIO, SyncIO, arun, run
from .errors import ScriptError
from .runner import direct_async, direct_sync
from .script import Script
from .steps import FLUSH, Steps, recover

__all__ = ["aexecute", "execute", "queue"]

_STATE = "_fairpool_scripts"

_Entry = tuple[Script, tuple[Any, ...], tuple[Any, ...], str, str, str]
"""A queued call: (script, keys, args, command, sha, source)."""


class _Queued:
    """What fairpool queued in one pipeline batch."""

    __slots__ = ("evals", "loading", "loads", "server", "stack")

    def __init__(self, stack: list[Any], server: ServerInfo) -> None:
        self.stack = stack  # the pipeline's command_stack this state belongs to
        self.server = server
        self.loads: dict[int, str] = {}  # stack index of an injected SCRIPT LOAD -> sha
        self.evals: dict[int, _Entry] = {}
        self.loading: set[str] = set()  # shas with a SCRIPT LOAD queued in this batch


def _queued_state(pipe: Any) -> _Queued:
    state: _Queued | None = pipe.__dict__.get(_STATE)
    if state is None or state.stack is not pipe.command_stack:
        state = _Queued(pipe.command_stack, server_for_pool(pipe.connection_pool))
        pipe.__dict__[_STATE] = state
    return state


def _take_state(pipe: Any) -> _Queued | None:
    state: _Queued | None = pipe.__dict__.pop(_STATE, None)
    if state is None or state.stack is not pipe.command_stack or not state.evals:
        return None
    return state


def queue(script: Script, pipe: Any, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
    """Queue ``script`` on a ``Pipeline`` (sync or asyncio); returns the pipeline."""
    is_async = isinstance(pipe, AsyncPipeline)
    if pipe.watching and not pipe.explicit_transaction:
        # After WATCH and before MULTI, a pipeline runs commands immediately.
        return (direct_async if is_async else direct_sync)(script, pipe, keys, args)
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
    state: _Queued, results: list[Any]
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


def _execute_steps(pipe: Any, state: _Queued, raise_on_error: bool) -> Steps:
    """Flush ``pipe``, sort its replies, recover each NOSCRIPT; returns the user's replies."""
    stack = pipe.command_stack
    results = yield FLUSH
    if isinstance(results, BaseException):  # the transaction was refused (EXECABORT)
        raise results
    out, redo = _sort_results(state, results)
    for index, script, keys, args in redo:
        try:
            out[index] = yield from recover(script, state.server, keys, args)
        except ScriptError as e:
            out[index] = e
    if raise_on_error:
        _raise_first(pipe, state, stack, out)
    return out


def execute(pipe: Pipeline, raise_on_error: bool = True) -> list[Any]:
    """Execute a pipeline that :class:`~fairpool.Script` calls were queued on; replies in order.

    ``pipe.execute()`` calls this by itself once a :class:`~fairpool.Script` ran on ``pipe``; call
    it directly to be explicit. Compared with ``Pipeline.execute`` it: drops the replies of the
    ``SCRIPT LOAD`` s fairpool queued; recovers a ``NOSCRIPT`` (the script cache was flushed, or
    the server restarted, since fairpool last loaded the script) by loading the script and
    running that call again right after the pipeline, its reply put back in its place; and
    turns script failures into :class:`~fairpool.ScriptError` s. With ``raise_on_error`` (the
    default) the first error is raised, like redis-py does; otherwise errors are left in the list.

    A recovered call runs after the rest of the pipeline: without a transaction the pipeline
    was never atomic, so that is a reordering only a concurrent reader could see. Transactions
    never need it: the script is always loaded inside the same MULTI block.
    """
    _uninstall(pipe)
    state = _take_state(pipe)
    if state is None:
        return Pipeline.execute(pipe, raise_on_error)
    result: list[Any] = run(_execute_steps(pipe, state, raise_on_error), SyncIO(pipe))
    return result


async def aexecute(pipe: AsyncPipeline, raise_on_error: bool = True) -> list[Any]:
    """The ``redis.asyncio`` pipeline version of :func:`execute`."""
    _uninstall(pipe)
    state = _take_state(pipe)
    if state is None:
        return await AsyncPipeline.execute(pipe, raise_on_error)
    result: list[Any] = await arun(_execute_steps(pipe, state, raise_on_error), AsyncIO(pipe))
    return result
