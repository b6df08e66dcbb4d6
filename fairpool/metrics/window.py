"""The pool's timings and the windowed counters of ``stats(reset=True)``.

A pool's core owns one :class:`Timings`: the wait, hold and dial histograms, and the start of the
current *window*. ``PoolCore.stats(now, reset)`` (what the pools' ``stats(reset=False)`` returns)
is the core's snapshot with the histograms and a :class:`StatsWindow` — every counter since the
window started, and the largest wait / hold / dial in it. ``reset=True`` then starts a new
window, so a scraper that resets on every scrape gets rates and per-window maxima, while the
snapshot's own fields stay all-time totals (a second scraper that never resets is not disturbed
by the first one's rates, but it does lose the window's maxima; use one resetting reader per
pool).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .histogram import Histogram, HistogramSnapshot

__all__ = ["WINDOW_COUNTERS", "StatsWindow", "Timings"]

WINDOW_COUNTERS = (
    "borrows",
    "hits",
    "misses",
    "waits",
    "timeouts",
    "reborrows",
    "created",
    "leaks",
    "sheds",
    "drains",
)
"""The :class:`~fairpool.stats.PoolStats` counters a :class:`StatsWindow` counts afresh."""

_EMPTY = HistogramSnapshot()


@dataclass(frozen=True)
class StatsWindow:
    """What happened since the window started (the pool was made, or the last
    ``stats(reset=True)``): the counters of :data:`WINDOW_COUNTERS`, closes by reason, and the
    wait / hold / dial histograms of the window (their ``max`` is the window's largest value).
    """

    seconds: float = 0.0
    borrows: int = 0
    hits: int = 0
    misses: int = 0
    waits: int = 0
    timeouts: int = 0
    reborrows: int = 0
    created: int = 0
    leaks: int = 0
    sheds: int = 0
    drains: int = 0
    closed: Mapping[str, int] = field(default_factory=dict)
    wait_histogram: HistogramSnapshot = _EMPTY
    hold_histogram: HistogramSnapshot = _EMPTY
    dial_histogram: HistogramSnapshot = _EMPTY

    @property
    def wait_time_total(self) -> float:
        """Seconds waited in the window (by the waits it counts)."""
        return self.wait_histogram.sum

    @property
    def wait_time_max(self) -> float:
        """The longest wait in the window."""
        return self.wait_histogram.max

    @property
    def hold_time_max(self) -> float:
        """The longest hold (borrow to release) that ended in the window."""
        return self.hold_histogram.max

    @property
    def dial_time_max(self) -> float:
        """The longest dial in the window."""
        return self.dial_histogram.max

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready ``dict``."""
        d: dict[str, Any] = {name: getattr(self, name) for name in WINDOW_COUNTERS}
        d["seconds"] = self.seconds
        d["closed"] = dict(self.closed)
        for name in ("wait", "hold", "dial"):
            d[f"{name}_histogram"] = getattr(self, f"{name}_histogram").as_dict()
        return d


class Timings:
    """The histograms of one pool and the start of its current window. Every one is recorded
    under the pool lock (I/O-free: no lock of its own): ``wait`` and ``hold`` by the core,
    ``dial`` by the shells through :meth:`observe_dial` when they report a dialled connection.
    """

    __slots__ = ("_base", "_since", "dial", "hold", "wait")

    def __init__(self, now: float) -> None:
        self.wait = Histogram()
        self.hold = Histogram()
        self.dial = Histogram()
        self._since = now
        self._base: tuple[dict[str, int], dict[str, int], tuple[HistogramSnapshot, ...]] = (
            {},
            {},
            (_EMPTY, _EMPTY, _EMPTY),
        )

    def observe_dial(self, seconds: float) -> None:
        """A dial (make and connect one connection) took ``seconds``."""
        self.dial.observe(seconds)

    def snapshots(self, window: bool = False) -> tuple[HistogramSnapshot, ...]:
        """Wait, hold and dial snapshots (``window``: with the window's maxima)."""
        return tuple(h.snapshot(window) for h in (self.wait, self.hold, self.dial))

    def window(self, stats: Any, now: float, reset: bool) -> StatsWindow:
        """The window ending ``now`` of a pool whose all-time snapshot is ``stats``; with
        ``reset``, a new window starts now."""
        counters, closed, hists = self._base
        current = self.snapshots(window=True)
        win = StatsWindow(
            now - self._since,
            **{name: getattr(stats, name) - counters.get(name, 0) for name in WINDOW_COUNTERS},
            closed={reason: n - closed.get(reason, 0) for reason, n in stats.closed.items()},
            wait_histogram=current[0].minus(hists[0], current[0].max),
            hold_histogram=current[1].minus(hists[1], current[1].max),
            dial_histogram=current[2].minus(hists[2], current[2].max),
        )
        if reset:
            self._since = now
            self._base = (
                {name: getattr(stats, name) for name in WINDOW_COUNTERS},
                dict(stats.closed),
                current,
            )
            for h in (self.wait, self.hold, self.dial):
                h.window_max = 0.0
        return win

    def added_to(self, stats: Any, now: float, reset: bool = False) -> Any:
        """``stats`` (a :class:`~fairpool.stats.PoolStats`, the core's all-time snapshot) with the
        histograms and the window ending ``now``; with ``reset``, a new window starts now."""
        wait, hold, dial = self.snapshots()
        return replace(
            stats,
            wait_histogram=wait,
            hold_histogram=hold,
            dial_histogram=dial,
            window=self.window(stats, now, reset),
        )
