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
import bisect
import contextlib
import itertools
import math
import os
import random
import signal
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

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
    "StormRow",
    "abba",
    "alternate",
    "alternate_async",
    "cancel_storm",
    "endpoint_outage",
    "excess",
    "excess_df",
    "kill_storm",
    "kill_storm_async",
    "restart",
    "stall",
    "t_quantile",
    "under_load",
]

_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)


class StormRow(NamedTuple):
    """One storm's counts, a row of :attr:`KillStorm.rows` (see :func:`excess`)."""

    killed: int
    """Client connections the kills closed."""
    kills: int
    """Kills (``CLIENT KILL`` commands)."""
    exposed: int
    """Callers under way while a kill ran (see :attr:`KillStorm.exposed`)."""
    errors: int
    """Caller errors (all kinds)."""
    at_kill: int
    """Of the errors, those of callers under way while a kill ran (in flight or racing)."""


@dataclass
class KillStorm:
    """The outcome of a kill storm, or of several added together (``+``).

    Every caller error is attributed to one kind (the times are the workers' and the killer's
    ``time.monotonic()``; a kill *ran* from just before ``CLIENT KILL`` was sent until its reply
    was read):

    * *in flight* — the command was on the wire while a kill ran (sent before the kill's reply,
      failed after the kill was sent): no pool can save it; how many there are depends on how
      many commands are on the wire at a kill (:attr:`exposed`), i.e. on how fast the pool is;
    * *stale* — the connection's local port was in the ``CLIENT LIST`` taken just before a kill
      that had completed before the caller's borrow began: the server had closed it, and the
      end of the stream was in the socket, when the pool handed it out;
    * *other* — anything else: a failed borrow (dial, check), or a command on a connection that
      was not on the wire at a kill nor listed before one (e.g. dialled between the listing and
      the kill, then handed out dead).

    Stale and other errors are the pool's doing (:attr:`avoidable`)."""

    commands: int = 0
    """Commands that succeeded (with the caller's own reply)."""
    errors: int = 0
    """Commands or borrows that failed (a connection error reached the caller)."""
    kills: int = 0
    """Client connections the server killed (``CLIENT KILL``'s replies, summed)."""
    stale: int = 0
    """Errors on a connection the server had closed before the borrow began (see above)."""
    in_flight: int = 0
    """Errors on a command on the wire while a kill ran."""
    racing: int = 0
    """Errors on a command sent just after a kill that ran while its borrow was under way."""
    other: int = 0
    """Errors of neither kind."""
    exposed: int = 0
    """Callers with a borrow or a command under way while a kill ran, summed over the kills
    (the exposure: what a kill can hit)."""
    misrouted: int = 0
    """Replies that were not the caller's own token (must be 0)."""
    rows: list[StormRow] = field(default_factory=list)
    """One row per storm added up, for the statistics (:func:`excess`)."""

    @property
    def per_kill(self) -> float:
        """Caller errors per killed connection (issue 16's measure)."""
        return self.errors / max(1, self.kills)

    @property
    def avoidable(self) -> int:
        """Stale and other errors: those a pool could have avoided."""
        return self.stale + self.other

    @property
    def at_kill(self) -> int:
        """In-flight and racing errors: those of callers under way while a kill ran."""
        return self.in_flight + self.racing

    @property
    def per_exposed(self) -> float:
        """Errors of callers under way at a kill, per caller under way at a kill."""
        return self.at_kill / max(1, self.exposed)

    def __add__(self, other: KillStorm) -> KillStorm:
        counts = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name != "rows"
        }
        return KillStorm(**counts, rows=self.rows + other.rows)


def excess(a: KillStorm, b: KillStorm, measure: str = "errors", per: str = "killed") -> float:
    """How far ``a``'s rate is above ``b``'s, in standard errors (a Welch *t* statistic; negative:
    below). The rate is ``Σ measure / Σ per`` over the storms added up in each (``measure``:
    ``errors``, ``at_kill`` or ``avoidable``; ``per``: ``killed``, ``kills`` or ``exposed``; and
    ``killed`` per ``kills``: the connections alive at each kill).

    The storm, not the error nor the kill, is the independent unit: a kill's errors come
    together (the callers mid-command when it lands), and kills close in time share the
    machine's state (other processes, GIL and scheduler phase), so counts of errors are far more
    dispersed than Poisson counts and even kills of one storm are correlated; storms run
    alternately on the same server (:func:`alternate`) see the same drift. The variance of each
    ratio is the ratio estimator's over its S storms, ``Σ(x_s - R·n_s)² / (S(S-1)·n̄²)``, which
    assumes nothing about the dispersion within a storm. Compare the result with
    :func:`t_quantile` at :func:`excess_df`'s degrees of freedom."""
    (ra, va, _), (rb, vb, _) = _ratio(a, measure, per), _ratio(b, measure, per)
    if va + vb == 0:
        return 0.0 if ra <= rb else math.inf
    return (ra - rb) / math.sqrt(va + vb)


def excess_df(a: KillStorm, b: KillStorm, measure: str = "errors", per: str = "killed") -> float:
    """The Welch-Satterthwaite degrees of freedom of :func:`excess`'s statistic."""
    (_, va, ka), (_, vb, kb) = _ratio(a, measure, per), _ratio(b, measure, per)
    den = (va * va / max(1, ka - 1)) + (vb * vb / max(1, kb - 1))
    return (va + vb) ** 2 / den if den > 0 else float(max(1, ka + kb - 2))


def t_quantile(p: float, df: float) -> float:
    """Student's *t* quantile (Cornish-Fisher expansion about the normal one: within 2 % of the
    exact value for ``df`` ≥ 5 at ``p`` ≤ 0.999)."""
    z = statistics.NormalDist().inv_cdf(p)
    df = max(df, 1.0)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _ratio(storm: KillStorm, measure: str, per: str) -> tuple[float, float, int]:
    """A storm's rate ``Σx/Σn`` over its kills, the ratio estimator's variance, the kill count."""
    rows = [
        (
            row.errors - row.at_kill if measure == "avoidable" else getattr(row, measure),
            getattr(row, per),
        )
        for row in storm.rows
    ]
    k = len(rows)
    total = sum(n for _, n in rows)
    if k < 2 or total == 0:
        return 0.0, 0.0, k
    rate = sum(x for x, _ in rows) / total
    mean_n = total / k
    var = sum((x - rate * n) ** 2 for x, n in rows) / (k * (k - 1) * mean_n**2)
    return rate, var, k


class _Log:
    """The accounting shared by both shells' kill storms: what each kill closed and when it ran,
    when each caller's command went on the wire and came back, and (:meth:`result`) the
    attribution of every error (see :class:`KillStorm`)."""

    def __init__(self, workers: int) -> None:
        self.kills: list[tuple[float, float, frozenset[int], int]] = []
        self.done: list[list[tuple[float, float]]] = [[] for _ in range(workers)]
        self.failed: list[tuple[float, float | None, float, int]] = []
        self.misrouted = 0

    def kill(self, listing: Any, sent: float, reply: Any) -> None:
        """A kill sent at ``sent`` and answered ``reply`` just now; ``listing``: the
        ``CLIENT LIST`` taken just before it."""
        ports = frozenset(
            int(str(client["addr"]).rsplit(":", 1)[1]) for client in listing if "addr" in client
        )
        self.kills.append((sent, time.monotonic(), ports, int(reply)))

    def command(
        self, worker: int, borrow: float, sent: float | None, port: int, ok: bool | None
    ) -> None:
        """A caller's command just ended: borrow began at ``borrow``, the command went on the wire
        at ``sent`` (``None``: the borrow failed), on local ``port``; ``ok``: the right reply
        (``False``: someone else's, ``None``: a connection error)."""
        end = time.monotonic()
        if ok is None:
            self.failed.append((borrow, sent, end, port))
        elif ok:
            self.done[worker].append((borrow, end))
        else:
            self.misrouted += 1

    def result(self) -> KillStorm:
        """Every error attributed, and the exposure at each kill."""
        kills = sorted(self.kills)
        starts = [k[0] for k in kills]

        def under_way(since: float, end: float) -> list[int]:
            """The kills that ran while a call was under way from ``since`` (latest first)."""
            hit = []
            j = bisect.bisect_right(starts, end) - 1
            while j >= 0 and kills[j][1] >= since:
                hit.append(j)
                j -= 1
            return hit

        exposed = 0
        for borrow, end in itertools.chain.from_iterable(self.done):
            exposed += len(under_way(borrow, end))
        kinds = dict.fromkeys(("in_flight", "racing", "stale", "other"), 0)
        for borrow, sent, end, port in self.failed:
            hit = under_way(borrow, end)
            exposed += len(hit)
            if hit and sent is not None:
                kinds["in_flight" if sent <= kills[hit[0]][1] else "racing"] += 1
            elif sent is not None and any(d < borrow and port in ports for _, d, ports, _ in kills):
                kinds["stale"] += 1
            else:
                kinds["other"] += 1
        killed = sum(kill[3] for kill in kills)
        at_kill = kinds["in_flight"] + kinds["racing"]
        return KillStorm(
            commands=sum(len(done) for done in self.done),
            errors=len(self.failed),
            kills=killed,
            **kinds,
            exposed=exposed,
            misrouted=self.misrouted,
            rows=[StormRow(killed, len(kills), exposed, len(self.failed), at_kill)],
        )


_KILL = ("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


def _kill_times(seconds: float, period: float) -> int:
    """How many kills a storm of ``seconds`` at ``period`` makes (at least one)."""
    return max(1, round(seconds / period))


def kill_storm(
    pool: Any,
    host: str,
    port: int,
    *,
    threads: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
    warmup: float | None = None,
) -> KillStorm:
    """``threads`` threads send commands through ``pool`` (sleeping a random 0-``think`` s
    between commands; see :func:`under_load`) while every normal client connection is killed
    every ``period`` s, ``seconds ÷ period`` times, after ``warmup`` s (default: a quarter of
    ``seconds``, at most 0.3 s); the load goes on ``period ÷ 2`` s after the last kill. Short
    storms on the same server, alternating between pools, add up (``+``) for a comparison."""
    log = _Log(threads)

    def fault() -> float:
        admin = redis.Redis(host=host, port=port)
        try:
            for _ in range(_kill_times(seconds, period)):
                time.sleep(period)
                listing = admin.client_list(_type="normal")
                sent = time.monotonic()
                log.kill(listing, sent, admin.execute_command(*_KILL))  # type: ignore[no-untyped-call]
        finally:
            admin.close()
        return time.monotonic()

    lead = min(0.3, seconds / 4) if warmup is None else warmup
    under_load(pool, fault, threads=threads, think=think, warmup=lead, after=period / 2, log=log)
    return log.result()


async def kill_storm_async(
    pool: Any,
    host: str,
    port: int,
    *,
    tasks: int = 32,
    think: float = 0.0,
    seconds: float = 2.0,
    period: float = 0.2,
    warmup: float | None = None,
) -> KillStorm:
    """:func:`kill_storm` for asyncio pools: ``tasks`` tasks borrow, send ``ECHO <own token>``
    and release, as :func:`under_load`'s threads do."""
    stop = asyncio.Event()
    log = _Log(tasks)

    async def work(i: int) -> None:
        rnd = random.Random(i)
        n = 0
        while not stop.is_set():
            n += 1
            token = f"{i}:{n}".encode()
            borrow = time.monotonic()
            try:
                conn = await pool.get_connection()
            except _ERRORS:
                log.command(i, borrow, None, 0, None)
                await asyncio.sleep(0.002)
                continue
            port = _local_port(conn)
            sent = time.monotonic()
            try:
                await conn.send_command("ECHO", token)
                reply = await conn.read_response()
            except _ERRORS:
                log.command(i, borrow, sent, port, None)
                await conn.disconnect()
            else:
                log.command(i, borrow, sent, 0, reply == token)
            finally:
                await pool.release(conn)
            await asyncio.sleep(rnd.uniform(0, think) if think else 0)

    async def killer() -> None:
        admin = aredis.Redis(host=host, port=port)
        try:
            for _ in range(_kill_times(seconds, period)):
                await asyncio.sleep(period)
                listing = await admin.client_list(_type="normal")
                sent = time.monotonic()
                log.kill(listing, sent, await admin.execute_command(*_KILL))  # type: ignore[no-untyped-call]
        finally:
            await admin.aclose()

    workers = [asyncio.ensure_future(work(i)) for i in range(tasks)]
    await asyncio.sleep(min(0.3, seconds / 4) if warmup is None else warmup)
    await killer()
    await asyncio.sleep(period / 2)
    stop.set()
    await asyncio.gather(*workers)
    return log.result()


def alternate(
    pools: dict[str, Any], host: str, port: int, *, storms: int = 4, **kwargs: Any
) -> dict[str, KillStorm]:
    """``storms`` short :func:`kill_storm`-s per pool on the same server, alternating in ABBA
    order (so a drift in the machine's load weighs on each pool alike), added up per pool. Before
    each storm the other pools are disconnected, so that the kills close only the connections of
    the pool under test. ``kwargs`` go to :func:`kill_storm`."""
    total = {name: KillStorm() for name in pools}
    for order in abba(list(pools), storms):
        for other in pools.values():
            if other is not pools[order]:
                other.disconnect()
        total[order] += kill_storm(pools[order], host, port, **kwargs)
    return total


async def alternate_async(
    pools: dict[str, Any], host: str, port: int, *, storms: int = 4, **kwargs: Any
) -> dict[str, KillStorm]:
    """:func:`alternate` for asyncio pools (:func:`kill_storm_async`)."""
    total = {name: KillStorm() for name in pools}
    for order in abba(list(pools), storms):
        for other in pools.values():
            if other is not pools[order]:
                await other.disconnect()
        total[order] += await kill_storm_async(pools[order], host, port, **kwargs)
    return total


def abba(names: list[str], storms: int) -> list[str]:
    """``storms`` turns for each name, in the order A B B A A B B A ..."""
    return [name for turn in range(storms) for name in (names if turn % 2 == 0 else names[::-1])]


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


def under_load(
    pool: Any,
    fault: Callable[[], float] | None = None,
    *,
    threads: int = 32,
    think: float = 0.0,
    warmup: float = 0.5,
    after: float = 3.0,
    log: _Log | None = None,
) -> Load:
    """``threads`` threads each borrow a connection from ``pool``, send ``ECHO <own token>``, check
    the reply and release it (as ``redis.Redis`` does with retries off: a failed connection is
    disconnected before it is released), sleeping a random 0-``think`` s between commands. After
    ``warmup`` s, ``fault()`` runs in the calling thread and returns the monotonic time at which
    the fault ended; the load goes on ``after`` s more. Without a fault the load runs
    ``warmup + after`` s. ``log`` (:func:`kill_storm`'s) records every command's times."""
    stop = threading.Event()
    ok = [0] * threads
    bad = [0] * threads
    wrong = [0] * threads
    last_ok = [0.0] * threads

    def work(i: int) -> None:
        rnd = random.Random(i)
        n = 0
        while not stop.is_set():
            n += 1
            token = f"{i}:{n}".encode()
            borrow = time.monotonic()
            try:
                conn = pool.get_connection()
            except _ERRORS:
                bad[i] += 1
                if log is not None:
                    log.command(i, borrow, None, 0, None)
                time.sleep(0.002)
                continue
            port = _local_port(conn) if log is not None else 0
            sent = time.monotonic()
            try:
                conn.send_command("ECHO", token)
                reply = conn.read_response()
            except _ERRORS:
                bad[i] += 1
                if log is not None:
                    log.command(i, borrow, sent, port, None)
                conn.disconnect()
                time.sleep(0.002)
            else:
                if log is not None:
                    log.command(i, borrow, sent, 0, reply == token)
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
    )


def _local_port(conn: Any) -> int:
    """The local port of a connection's socket, sync or asyncio (0 if it has none)."""
    conn = getattr(conn, "_conn", conn)
    sock = getattr(conn, "_sock", None)
    writer = getattr(conn, "_writer", None)
    if sock is None and writer is not None:
        sock = writer.get_extra_info("socket")
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
