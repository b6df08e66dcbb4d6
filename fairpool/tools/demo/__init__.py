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

from . import balancer, model, plot, report, scenario
from .balancer import *  # noqa: F403
from .model import *  # noqa: F403
from .plot import *  # noqa: F403
from .report import *  # noqa: F403
from .scenario import *  # noqa: F403

__all__ = balancer.__all__ + model.__all__ + plot.__all__ + report.__all__ + scenario.__all__
