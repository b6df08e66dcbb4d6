"""Presenting a ``fairpool demo`` run: the table (final and live) and the conclusions in words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .model import REFERENCE, DemoConfig, DemoResult, PolicyResult

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

__all__ = ["SPARK_WIDTH", "render_live", "render_report", "render_table", "summarize"]


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
    from ..display import sparkline
    from ..display import table as new_table

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
    from ..display import report

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
    from ..display import report

    return report(
        _title(result.config, len(result.proxies)),
        render_table(result, running, pending),
        [status],
    )
