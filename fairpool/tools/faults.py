"""Fault scenarios against real redis-servers, run the same way on fairpool's pools and on
redis-py's (the tests in ``tests/test_faults.py`` and the fault section of ``benchmarks/`` both use
them). Every scenario is bounded in time, sends traffic only to the loopback servers it is given,
and returns plain counts; what is good enough is decided by the caller.

* :func:`kill_storm` / :func:`kill_storm_async` — callers under load while another client
  ``CLIENT KILL TYPE normal``-s every connection at a fixed period: caller errors per killed
  connection (client retries off, so every dead connection handed out shows).
* :func:`cancel_storm` — asyncio tasks borrowing under ``asyncio.wait_for`` with 1-20 ms
  deadlines on a fresh blocking pool: commands completed, connections created.
* :func:`under_load` with :func:`restart` or :func:`stall` — callers under load while the
  server is restarted or stopped (``SIGSTOP``) for a while: caller errors, how long after the
  server came back every caller had succeeded again.
* :class:`FlakyProxy` — a TCP proxy on loopback that delays every chunk and resets connections;
  :func:`under_load` through it counts replies that reached the wrong caller (there must be none).
* :func:`endpoint_outage` — one of several ``endpoints`` stopped and started again: how long
  until it holds its share of the pool's connections.

Every caller sends ``ECHO <token>`` with a token of its own and checks the reply, so a reply
delivered to the wrong caller is counted (:attr:`Load.misrouted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "CancelStorm",
    "FlakyProxy",
    "KillStorm",
    "Load",
    "Outage",
    "cancel_storm",
    "endpoint_outage",
    "kill_storm",
    "kill_storm_async",
    "restart",
    "stall",
    "under_load",
]

_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass
class KillStorm:
    """The outcome of one kill storm."""

    commands: int
    """Commands that succeeded."""
    errors: int
    """Commands that failed (a connection error reached the caller)."""
    kills: int
    """Client connections the server killed (``CLIENT KILL``'s replies, summed)."""
    stale: int = 0
    """Of the errors, those on a connection the pool handed out although it could have known
    it was dead: sync, the server had closed it before the caller's borrow began (its local port
    was in the ``CLIENT LIST`` of a kill that had completed); asyncio, the event loop had already
    seen the end of its stream when it was handed out. The other errors hit commands in flight
    when the kill landed, which no pool can save."""

    @property
    def per_kill(self) -> float:
        """Caller errors per killed connection."""
        return self.errors / max(1, self.kills)


class _Kills:
    """``CLIENT KILL TYPE normal`` every ``period`` s, remembering which client ports each kill
    closed and when it had completed (see :attr:`KillStorm.stale`)."""

    def __init__(self) -> None:
        self.done: list[tuple[float, frozenset[int]]] = []
        self.count = 0

    def record(self, listing: Any, reply: Any) -> None:
        ports = frozenset(
            int(str(client["addr"]).rsplit(":", 1)[1]) for client in listing if "addr" in client
        )
        self.done.append((time.monotonic(), ports))
        self.count += int(reply)

    def stale(self, port: int, since: float) -> bool:
        """Whether a kill completed before ``since`` had closed the connection on ``port``."""
        return any(done < since and port in ports for done, ports in self.done)


_KILL = ("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def kill_storm(
    pool: Any,
    host: str,
    port: int,
    *,
    threads: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
) -> KillStorm:
    """``threads`` threads send commands through ``pool`` (sleeping a random 0-``think`` s
    between commands) while every normal client connection is killed every ``period`` s, for
    ``seconds`` (see :func:`under_load`)."""
    kills = _Kills()

    def fault() -> float:
        admin = redis.Redis(host=host, port=port)
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(period)
                listing = admin.client_list(_type="normal")
                kills.record(listing, admin.execute_command(*_KILL))  # type: ignore[no-untyped-call]
        finally:
            admin.close()
        return time.monotonic()

    load = under_load(
        pool,
        fault,
        threads=threads,
        think=think,
        warmup=min(0.3, seconds / 4),
        after=0.0,
        stale=kills.stale,
    )
    return KillStorm(
        commands=load.commands, errors=load.errors, kills=kills.count, stale=load.stale
    )


async def kill_storm_async(
    pool: Any,
    host: str,
    port: int,
    *,
    tasks: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
) -> KillStorm:
    """:func:`kill_storm` for asyncio pools: ``tasks`` tasks borrow, send ``ECHO <own token>``
    and release, as :func:`under_load`'s threads do."""
    stop = asyncio.Event()
    ok = [0] * tasks
    bad = [0] * tasks
    stale = [0] * tasks
    kills = _Kills()

    async def work(i: int) -> None:
        rnd = random.Random(i)
        n = 0
        while not stop.is_set():
            n += 1
            token = f"{i}:{n}".encode()
            try:
                conn = await pool.get_connection()
            except _ERRORS:
                bad[i] += 1
                await asyncio.sleep(0.002)
                continue
            # Handed out already dead: the event loop had seen the server close it, in the same
            # run of the loop as the pool's own borrow (nothing ran in between).
            reader = getattr(conn, "_reader", None)
            dead = reader is not None and (reader.at_eof() or reader.exception() is not None)
            try:
                await conn.send_command("ECHO", token)
                reply = await conn.read_response()
                ok[i] += reply == token
            except _ERRORS:
                bad[i] += 1
                stale[i] += dead
                await conn.disconnect()
            finally:
                await pool.release(conn)
            await asyncio.sleep(rnd.uniform(0, think) if think else 0)

    async def killer() -> None:
        admin = aredis.Redis(host=host, port=port)
        try:
            while True:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
                if stop.is_set():
                    return
                listing = await admin.client_list(_type="normal")
                kills.record(listing, await admin.execute_command(*_KILL))  # type: ignore[no-untyped-call]
        finally:
            await admin.aclose()

    workers = [asyncio.ensure_future(work(i)) for i in range(tasks)]
    await asyncio.sleep(min(0.3, seconds / 4))
    kill_task = asyncio.ensure_future(killer())
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(kill_task, *workers)
    return KillStorm(commands=sum(ok), errors=sum(bad), kills=kills.count, stale=sum(stale))


@dataclass
class CancelStorm:
    """The outcome of one cancellation storm."""

    commands: int
    """Commands completed within their deadline."""
    cancelled: int
    """Calls cut off by their deadline."""
    errors: int
    """Calls that failed otherwise."""


async def cancel_storm(
    make_pool: Callable[[], Any],
    *,
    tasks: int = 300,
    seconds: float = 3.0,
    deadline: tuple[float, float] = (0.001, 0.020),
) -> tuple[CancelStorm, Any]:
    """``tasks`` tasks ``GET`` through a fresh pool from ``make_pool()``, each call under
    ``asyncio.wait_for`` with a random deadline in ``deadline`` (seconds), for ``seconds``.
    Returns the counts and the pool (not closed: the caller inspects it, then closes it)."""
    pool = make_pool()
    client = aredis.Redis(connection_pool=pool)
    stop = time.monotonic() + seconds
    done = [0, 0, 0]

    async def work(i: int) -> None:
        rnd = random.Random(i)
        while time.monotonic() < stop:
            try:
                await asyncio.wait_for(client.get(f"k{i % 16}"), rnd.uniform(*deadline))
                done[0] += 1
            except asyncio.TimeoutError:
                done[1] += 1
            except _ERRORS:
                done[2] += 1
                await asyncio.sleep(0.001)

    await asyncio.gather(*(work(i) for i in range(tasks)))
    return CancelStorm(commands=done[0], cancelled=done[1], errors=done[2]), pool


@dataclass
class Outage:
    """The outcome of one endpoint outage (:func:`endpoint_outage`)."""

    errors: int
    """Commands that failed."""
    commands: int
    """Commands that succeeded."""
    recovered_after: float | None
    """Seconds from the server's restart until the pool held its share of connections to it
    (within one of an even spread), or ``None`` if it did not within the time allowed."""
    connections: list[int]
    """Connections per endpoint at the end (the pool's own count, in endpoint order)."""


def endpoint_outage(
    pool: Any,
    servers: list[Any],
    *,
    down: int = 0,
    threads: int = 32,
    think: float = 0.0,
    warmup: float = 0.5,
    outage: float = 3.0,
    allow: float = 8.0,
) -> Outage:
    """``threads`` threads send commands through ``pool`` (``endpoints=`` the ``servers``; see
    :func:`under_load`); the server ``servers[down]`` is stopped for ``outage`` seconds and started
    again on the same port. Polls the pool's per-endpoint connection counts until the restarted
    endpoint holds its share (up to ``allow`` seconds)."""
    labels = [f"{s.host}:{s.port}" for s in servers]
    recovered: list[float] = []

    def spread() -> list[int]:
        per = pool.stats().endpoint_connections
        return [per.get(label, 0) for label in labels]

    def fault() -> float:
        servers[down].stop()
        time.sleep(outage)
        servers[down].start()
        back = time.monotonic()
        while time.monotonic() - back < allow:
            counts = spread()
            if max(counts) - counts[down] <= 1 and counts[down] > 0:
                recovered.append(time.monotonic() - back)
                break
            time.sleep(0.02)
        return back

    load = under_load(pool, fault, threads=threads, think=think, warmup=warmup, after=0.0)
    return Outage(
        errors=load.errors,
        commands=load.commands,
        recovered_after=recovered[0] if recovered else None,
        connections=spread(),
    )


@dataclass
class Load:
    """The outcome of :func:`under_load`."""

    commands: int
    """Commands that succeeded (with the right reply)."""
    errors: int
    """Commands that failed with a connection or timeout error."""
    misrouted: int
    """Replies that were not the caller's own token (must be 0)."""
    recovered_after: float | None
    """Seconds from the end of the fault until every caller had succeeded again (``None``: not
    within the run)."""
    stale: int = 0
    """Failed commands that ``stale`` classified as sent on a connection known dead before the
    borrow (see :func:`under_load`)."""


def under_load(
    pool: Any,
    fault: Callable[[], float] | None = None,
    *,
    threads: int = 32,
    think: float = 0.0,
    warmup: float = 0.5,
    after: float = 3.0,
    stale: Callable[[int, float], bool] | None = None,
) -> Load:
    """``threads`` threads each borrow a connection from ``pool``, send ``ECHO <own token>``, check
    the reply and release it (as ``redis.Redis`` does with retries off: a failed connection is
    disconnected before it is released), sleeping a random 0-``think`` s between commands. After
    ``warmup`` s, ``fault()`` runs in the calling thread and returns the monotonic time at which
    the fault ended; the load goes on ``after`` s more. Without a fault the load runs
    ``warmup + after`` s. ``stale(local_port, borrow_start)`` classifies failed commands (see
    :attr:`KillStorm.stale`)."""
    stop = threading.Event()
    ok = [0] * threads
    bad = [0] * threads
    wrong = [0] * threads
    dead = [0] * threads
    last_ok = [0.0] * threads

    def work(i: int) -> None:
        rnd = random.Random(i)
        n = 0
        while not stop.is_set():
            n += 1
            token = f"{i}:{n}".encode()
            since = time.monotonic()
            try:
                conn = pool.get_connection()
            except _ERRORS:
                bad[i] += 1
                time.sleep(0.002)
                continue
            try:
                port = _local_port(conn) if stale is not None else 0
                conn.send_command("ECHO", token)
                reply = conn.read_response()
            except _ERRORS:
                bad[i] += 1
                if stale is not None and port and stale(port, since):
                    dead[i] += 1
                conn.disconnect()
                time.sleep(0.002)
            else:
                if reply == token:
                    ok[i] += 1
                    last_ok[i] = time.monotonic()
                else:
                    wrong[i] += 1
            finally:
                pool.release(conn)
            if think:
                time.sleep(rnd.uniform(0, think))

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    recovered_after = None
    try:
        time.sleep(warmup)
        back = fault() if fault is not None else time.monotonic()
        deadline = back + after
        while time.monotonic() < deadline:
            if recovered_after is None and min(last_ok) > back:
                recovered_after = max(last_ok) - back
            time.sleep(0.01)
        if recovered_after is None and min(last_ok) > back:
            recovered_after = max(last_ok) - back
    finally:
        stop.set()
        for t in workers:
            t.join(10)
    return Load(
        commands=sum(ok),
        errors=sum(bad),
        misrouted=sum(wrong),
        recovered_after=recovered_after,
        stale=sum(dead),
    )


def _local_port(conn: Any) -> int:
    """The local port of a connection's socket (0 if it has none)."""
    sock = getattr(getattr(conn, "_conn", conn), "_sock", None)
    try:
        return int(sock.getsockname()[1]) if sock is not None else 0
    except OSError:
        return 0


def restart(server: Any) -> Callable[[], float]:
    """A fault for :func:`under_load`: kill the server (SIGKILL) and start it on the same port."""

    def fault() -> float:
        server.restart(kill=True)
        return time.monotonic()

    return fault


def stall(server: Any, seconds: float) -> Callable[[], float]:
    """A fault for :func:`under_load`: stop the server with SIGSTOP for ``seconds``, then
    SIGCONT (the process keeps its sockets: clients see timeouts, not resets)."""

    def fault() -> float:
        os.kill(server.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        return time.monotonic()

    return fault


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 in front of ``(host, port)``, run by an event loop in a thread
    of its own: every chunk is delayed by a random ``latency`` (seconds, a range), and every
    ``reset_every`` seconds one connection, chosen at random, is reset (RST to the client).
    Use it as a context manager; :attr:`port` is where clients connect; :attr:`resets` counts
    the connections reset."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        latency: tuple[float, float] = (0.0, 0.002),
        reset_every: float = 0.05,
        seed: int = 16,
    ) -> None:
        self._target = (host, port)
        self._latency = latency
        self._reset_every = reset_every
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._server: asyncio.AbstractServer | None = None
        self._resetter: asyncio.Task[None] | None = None
        self.port = 0
        self.resets = 0

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._resetter = asyncio.ensure_future(self._reset_loop())

    async def _stop(self) -> None:
        if self._resetter is not None:
            self._resetter.cancel()
        if self._server is not None:
            self._server.close()
        for client, upstream in self._pairs:
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.append(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            with contextlib.suppress(ValueError):
                self._pairs.remove(pair)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await asyncio.sleep(self._rng.uniform(*self._latency))
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        writer.transport.abort()

    async def _reset_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reset_every)
            if not self._pairs:
                continue
            client, upstream = self._rng.choice(self._pairs)
            sock = client.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.transport.abort()  # with SO_LINGER 0: an RST
            upstream.transport.abort()
            self.resets += 1
