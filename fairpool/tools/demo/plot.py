"""The PNG of ``fairpool demo --plot`` (matplotlib: the ``plot`` extra, imported when used)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from .model import DemoResult

__all__ = ["PLOT_MISSING", "plot_available", "write_plot"]


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
