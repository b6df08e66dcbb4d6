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

The modules, by concept: :mod:`.model` (the configuration, results and progress events),
:mod:`.balancer` (the L4 balancer), :mod:`.measure` (the figures read from the servers),
:mod:`.scenario` (running it), :mod:`.report` (the table and the conclusions) and :mod:`.plot`
(the PNG).
"""

from __future__ import annotations

from .balancer import BalancedConnection, RoundRobinBalancer
from .model import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_POLICIES,
    POLICY_LABELS,
    REFERENCE,
    DemoConfig,
    DemoInterrupted,
    DemoProgress,
    DemoResult,
    PolicyResult,
    ProgressCallback,
    parse_policies,
)
from .plot import PLOT_MISSING, plot_available, write_plot
from .report import render_live, render_report, render_table, summarize
from .scenario import make_pool, run_demo, run_scenario

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_POLICIES",
    "PLOT_MISSING",
    "POLICY_LABELS",
    "REFERENCE",
    "BalancedConnection",
    "DemoConfig",
    "DemoInterrupted",
    "DemoProgress",
    "DemoResult",
    "PolicyResult",
    "ProgressCallback",
    "RoundRobinBalancer",
    "make_pool",
    "parse_policies",
    "plot_available",
    "render_live",
    "render_report",
    "render_table",
    "run_demo",
    "run_scenario",
    "summarize",
    "write_plot",
]
