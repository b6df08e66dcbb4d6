"""The recovery loops of fairpool.scripting.steps, driven without a server.

Each loop yields operations and is sent their outcomes; these tests play the server's part, so
every branch (NOSCRIPT, EXECABORT, a pre-7 server, giving up) is reached on purpose, and the sync
and asyncio drivers are checked to give the same answers for the same replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import NoScriptError as RedisNoScriptError
from redis.exceptions import ResponseError

from fairpool.scripting import NoScriptError, Script, ScriptError
from fairpool.scripting.cache import ServerInfo
from fairpool.scripting.drivers import AsyncIO, SyncIO, arun, run
from fairpool.scripting.errors import RECOVERY_ATTEMPTS
from fairpool.scripting.steps import Batch, Call, Op, Steps, direct, load_on_cluster, on_cluster

INCR = "return redis.call('INCR', KEYS[1])"
GET_RO = "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])"
NOSCRIPT = RedisNoScriptError("No matching script. Please use EVAL.")


class FakeCluster:
    """Only picks nodes, as the cluster loop asks it to."""

    def get_node_from_key(self, key: Any) -> str:
        return f"node-of-{key}"

    def get_random_node(self) -> str:
        return "random-node"


def play(
    make: Callable[[ServerInfo], Steps],
    answer: Callable[[Op], Any],
    known: ServerInfo | None = None,
) -> tuple[Any, list[Op], ServerInfo]:
    """Drive ``make(server)`` with the sync and the asyncio driver, each on a fresh copy of what
    is ``known`` about the server; both must agree. Returns the result (or the ScriptError
    raised), the operations sent and what the server info became."""
    outcomes = []
    for driver in ("sync", "async"):
        server = ServerInfo()
        if known is not None:
            server.loaded, server.modern = set(known.loaded), known.modern
        sent: list[Op] = []

        def perform(op: Op) -> Any:
            sent.append(op)  # noqa: B023 - used at once
            return answer(op)

        async def aperform(op: Op) -> Any:
            return perform(op)

        try:
            if driver == "sync":
                result: Any = run(make(server), perform)
            else:
                result = asyncio.run(arun(make(server), aperform))
        except ScriptError as e:
            result = e
        outcomes.append((result, sent, server))
    (r1, s1, v1), (r2, s2, v2) = outcomes
    assert s1 == s2 and (v1.loaded, v1.modern) == (v2.loaded, v2.modern)
    assert type(r1) is type(r2) and (isinstance(r1, Exception) or r1 == r2)
    return r1, s1, v1


def test_direct_success_is_one_call() -> None:
    s = Script(INCR)
    result, sent, _server = play(lambda server: direct(s, server, ("k",), ()), lambda op: 7)
    assert result == 7
    assert sent == [Call(("EVALSHA", s.sha, 1, "k"), {})]


def test_noscript_is_recovered_in_one_transaction() -> None:
    s, known = Script(INCR), ServerInfo()
    known.loaded.add(s.sha)

    def answer(op: Op) -> Any:
        return NOSCRIPT if isinstance(op, Call) else [s.sha.encode(), 3]

    result, sent, server = play(lambda server: direct(s, server, ("k",), ("a",)), answer, known)
    assert result == 3
    assert sent[1] == Batch((("SCRIPT", "LOAD", s.source), ("EVALSHA", s.sha, 1, "k", "a")), True)
    assert s.sha in server.loaded


def test_a_fast_path_reply_is_not_sent_again() -> None:
    s = Script(INCR)
    result, sent, _server = play(
        lambda server: direct(s, server, (), (), NOSCRIPT), lambda op: [b"sha", 1]
    )
    assert result == 1 and len(sent) == 1 and isinstance(sent[0], Batch)


def test_recovery_gives_up_after_the_attempts() -> None:
    s = Script(INCR, name="flaky")

    def answer(op: Op) -> Any:
        return NOSCRIPT if isinstance(op, Call) else [s.sha.encode(), NOSCRIPT]

    result, sent, server = play(lambda server: direct(s, server, ("k",), ()), answer)
    assert isinstance(result, NoScriptError) and result.script_name == "flaky"
    assert len(sent) == 1 + RECOVERY_ATTEMPTS
    assert s.sha not in server.loaded


def test_other_errors_are_raised_typed_without_retry() -> None:
    s = Script("local x = 1\nerror('boom')", name="thrower")
    boom = ResponseError("ERR user_script:2: boom")
    result, sent, _server = play(lambda server: direct(s, server, (), ()), lambda op: boom)
    assert isinstance(result, ScriptError) and result.line == 2
    assert len(sent) == 1


def test_a_pre7_server_gets_the_legacy_form() -> None:
    s = Script(GET_RO)
    unknown = ResponseError("ERR unknown command 'EVALSHA_RO'")
    near = ResponseError("Error compiling script: user_script:1: unexpected symbol near '#'")

    def answer(op: Op) -> Any:
        if isinstance(op, Call):
            return unknown
        (_, _, source), _ = op.commands
        return [near, NOSCRIPT] if source == s.source else [s.legacy_sha.encode(), b"v"]

    result, sent, server = play(lambda server: direct(s, server, ("k",), ()), answer)
    assert result == b"v" and server.modern is False
    assert sent[0].args[0] == "EVALSHA_RO"
    assert isinstance(sent[-1], Batch) and sent[-1].commands[1][:2] == ("EVALSHA", s.legacy_sha)


def test_execabort_is_a_typed_error() -> None:
    s = Script(INCR)

    def answer(op: Op) -> Any:
        if isinstance(op, Call):
            return NOSCRIPT
        return ResponseError("EXECABORT Transaction discarded because of previous errors.")

    result, _, _ = play(lambda server: direct(s, server, (), ()), answer)
    assert isinstance(result, ScriptError) and "EXECABORT" in result.server_message


def test_cluster_loads_on_the_keys_node_then_retries() -> None:
    s, known, cluster = Script(GET_RO), ServerInfo(), FakeCluster()
    known.modern = True

    evals: list[Op] = []  # both drivers: NOSCRIPT on every first EVALSHA_RO, then the reply

    def answer(op: Op) -> Any:
        assert isinstance(op, Call)
        if op.args[0] == "SCRIPT LOAD":
            return s.sha.encode()
        evals.append(op)
        return NOSCRIPT if len(evals) % 2 else b"v"

    result, sent, _server = play(
        lambda server: on_cluster(s, cluster, server, ("k",), ()), answer, known
    )
    assert result == b"v"
    assert [op.args[0] for op in sent if isinstance(op, Call)] == [
        "EVALSHA_RO",
        "SCRIPT LOAD",
        "EVALSHA_RO",
    ]
    assert all(op.route == {"target_nodes": "node-of-k"} for op in sent if isinstance(op, Call))


def test_cluster_load_without_keys_goes_to_every_primary() -> None:
    s = Script(INCR)
    result, sent, _server = play(
        lambda server: load_on_cluster(s, server), lambda op: s.sha.encode()
    )
    assert result == s.sha and sent == [Call(("SCRIPT LOAD", s.source), {})]


@pytest.mark.parametrize("reply", [b"x", ResponseError("ERR boom")])
def test_the_performers_hand_errors_back_as_values(reply: Any) -> None:
    """A loop sees the server's error as the outcome of its operation, never as a raise."""

    class Target:
        def execute_command(self, *args: Any, **route: Any) -> Any:
            if isinstance(reply, Exception):
                raise reply
            return reply

    class AsyncTarget:
        async def execute_command(self, *args: Any, **route: Any) -> Any:
            return Target().execute_command(*args, **route)

    seen: list[Any] = []

    def steps() -> Steps:
        seen.append((yield Call(("PING",), {})))
        return "done"

    assert run(steps(), SyncIO(Target())) == "done"
    assert asyncio.run(arun(steps(), AsyncIO(AsyncTarget()))) == "done"
    assert seen == [reply, reply]
