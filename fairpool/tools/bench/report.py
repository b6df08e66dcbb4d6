"""Presenting a ``fairpool bench`` run: the table in the demo's style, and its notes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import AUTO, REFERENCE
from .results import BenchResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = ["render_report", "render_table"]


def _pinning_note(result: BenchResult) -> str:
    cpu = result.pinned_cpu
    cfg = result.config
    if cpu is None:
        if cfg.cpu is None:
            return "Not pinned to a CPU (--cpu none)."
        return "Not pinned to a CPU: this platform has no os.sched_setaffinity."
    who = "Client and server" if result.server_pinned else "Client (not the --url server)"
    how = "by default; --cpu none turns it off" if cfg.cpu == AUTO else "--cpu"
    return f"{who} pinned to CPU {cpu} ({how}), as the benchmark suite does."


def _ratio_cell(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    style = "green" if ratio >= 0.97 else ("yellow" if ratio >= 0.9 else "red")
    return f"[{style}]{ratio:.2f}x[/{style}]"


def render_table(result: BenchResult) -> Table:
    """A rich table in the demo's style, one row per thread count and pool kind: median ops/s,
    the median ratio to redis-py's ``ConnectionPool`` (same repeat) with its range over the
    repeats, and the median p50 / p99 latency."""
    from ..display import table as new_table

    table = new_table(
        ("threads", "right"),
        ("pool", "left"),
        ("ops/s", "right"),
        ("vs redis-py", "right"),
        ("range", "right"),
        ("p50 µs", "right"),
        ("p99 µs", "right"),
    )
    previous: int | None = None
    for s in result.summary():
        if previous is not None and s.threads != previous:
            table.add_section()
        spread = (
            f"{s.ratio_min:.2f}-{s.ratio_max:.2f}"
            if s.ratio_min is not None
            and s.ratio_max is not None
            and s.repeats > 1
            and s.pool != REFERENCE
            else ""
        )
        table.add_row(
            str(s.threads) if s.threads != previous else "",
            s.pool,
            f"{s.ops_per_sec:,.0f}",
            _ratio_cell(s.ratio),
            spread,
            f"{s.p50_us:,.0f}",
            f"[red]{s.p99_us:,.0f}*[/red]" if s.errors else f"{s.p99_us:,.0f}",
        )
        previous = s.threads
    return table


def render_report(result: BenchResult) -> RenderableType:
    """The whole ``fairpool bench`` output: title, :func:`render_table` and notes, each paragraph
    wrapped at the console's width."""
    from ..display import report

    cfg = result.config
    title = (
        f"fairpool bench: PING through redis.Redis, {cfg.repeats} interleaved repeat"
        f"{'s' if cfg.repeats != 1 else ''} of {cfg.duration:g} s per pool and thread count; "
        f"server {result.server} (v{result.server_version})"
    )
    notes = [
        _pinning_note(result),
        "ops/s, p50, p99: medians over the repeats. vs redis-py: throughput ÷ redis-py's "
        "ConnectionPool measured in the same repeat, median; range: lowest to highest over the "
        "repeats (a range that spans 1.00x shows no difference that this run can measure). "
        "redis-py-blocking is redis-py's BlockingConnectionPool; lifo, fifo and round_robin "
        "are fairpool.ConnectionPool's policies.",
    ]
    failed = [f"{s.pool} x {s.threads}: {s.errors}" for s in result.summary() if s.errors]
    if failed:
        notes.append("* Calls that raised (each stops its thread): " + ", ".join(failed) + ".")
    return report(title, render_table(result), notes)
