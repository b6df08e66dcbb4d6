"""The proxy-imbalance scenario behind ``fairpool demo``, importable and testable on its own.

A Redis cluster sits behind a layer of proxies; an L4 balancer spreads *connections* evenly over the
proxies. A burst of traffic makes the client pool open many connections — the same number on every
proxy — and then a low-concurrency load keeps running. With a LIFO pool (redis-py's, redigo's) the
load only ever uses the one or two connections on top of the idle stack, so one or two proxies do
all the work; FIFO and round-robin rotate over every connection and so over every proxy.

The scenario here replays that story on one machine:

* :class:`ServerGroup` starts ``proxies`` real ``redis-server`` processes standing in for the
  proxies;
* :class:`BalancedConnection` (with a shared :class:`RoundRobinBalancer`) plays the L4 balancer:
  every new TCP connection goes to the next server in turn;
* for each policy (``lifo``, ``fifo``, ``round_robin``, and ``redis-py`` — redis-py's own
  ``ConnectionPool``, LIFO — as the reference) a fresh pool is built; ``burst`` threads borrow a
  connection at once and hold it briefly, then ``concurrency`` threads issue ``INCR`` for
  ``duration`` seconds;
* each proxy's share of the commands is read from the servers themselves (``INFO commandstats``
  deltas taken after the burst, after ``CONFIG RESETSTAT``), not from the pool's counters.

:func:`run_demo` runs it and returns a :class:`DemoResult` (``as_dict()`` for JSON);
:func:`render_table` and :func:`write_plot` present it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from redis.connection import ConnectionPool as RedisConnectionPool

from .._compat import borrow_args
from ..pool import ConnectionPool as FairConnectionPool
from ..stats import fairness
from .servers import RedisServer, ServerGroup, find_redis_server, server_version

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_POLICIES",
    "POLICY_LABELS",
    "REFERENCE",
    "BalancedConnection",
    "DemoConfig",
    "DemoInterrupted",
    "DemoProgress",
    "DemoResult",
    "PolicyResult",
    "RoundRobinBalancer",
    "make_pool",
    "parse_policies",
    "render_live",
    "render_report",
    "render_table",
    "run_demo",
    "run_scenario",
    "summarize",
    "write_plot",
]

REFERENCE = "redis-py"
"""Name of the reference row: redis-py's own ``redis.ConnectionPool`` (LIFO)."""

DEFAULT_POLICIES: tuple[str, ...] = (REFERENCE, "lifo", "fifo", "round_robin")
"""What ``fairpool demo`` compares by default, in this order."""

POLICY_LABELS: dict[str, str] = {
    REFERENCE: "redis-py ConnectionPool (LIFO)",
    "lifo": "fairpool lifo",
    "fifo": "fairpool fifo",
    "round_robin": "fairpool round_robin",
}
"""Human-readable name of each policy."""

DEFAULT_IDLE_TIMEOUT = 1.0
"""fairpool's ``idle_timeout`` in the demo by default: short enough that the fair pools visibly
shrink within the default 5 s of load."""

LOAD_KEY = "fairpool:demo"
"""The key the steady load increments."""

# Commands the demo itself sends to the servers (snapshots, resets): not part of any proxy's load.
_ADMIN_COMMANDS = ("cmdstat_info", "cmdstat_config")


class DemoInterrupted(Exception):
    """The run was stopped (its ``stop`` event was set) before it finished."""


# --------------------------------------------------------------------------------------------
# The L4 balancer
# --------------------------------------------------------------------------------------------


class RoundRobinBalancer:
    """Hands out endpoints in turn, as an L4 load balancer does with new TCP connections.

    Thread-safe. :attr:`dials` counts the connections sent to each endpoint.
    """

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        """Balance over ``endpoints``, a non-empty sequence of ``(host, port)``."""
        if not endpoints:
            raise ValueError("RoundRobinBalancer needs at least one endpoint")
        self.endpoints: tuple[tuple[str, int], ...] = tuple(endpoints)
        self.dials: list[int] = [0] * len(self.endpoints)
        self._next = 0
        self._lock = threading.Lock()

    def next(self) -> tuple[str, int]:
        """The endpoint for the next new connection."""
        with self._lock:
            i = self._next
            self._next = (i + 1) % len(self.endpoints)
            self.dials[i] += 1
        return self.endpoints[i]

    def reset(self) -> None:
        """Start again from the first endpoint, with zero counts."""
        with self._lock:
            self._next = 0
            self.dials = [0] * len(self.endpoints)


class BalancedConnection(redis.Connection):
    """A ``redis.Connection`` whose every new TCP socket goes to ``balancer.next()``.

    Pass ``connection_class=BalancedConnection, balancer=RoundRobinBalancer([...])`` to any pool:
    the balancer is shared by all of its connections. A reconnect is a new TCP connection, so it
    may land on another endpoint, as it would behind a real balancer.
    """

    def __init__(self, *, balancer: RoundRobinBalancer, **kwargs: Any) -> None:
        """Create an unconnected connection; ``kwargs`` are ``redis.Connection``'s."""
        kwargs.pop("host", None)
        kwargs.pop("port", None)
        self.balancer = balancer
        host, port = balancer.endpoints[0]
        super().__init__(host=host, port=port, **kwargs)  # type: ignore[no-untyped-call]

    def _connect(self) -> Any:
        self._host, self.port = self.balancer.next()
        return super()._connect()  # type: ignore[no-untyped-call]


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


def parse_policies(text: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"redis-py,lifo,fifo"`` (or a sequence) into validated, de-duplicated names.

    ``redis_py``/``redispy``/``redis`` are accepted for ``redis-py``; ``round-robin``/``rr`` for
    ``round_robin``. Raises ``ValueError`` naming the valid choices.
    """
    aliases = {
        "redis-py": REFERENCE,
        "redis_py": REFERENCE,
        "redispy": REFERENCE,
        "redis": REFERENCE,
        "lifo": "lifo",
        "fifo": "fifo",
        "round_robin": "round_robin",
        "round-robin": "round_robin",
        "roundrobin": "round_robin",
        "rr": "round_robin",
    }
    return parse_choice_list(text, aliases, DEFAULT_POLICIES, what="policy")


def parse_choice_list(
    text: str | Iterable[str], aliases: dict[str, str], choices: Sequence[str], *, what: str
) -> tuple[str, ...]:
    """Parse a comma-separated list (or a sequence) of names through ``aliases`` into
    de-duplicated canonical names, in order. Raises ``ValueError`` naming the valid ``choices``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        if name not in aliases:
            raise ValueError(f"unknown {what} {item.strip()!r}; choose from {', '.join(choices)}")
        if aliases[name] not in out:
            out.append(aliases[name])
    if not out:
        raise ValueError(f"no {what} given; choose from {', '.join(choices)}")
    return tuple(out)


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the scenario (the ``fairpool demo`` options)."""

    proxies: int = 4
    """Servers standing in for the proxies."""
    burst: int = 32
    """Threads that borrow a connection at once, so that this many connections exist."""
    concurrency: int = 2
    """Threads of the steady load that follows the burst."""
    duration: float = 5.0
    """Seconds of steady load, per policy."""
    policies: tuple[str, ...] = DEFAULT_POLICIES
    """Policies to compare, in order (see :data:`DEFAULT_POLICIES`)."""
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    """fairpool's ``idle_timeout`` (not applied to the redis-py row, which has no such setting);
    ``None`` turns shrinking off."""
    min_idle: int = 0
    """fairpool's ``min_idle``: connections kept when shrinking (e.g. one per proxy)."""
    hold: float = 0.05
    """Seconds each burst thread holds its connection once all of them have one."""
    sample_interval: float = 0.25
    """Seconds between two samples of the servers' connections and commands during the load."""

    def __post_init__(self) -> None:
        """Validate the numbers."""
        if self.proxies < 1:
            raise ValueError("proxies must be >= 1")
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be > 0")
        if self.min_idle < 0:
            raise ValueError("min_idle must be >= 0")
        if self.hold < 0:
            raise ValueError("hold must be >= 0")
        if not self.sample_interval > 0:
            raise ValueError("sample_interval must be > 0")
        object.__setattr__(self, "policies", parse_policies(self.policies))

    @property
    def max_connections(self) -> int:
        """The pools' cap: room for the burst and the load, never below redis-py's 100."""
        return max(100, self.burst, self.concurrency, self.min_idle)


@dataclass(frozen=True)
class PolicyResult:
    """What one policy did on the scenario."""

    policy: str
    """``"redis-py"``, ``"lifo"``, ``"fifo"`` or ``"round_robin"``."""
    label: str
    """Human-readable name."""
    commands: list[int]
    """Load commands each proxy processed (``INFO commandstats`` deltas), in proxy order."""
    client_ops: int
    """Commands the load threads completed (client side; should equal ``sum(commands)``)."""
    seconds: float
    """Duration of the load phase."""
    max_mean: float
    """The busiest proxy's commands over the mean (1.0 = even)."""
    jain: float
    """Jain's fairness index of ``commands`` (1/proxies = one proxy does it all, 1.0 = even)."""
    burst_connections: list[int]
    """Connections each proxy held right after the burst (from the server's ``INFO clients``)."""
    end_connections: list[int]
    """Connections each proxy held at the end of the load (from the server's ``INFO clients``)."""
    created: int
    """Connections the pool created."""
    closed: dict[str, int] | None = None
    """Connections the pool closed, by reason (fairpool pools only)."""
    pool_stats: dict[str, Any] | None = None
    """``pool.stats().as_dict()`` at the end of the load (fairpool pools only)."""
    timeline: list[tuple[float, int]] = field(default_factory=list)
    """``(seconds since the burst ended, connections open on all proxies)``, sampled during the
    load (every ``sample_interval``), from ``(0, after the burst)`` to the end."""

    @property
    def total(self) -> int:
        """Load commands the servers processed."""
        return sum(self.commands)

    @property
    def shares(self) -> list[float]:
        """Each proxy's fraction of the load commands (0..1)."""
        total = self.total
        return [c / total if total else 0.0 for c in self.commands]

    @property
    def ops_per_sec(self) -> float:
        """Load commands per second."""
        return self.total / self.seconds if self.seconds > 0 else 0.0

    @property
    def open_end(self) -> int:
        """Connections open at the end of the load (all proxies)."""
        return sum(self.end_connections)

    @property
    def open_burst(self) -> int:
        """Connections open right after the burst (all proxies)."""
        return sum(self.burst_connections)

    @property
    def shrink_seconds(self) -> float | None:
        """Seconds after the burst from which the pool held no more than :attr:`open_end`
        connections (``None`` if it did not shrink)."""
        if self.open_end >= self.open_burst or not self.timeline:
            return None
        settled = self.timeline[-1][0]
        for t, n in reversed(self.timeline):
            if n > self.open_end:
                break
            settled = t
        return settled

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, derived figures included."""
        d = asdict(self)
        d["total"] = self.total
        d["shares"] = self.shares
        d["ops_per_sec"] = self.ops_per_sec
        d["open_end"] = self.open_end
        d["shrink_seconds"] = self.shrink_seconds
        d["timeline"] = [list(point) for point in self.timeline]
        return d


@dataclass
class DemoResult:
    """The whole run: the configuration, the proxies and one :class:`PolicyResult` per policy."""

    config: DemoConfig
    server_binary: str
    server_version: str
    proxies: list[str]
    """The proxies' ``host:port``, in order."""
    results: list[PolicyResult] = field(default_factory=list)

    def result(self, policy: str) -> PolicyResult:
        """The result of ``policy`` (``KeyError`` if it was not run)."""
        for r in self.results:
            if r.policy == policy:
                return r
        raise KeyError(policy)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``fairpool demo --json`` output)."""
        return {
            "scenario": {**asdict(self.config), "policies": list(self.config.policies)},
            "server": {"binary": self.server_binary, "version": self.server_version},
            "proxies": [
                {"name": f"proxy-{i}", "endpoint": endpoint}
                for i, endpoint in enumerate(self.proxies)
            ],
            "results": [r.as_dict() for r in self.results],
        }


@dataclass(frozen=True)
class DemoProgress:
    """A progress report from :func:`run_scenario` to its ``progress`` callback.

    ``phase`` is ``"start"``, ``"burst"``, ``"load"`` (repeated about ten times a second, with
    ``elapsed`` and ``ops`` so far, and every ``sample_interval`` with ``result``: the figures so
    far, read from the servers) or ``"done"`` (with the final ``result``).
    """

    policy: str
    phase: str
    elapsed: float = 0.0
    duration: float = 0.0
    ops: int = 0
    result: PolicyResult | None = None


ProgressCallback = Callable[[DemoProgress], None]


# --------------------------------------------------------------------------------------------
# Running the scenario
# --------------------------------------------------------------------------------------------


def make_pool(
    policy: str,
    balancer: RoundRobinBalancer,
    *,
    max_connections: int = 100,
    idle_timeout: float | None = None,
    min_idle: int = 0,
) -> RedisConnectionPool:
    """A fresh pool for ``policy`` whose connections are spread by ``balancer``.

    ``"redis-py"`` gives redis-py's own ``redis.ConnectionPool`` (``idle_timeout`` and
    ``min_idle`` do not apply); the other names give a :class:`fairpool.ConnectionPool` with that
    policy.
    """
    if policy == REFERENCE:
        return RedisConnectionPool(
            connection_class=BalancedConnection,
            max_connections=max_connections,
            balancer=balancer,
        )
    return FairConnectionPool(
        connection_class=BalancedConnection,
        max_connections=max_connections,
        policy=policy,
        idle_timeout=idle_timeout,
        min_idle=min_idle,
        balancer=balancer,
    )


def _close_pool(pool: RedisConnectionPool) -> None:
    if isinstance(pool, FairConnectionPool):
        pool.shutdown()
    else:
        pool.disconnect()


def _load_commands(stats: dict[str, Any]) -> int:
    """Calls in an ``INFO commandstats`` dict, the demo's own admin commands excluded."""
    total = 0
    for name, entry in stats.items():
        if name.startswith(_ADMIN_COMMANDS) or not isinstance(entry, dict):
            continue
        total += int(entry.get("calls", 0))
    return total


class _Admin:
    """One plain client per server for the demo's own INFO / CONFIG RESETSTAT calls."""

    def __init__(self, servers: Sequence[RedisServer]) -> None:
        self.clients = [s.client(socket_timeout=10) for s in servers]

    def reset_stats(self) -> None:
        for c in self.clients:
            c.config_resetstat()

    def commands(self) -> list[int]:
        return [_load_commands(dict(c.info("commandstats"))) for c in self.clients]

    def connections(self) -> list[int]:
        # minus this admin client's own connection
        return [int(c.info("clients")["connected_clients"]) - 1 for c in self.clients]

    def wait_idle(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until the servers have noticed every closed client connection."""
        deadline = time.monotonic() + timeout
        while any(self.connections()) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()


def _wait_threads(threads: Sequence[threading.Thread], stop: threading.Event) -> None:
    """Join ``threads`` in small steps, so that the calling (main) thread stays interruptible."""
    for t in threads:
        while t.is_alive():
            t.join(0.05)
            if stop.is_set():
                return


def _burst(
    pool: RedisConnectionPool, n: int, hold: float, stop: threading.Event
) -> list[BaseException]:
    """``n`` threads borrow a connection each, PING, wait until all hold one, hold, release."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def worker() -> None:
        conn: Any = None
        try:
            conn = pool.get_connection(*borrow_args(pool))
            conn.send_command("PING")
            conn.read_response()
            barrier.wait(timeout=30)
            stop.wait(hold)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # reported to the caller
            errors.append(exc)
            barrier.abort()
        finally:
            if conn is not None:
                pool.release(conn)

    threads = [
        threading.Thread(target=worker, name=f"fairpool-demo-burst-{i}", daemon=True)
        for i in range(n)
    ]
    for t in threads:
        t.start()
    try:
        _wait_threads(threads, stop)
    finally:
        if stop.is_set():
            barrier.abort()
    return errors


def _load(
    pool: RedisConnectionPool,
    concurrency: int,
    duration: float,
    stop: threading.Event,
    tick: Callable[[float, int], None] | None,
) -> tuple[int, float, list[BaseException]]:
    """``concurrency`` threads INCR through ``redis.Redis`` for ``duration`` seconds.

    Returns (operations, seconds, errors).
    """
    client = redis.Redis(connection_pool=pool)
    counts = [0] * concurrency
    errors: list[BaseException] = []
    start = time.perf_counter()
    deadline = start + duration

    def worker(i: int) -> None:
        incr = client.incr
        n = 0
        try:
            while not stop.is_set() and time.perf_counter() < deadline:
                incr(LOAD_KEY)
                n += 1
                if not n & 63:
                    counts[i] = n
        except BaseException as exc:
            errors.append(exc)
        finally:
            counts[i] = n

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"fairpool-demo-load-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for t in threads:
        t.start()
    while not stop.is_set():
        alive = [t for t in threads if t.is_alive()]
        if not alive:
            break
        alive[0].join(0.1)
        if tick is not None:
            tick(min(time.perf_counter() - start, duration), sum(counts))
    _wait_threads(threads, stop)
    return sum(counts), time.perf_counter() - start, errors


def run_scenario(
    policy: str,
    servers: Sequence[RedisServer],
    config: DemoConfig,
    *,
    admin: _Admin | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
) -> PolicyResult:
    """Run the burst-then-steady-load scenario for one policy on fresh connections.

    ``servers`` must be running and otherwise unused. The servers' stats are reset first
    (``CONFIG RESETSTAT``) and the commands are counted from ``INFO commandstats`` snapshots taken
    after the burst and after the load. The pool is closed and its connections are gone (as far as
    the servers can tell, within 2 s) when this returns.

    Raises:
        DemoInterrupted: ``stop`` was set.
        Exception: the first error a burst or load thread hit.
    """
    stop = stop or threading.Event()
    own_admin = admin is None
    admin = admin or _Admin(servers)
    report = progress or (lambda _event: None)
    balancer = RoundRobinBalancer([(s.host, s.port) for s in servers])
    pool = make_pool(
        policy,
        balancer,
        max_connections=config.max_connections,
        idle_timeout=config.idle_timeout,
        min_idle=config.min_idle,
    )
    try:
        admin.wait_idle()
        admin.reset_stats()
        report(DemoProgress(policy, "burst", duration=config.duration))
        errors = _burst(pool, config.burst, config.hold, stop)
        if stop.is_set():
            raise DemoInterrupted()
        if errors:
            raise errors[0]
        burst_connections = admin.connections()
        before = admin.commands()
        timeline: list[tuple[float, int]] = [(0.0, sum(burst_connections))]

        def snapshot(ops: int, seconds: float, final: bool = False) -> PolicyResult:
            """The figures so far, read from the servers (the pool's own stats when final)."""
            connections = admin.connections()
            commands = [max(0, a - b) for a, b in zip(admin.commands(), before, strict=True)]
            timeline.append((round(seconds, 3), sum(connections)))
            fair = fairness(commands)
            pool_stats: dict[str, Any] | None = None
            closed: dict[str, int] | None = None
            created = sum(balancer.dials)
            if final and isinstance(pool, FairConnectionPool):
                st = pool.stats()
                created = st.created
                closed = dict(st.closed)
                pool_stats = st.as_dict()
            return PolicyResult(
                policy=policy,
                label=POLICY_LABELS.get(policy, policy),
                commands=commands,
                client_ops=ops,
                seconds=seconds,
                max_mean=fair.max_mean,
                jain=fair.jain,
                burst_connections=burst_connections,
                end_connections=connections,
                created=created,
                closed=closed,
                pool_stats=pool_stats,
                timeline=list(timeline),
            )

        next_sample = [config.sample_interval]

        def tick(elapsed: float, ops: int) -> None:
            partial = None
            if elapsed >= next_sample[0] and elapsed < config.duration:
                next_sample[0] = elapsed + config.sample_interval
                partial = snapshot(ops, elapsed)
            report(DemoProgress(policy, "load", elapsed, config.duration, ops, partial))

        ops, seconds, errors = _load(pool, config.concurrency, config.duration, stop, tick)
        if stop.is_set():
            raise DemoInterrupted()
        if errors:
            raise errors[0]
        result = snapshot(ops, seconds, final=True)
        report(DemoProgress(policy, "done", seconds, config.duration, ops, result))
        return result
    finally:
        _close_pool(pool)
        if not stop.is_set():
            with contextlib.suppress(Exception):
                admin.wait_idle()
        if own_admin:
            admin.close()


def run_demo(
    config: DemoConfig,
    *,
    binary: str | None = None,
    stop: threading.Event | None = None,
    progress: ProgressCallback | None = None,
    on_servers: Callable[[ServerGroup], None] | None = None,
) -> DemoResult:
    """Start ``config.proxies`` servers, run :func:`run_scenario` for every policy, stop them.

    The servers are stopped whatever happens (an error, ``KeyboardInterrupt``, ``stop`` set).
    ``on_servers`` is called once they are up.

    Raises:
        ServerBinaryNotFound: no ``redis-server`` (see
            :func:`fairpool.tools.servers.find_redis_server`).
        ServerStartError: a server did not start.
        DemoInterrupted: ``stop`` was set.
    """
    binary = binary or find_redis_server()
    version = ".".join(map(str, server_version(binary)))
    stop = stop or threading.Event()
    group = ServerGroup(config.proxies, binary=binary, name="proxy")
    with group:
        if on_servers is not None:
            on_servers(group)
        result = DemoResult(
            config=config,
            server_binary=binary,
            server_version=version,
            proxies=[f"{s.host}:{s.port}" for s in group],
        )
        admin = _Admin(group.servers)
        try:
            for policy in config.policies:
                if stop.is_set():
                    raise DemoInterrupted()
                if progress is not None:
                    progress(DemoProgress(policy, "start", duration=config.duration))
                result.results.append(
                    run_scenario(
                        policy, group.servers, config, admin=admin, stop=stop, progress=progress
                    )
                )
        finally:
            admin.close()
    return result


# --------------------------------------------------------------------------------------------
# Presenting the result
# --------------------------------------------------------------------------------------------


def _jain_style(jain: float, n: int) -> str:
    if n <= 1 or jain >= 0.9:
        return "green"
    if jain >= 0.6:
        return "yellow"
    return "red"


SPARK_WIDTH = 10
"""Cells of the connections-over-time sparkline in the table."""


def _title(config: DemoConfig, proxies: int) -> str:
    shrink = f"idle_timeout {config.idle_timeout:g} s" if config.idle_timeout else "no idle_timeout"
    return (
        f"fairpool demo: {proxies} proxies, a burst of {config.burst}, then {config.concurrency} "
        f"threads for {config.duration:g} s per policy ({shrink}"
        + (f", min_idle {config.min_idle}" if config.min_idle else "")
        + ")"
    )


def render_table(
    result: DemoResult, running: PolicyResult | None = None, pending: Sequence[str] = ()
) -> Table:
    """A rich table, one row per policy: each proxy's share of the commands, Jain's index,
    ops/s, connections after the burst -> at the end, and a sparkline of the connections over the
    load.

    ``running`` (a partial result, from a ``"load"`` progress event) is shown as a row in progress
    and ``pending`` policies as empty rows: that is the live view of ``fairpool demo``.
    """
    from .display import sparkline
    from .display import table as new_table

    n = len(result.proxies)
    per_proxy_columns = n <= 6
    columns = [("policy", "left")]
    if per_proxy_columns:
        columns += [(f"proxy-{i}", "right") for i in range(n)]
    else:
        columns.append(("share per proxy (%)", "left"))
    columns += [("Jain", "right"), ("ops/s", "right"), ("conns", "right")]
    columns.append(("over time", "left"))
    table = new_table(*columns)
    rows = list(result.results) + ([running] if running is not None else [])
    top = max((r.open_burst for r in rows), default=0)
    for r in rows:
        shares = [f"{100 * s:.1f}%" for s in r.shares]
        cells = shares if per_proxy_columns else [" ".join(f"{100 * s:.0f}" for s in r.shares)]
        style = _jain_style(r.jain, n)
        series = [c for _, c in r.timeline] or [r.open_end]
        if r is running:
            done = min(1.0, r.seconds / result.config.duration)
            width = max(1, round(SPARK_WIDTH * done))
            spark = sparkline(series, width, top).ljust(SPARK_WIDTH, "·")
        else:
            spark = sparkline(series, SPARK_WIDTH, top)
        table.add_row(
            r.policy + (" …" if r is running else ""),
            *cells,
            f"[{style}]{r.jain:.2f}[/{style}]",
            f"{r.ops_per_sec:,.0f}",
            f"{r.open_burst}→{r.open_end}",
            f"[cyan]{spark}[/cyan]",
        )
    blank = [""] * (len(columns) - 1)
    for policy in pending:
        table.add_row(f"[dim]{policy}[/dim]", *blank)
    return table


def _notes(result: DemoResult) -> list[str]:
    n = len(result.proxies)
    cfg = result.config
    reference = (
        "redis-py is redis.ConnectionPool (LIFO); the others are fairpool.ConnectionPool"
        + (f" with idle_timeout {cfg.idle_timeout:g} s." if cfg.idle_timeout else ".")
        if any(r.policy == REFERENCE for r in result.results)
        else ""
    )
    return [
        (reference + " " if reference else "")
        + "Shares are read from each server's INFO commandstats (load commands only). "
        f"Jain: 1.00 = even, {1 / n:.2f} = one proxy does everything. "
        "conns: connections open on the proxies after the burst → at the end; "
        "over time: the same, sampled during the load."
    ]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _names(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _who(policy: str) -> str:
    return "redis-py's pool" if policy == REFERENCE else f"fairpool {policy}"


def _connections_phrase(rs: Sequence[PolicyResult]) -> str:
    """How the connections of ``rs`` (one or several results) went after the burst."""
    if all(r.open_end >= r.open_burst for r in rs):
        counts = sorted({r.open_burst for r in rs})
        return f"kept all {_names([str(c) for c in counts])} connections open"
    pairs = sorted({(r.open_burst, r.open_end) for r in rs})
    times = [r.shrink_seconds for r in rs if r.shrink_seconds is not None]
    within = f" within {max(times):.1f} s of the burst" if times else ""
    if len(pairs) == 1:
        return f"shrank from {pairs[0][0]} to {pairs[0][1]} connections{within}"
    each = ", ".join(f"{r.policy} {r.open_burst} to {r.open_end}" for r in rs)
    return f"shrank ({each} connections){within}"


def summarize(result: DemoResult) -> list[str]:
    """Two or three plain sentences saying what the run showed, computed from its figures.

    Pools whose load was even (Jain ≥ 0.9) are described together; each skewed one on its own,
    naming the proxies that got the load.
    """
    n = len(result.proxies)
    even = [r for r in result.results if n == 1 or r.jain >= 0.9]
    skewed = [r for r in result.results if r not in even]
    lines: list[str] = []
    for r in skewed:
        busy = sorted(
            ((s, i) for i, s in enumerate(r.shares) if s >= 0.005), key=lambda x: (-x[0], x[1])
        )
        idle = n - len(busy)
        parts = [f"{_pct(s)} to proxy-{i}" for s, i in busy]
        parts[0] = parts[0].replace(" to ", " of the commands to ", 1)
        spread = "sent " + _names(parts)
        if idle:
            spread += f", none to the other {idle}" if idle > 1 else ", none to the other one"
        lines.append(
            f"{_who(r.policy)} {spread} (Jain {r.jain:.2f}), and {_connections_phrase([r])}."
        )
    if even:
        lo = min(min(r.shares) for r in even)
        hi = max(max(r.shares) for r in even)
        jain = min(r.jain for r in even)
        share = (
            f"{_pct(lo)} each" if _pct(lo) == _pct(hi) else f"{_pct(lo)} to {_pct(hi)} per proxy"
        )
        who = (
            _who(even[0].policy)
            if len(even) == 1
            else "fairpool " + _names([r.policy for r in even])
            if all(r.policy != REFERENCE for r in even)
            else _names([_who(r.policy) for r in even])
        )
        lines.append(
            f"{who} spread {'them' if skewed else 'the commands'} over all {n} proxies, "
            f"{share} (Jain {jain:.2f}), and "
            f"{_connections_phrase(even)}."
        )
    if (
        result.config.idle_timeout is None
        and even
        and all(r.open_end >= r.open_burst for r in even)
        and any(r.policy != REFERENCE for r in even)
    ):
        lines.append("Run with --idle-timeout 1 to see the fair pools shrink by demand.")
    return lines


def render_report(result: DemoResult) -> RenderableType:
    """The whole ``fairpool demo`` output: title, :func:`render_table`, notes, and the
    conclusions of :func:`summarize`, each paragraph wrapped at the console's width."""
    from .display import report

    return report(
        _title(result.config, len(result.proxies)),
        render_table(result),
        _notes(result),
        summarize(result),
    )


def render_live(
    result: DemoResult, running: PolicyResult | None, pending: Sequence[str], status: str
) -> RenderableType:
    """The live view while the demo runs: the table so far and a status line."""
    from .display import report

    return report(
        _title(result.config, len(result.proxies)),
        render_table(result, running, pending),
        [status],
    )


def plot_available() -> bool:
    """Whether matplotlib (the ``plot`` extra) is installed."""
    return importlib.util.find_spec("matplotlib") is not None


PLOT_MISSING = (
    "--plot needs matplotlib, which is not installed. "
    "Install it with: pip install 'fairpool[plot]'  (or: pip install matplotlib)"
)
"""The message given when ``--plot`` is asked for without matplotlib."""


def write_plot(
    result: DemoResult, path: str, on_figure: Callable[[Any], None] | None = None
) -> None:
    """Write a PNG to ``path``: each policy's per-proxy command share as grouped bars (left) and
    the connections open on the proxies over the load (right), one legend below both.

    ``on_figure`` is called with the matplotlib ``Figure`` once it is saved, before it is closed.

    Raises:
        RuntimeError: matplotlib is not installed (the message says how to get it).
    """
    if not plot_available():
        raise RuntimeError(PLOT_MISSING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(result.proxies)
    k = max(1, len(result.results))
    width = 0.8 / k
    cfg = result.config
    fig, (bars, lines) = plt.subplots(
        1, 2, figsize=(max(11.0, 1.2 * n + 7), 4.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        top = 0.0
        peak = 0
        for j, r in enumerate(result.results):
            color = colors[j % len(colors)]
            xs = [i - 0.4 + width * (j + 0.5) for i in range(n)]
            heights = [100 * s for s in r.shares]
            top = max(top, *heights)
            bars.bar(xs, heights, width, color=color, label=f"{r.label} (Jain {r.jain:.2f})")
            times = [t for t, _ in r.timeline] or [0.0]
            counts = [c for _, c in r.timeline] or [r.open_end]
            style = ("-", "--", "-.", ":")[j % 4]
            lines.step(times, counts, where="post", color=color, linewidth=2, linestyle=style)
            peak = max(peak, *counts)
        bars.axhline(100 / n, color="grey", linestyle="--", linewidth=1, label="even share")
        bars.set_xticks(range(n))
        bars.set_xticklabels([f"proxy-{i}" for i in range(n)])
        bars.set_ylabel("share of commands (%)")
        bars.set_ylim(0, max(top, 100 / n) * 1.08)
        bars.set_title("Commands per proxy")
        lines.set_xlabel("seconds after the burst")
        lines.set_ylabel("open connections (all proxies)")
        lines.set_xlim(0, cfg.duration)
        lines.set_ylim(0, max(1, peak) * 1.08)
        lines.set_title(
            "Connections: "
            + (f"fairpool idle_timeout {cfg.idle_timeout:g} s" if cfg.idle_timeout else "no shrink")
        )
        lines.grid(alpha=0.3)
        fig.suptitle(
            f"{n} proxies, a burst of {cfg.burst}, then {cfg.concurrency} threads for "
            f"{cfg.duration:g} s"
        )
        handles, labels = bars.get_legend_handles_labels()
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]  # "even share" last
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize="small")
        rows = -(-len(labels) // 3)
        fig.tight_layout(rect=(0, 0.015 + 0.045 * rows, 1, 1))
        fig.savefig(path, format="png", dpi=100)
        if on_figure is not None:
            on_figure(fig)
    finally:
        plt.close(fig)
