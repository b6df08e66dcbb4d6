"""What ``fairpool bench`` measures: the pool kinds, the thread counts and :class:`BenchConfig`."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .._options import parse_choice_list

__all__ = [
    "AUTO",
    "POOL_KINDS",
    "POOL_LABELS",
    "REFERENCE",
    "BenchConfig",
    "BenchInterrupted",
    "default_cpu",
    "parse_pools",
    "parse_threads",
]

POOL_KINDS: tuple[str, ...] = ("lifo", "fifo", "round_robin", "redis-py", "redis-py-blocking")
"""The pools ``fairpool bench`` compares by default."""

POOL_LABELS: dict[str, str] = {
    "lifo": "fairpool lifo",
    "fifo": "fairpool fifo",
    "round_robin": "fairpool round_robin",
    "redis-py": "redis-py ConnectionPool",
    "redis-py-blocking": "redis-py BlockingConnectionPool",
}
"""Human-readable name of each pool kind."""

REFERENCE = "redis-py"
"""The pool the others are compared with in the table."""


class BenchInterrupted(Exception):
    """The run was stopped (its ``stop`` event was set) before it finished."""


def parse_threads(text: str | Iterable[int]) -> tuple[int, ...]:
    """Parse ``"1,8,64"`` into positive thread counts (order kept, duplicates dropped)."""
    items: list[Any] = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        if isinstance(item, str):
            item = item.strip()
            if not item:
                continue
            try:
                n = int(item)
            except ValueError:
                raise ValueError(f"thread count {item!r} is not an integer") from None
        else:
            n = int(item)
        if n < 1:
            raise ValueError(f"thread count must be >= 1; got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise ValueError("no thread count given")
    return tuple(out)


def parse_pools(text: str | Iterable[str]) -> tuple[str, ...]:
    """Parse ``"fifo,redis-py"`` into validated pool kinds (see :data:`POOL_KINDS`)."""
    aliases = {k: k for k in POOL_KINDS}
    aliases.update(
        {
            "round-robin": "round_robin",
            "rr": "round_robin",
            "redis_py": "redis-py",
            "redis": "redis-py",
            "redis_py_blocking": "redis-py-blocking",
            "blocking": "redis-py-blocking",
        }
    )
    return parse_choice_list(text, aliases, POOL_KINDS, what="pool")


AUTO = "auto"
"""``BenchConfig.cpu`` default: pin to :func:`default_cpu` where the platform allows."""


def default_cpu() -> int | None:
    """The CPU ``fairpool bench`` pins to by default: the lowest one this process may run on
    (``None`` where ``os.sched_setaffinity`` does not exist, e.g. macOS and Windows)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0] if cpus else None


@dataclass(frozen=True)
class BenchConfig:
    """Parameters of ``fairpool bench``."""

    threads: tuple[int, ...] = (1, 8, 64)
    """Thread counts to measure."""
    duration: float = 1.0
    """Seconds per measurement."""
    pools: tuple[str, ...] = POOL_KINDS
    """Pool kinds to compare (see :data:`POOL_KINDS`)."""
    url: str | None = None
    """Server to use; ``None`` starts an embedded ``redis-server``."""
    max_connections: int | None = None
    """Cap given to every pool; ``None`` = one connection per thread (nobody waits)."""
    cpu: int | str | None = AUTO
    """Pin this process (and the embedded server) to this CPU (Linux), for steadier figures:
    ``"auto"`` (default) = :func:`default_cpu`, ``None`` = no pinning."""
    repeats: int = 3
    """Interleaved repeats of every measurement (median and range are reported)."""

    def __post_init__(self) -> None:
        """Validate and normalise."""
        object.__setattr__(self, "threads", parse_threads(self.threads))
        object.__setattr__(self, "pools", parse_pools(self.pools))
        if not self.duration > 0:
            raise ValueError("duration must be > 0")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1; got {self.repeats}")
        if isinstance(self.cpu, str) and self.cpu != AUTO:
            raise ValueError(f"cpu must be a CPU number, {AUTO!r} or None; got {self.cpu!r}")
        if isinstance(self.cpu, int):
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("cpu pinning needs os.sched_setaffinity (Linux)")
            if self.cpu not in os.sched_getaffinity(0):
                raise ValueError(
                    f"cpu {self.cpu} is not available; choose from "
                    f"{sorted(os.sched_getaffinity(0))}"
                )

    @property
    def pinned_cpu(self) -> int | None:
        """The CPU the run is pinned to (``None``: not pinned)."""
        return default_cpu() if self.cpu == AUTO else self.cpu  # type: ignore[return-value]

    def cap(self, threads: int) -> int:
        """The pools' ``max_connections`` for a run with ``threads`` threads."""
        return self.max_connections if self.max_connections is not None else threads
