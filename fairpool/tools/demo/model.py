"""What ``fairpool demo`` runs and what it finds: the policies, :class:`DemoConfig`, one policy's
:class:`PolicyResult`, the whole :class:`DemoResult` and the :class:`DemoProgress` events."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .._load import LoadProgress
from .._options import parse_choice_list

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_POLICIES",
    "POLICY_LABELS",
    "REFERENCE",
    "DemoConfig",
    "DemoInterrupted",
    "DemoProgress",
    "DemoResult",
    "PolicyResult",
    "ProgressCallback",
    "parse_policies",
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


class DemoInterrupted(Exception):
    """The run was stopped (its ``stop`` event was set) before it finished."""


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
        rules = (
            ("proxies", self.proxies >= 1, ">= 1"),
            ("burst", self.burst >= 1, ">= 1"),
            ("concurrency", self.concurrency >= 1, ">= 1"),
            ("duration", self.duration > 0, "> 0"),
            ("idle_timeout", self.idle_timeout is None or self.idle_timeout > 0, "> 0"),
            ("min_idle", self.min_idle >= 0, ">= 0"),
            ("hold", self.hold >= 0, ">= 0"),
            ("sample_interval", self.sample_interval > 0, "> 0"),
        )
        for name, valid, rule in rules:
            if not valid:
                raise ValueError(f"{name} must be {rule}")
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


@dataclass(frozen=True, kw_only=True)
class DemoProgress(LoadProgress):
    """A progress report from :func:`run_scenario` to its ``progress`` callback.

    ``phase`` is ``"start"``, ``"burst"``, ``"load"`` (repeated about ten times a second, with
    ``elapsed`` and ``ops`` so far, and every ``sample_interval`` with ``result``: the figures so
    far, read from the servers) or ``"done"`` (with the final ``result``).
    """

    policy: str
    """The policy being run."""
    result: PolicyResult | None = None
    """The figures so far (``"load"``, now and then) or the final ones (``"done"``)."""


ProgressCallback = Callable[[DemoProgress], None]
