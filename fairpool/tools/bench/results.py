"""The measurements of ``fairpool bench`` and their statistics: one :class:`BenchRow` per
measurement, a :class:`BenchSummary` (medians and ranges) per pool kind and thread count over the
repeats, all of a run in a :class:`BenchResult`."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .._load import LoadProgress
from ..display import mask_url
from .config import POOL_LABELS, REFERENCE, BenchConfig

__all__ = ["BenchProgress", "BenchResult", "BenchRow", "BenchSummary", "percentile"]


@dataclass(frozen=True)
class BenchRow:
    """One measurement: one pool kind at one thread count."""

    pool: str
    label: str
    threads: int
    max_connections: int
    ops: int
    seconds: float
    ops_per_sec: float
    p50_us: float
    p99_us: float
    max_us: float
    errors: int
    """Calls that raised (counted, not retried; the thread stops at its first error)."""
    pool_stats: dict[str, Any] | None = None
    """``pool.stats().as_dict()`` afterwards (fairpool pools only)."""
    repeat: int = 0
    """Which repeat (0-based) this measurement belongs to."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class BenchSummary:
    """One pool kind at one thread count over all repeats: medians and ranges."""

    pool: str
    label: str
    threads: int
    repeats: int
    ops_per_sec: float
    """Median ops/s over the repeats."""
    ops_per_sec_min: float
    ops_per_sec_max: float
    ratio: float | None
    """Median over the repeats of ops/s ÷ redis-py's ``ConnectionPool`` in the same repeat
    (``None`` when redis-py's pool was not measured)."""
    ratio_min: float | None
    ratio_max: float | None
    p50_us: float
    """Median over the repeats of the p50 latency."""
    p99_us: float
    """Median over the repeats of the p99 latency."""
    max_us: float
    """Highest latency seen in any repeat."""
    errors: int
    """Errors over all repeats."""

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass
class BenchResult:
    """All measurements of a ``fairpool bench`` run."""

    config: BenchConfig
    server: str
    """``host:port`` of the server."""
    server_version: str
    rows: list[BenchRow] = field(default_factory=list)
    pinned_cpu: int | None = None
    """The CPU the client (and the embedded server) ran on; ``None``: not pinned."""
    server_pinned: bool = False
    """Whether the server was pinned too (only an embedded one can be)."""

    def row(self, pool: str, threads: int, repeat: int = 0) -> BenchRow:
        """The measurement of ``pool`` at ``threads`` threads in ``repeat`` (``KeyError`` if
        absent)."""
        for r in self.rows:
            if r.pool == pool and r.threads == threads and r.repeat == repeat:
                return r
        raise KeyError((pool, threads, repeat))

    def summary(self) -> list[BenchSummary]:
        """Median and range over the repeats, per thread count and pool kind (config order)."""
        out = []
        for threads in self.config.threads:
            for kind in self.config.pools:
                rows = [r for r in self.rows if r.pool == kind and r.threads == threads]
                if not rows:
                    continue
                ratios = []
                for r in rows:
                    ref = next(
                        (
                            x
                            for x in self.rows
                            if x.pool == REFERENCE and x.threads == threads and x.repeat == r.repeat
                        ),
                        None,
                    )
                    if ref is not None and ref.ops_per_sec > 0:
                        ratios.append(r.ops_per_sec / ref.ops_per_sec)
                ops = [r.ops_per_sec for r in rows]
                out.append(
                    BenchSummary(
                        pool=kind,
                        label=POOL_LABELS[kind],
                        threads=threads,
                        repeats=len(rows),
                        ops_per_sec=statistics.median(ops),
                        ops_per_sec_min=min(ops),
                        ops_per_sec_max=max(ops),
                        ratio=statistics.median(ratios) if ratios else None,
                        ratio_min=min(ratios) if ratios else None,
                        ratio_max=max(ratios) if ratios else None,
                        p50_us=statistics.median(r.p50_us for r in rows),
                        p99_us=statistics.median(r.p99_us for r in rows),
                        max_us=max(r.max_us for r in rows),
                        errors=sum(r.errors for r in rows),
                    )
                )
        return out

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``fairpool bench --json`` output); a password in the URL is
        masked."""
        cfg = asdict(self.config)
        cfg["threads"] = list(self.config.threads)
        cfg["pools"] = list(self.config.pools)
        cfg["url"] = mask_url(self.config.url) if self.config.url else None
        return {
            "config": cfg,
            "server": {"address": self.server, "version": self.server_version},
            "pinning": {"cpu": self.pinned_cpu, "server_pinned": self.server_pinned},
            "summary": [s.as_dict() for s in self.summary()],
            "results": [r.as_dict() for r in self.rows],
        }


@dataclass(frozen=True, kw_only=True)
class BenchProgress(LoadProgress):
    """A progress report to :func:`run_bench`'s callback: ``phase`` is ``"start"``, ``"run"``
    (about ten times a second, with ``elapsed`` and ``ops``) or ``"done"`` (with ``row``).
    ``index`` counts the measurements from 0 up to ``count``."""

    pool: str
    """The pool kind being measured."""
    threads: int
    """Its thread count."""
    row: BenchRow | None = None
    """The measurement (``"done"``)."""
    repeat: int = 0
    """Which repeat (0-based)."""
    index: int = 0
    count: int = 0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, by the nearest-rank method."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[k])
