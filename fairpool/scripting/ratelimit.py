"""Rate limiters kept in Redis, each one O(1) Lua script: :class:`SmoothBursty` and :class:`GCRA`.

Every script takes its key in ``KEYS`` (so it works on a cluster), reads the time from the
server's ``TIME`` (so all clients share one clock), gives its state a TTL, and returns integers
(never raw Lua floats, which Redis would truncate).

* :class:`SmoothBursty` is Guava's ``RateLimiter.create(rate)``: permits at a steady ``rate``,
  up to ``rate * burst_seconds`` of them saved up while idle; each caller waits for the cost of
  the previous one (:meth:`~SmoothBursty.acquire`, :meth:`~SmoothBursty.try_acquire`,
  :meth:`~SmoothBursty.reserve`).
* :class:`GCRA` is the generic cell rate algorithm of redis-cell and go-redis' redis_rate:
  ``rate`` requests per ``period`` with bursts of ``burst``; :meth:`~GCRA.allow` answers
  without waiting.

:class:`AsyncSmoothBursty` and :class:`AsyncGCRA` are the ``redis.asyncio`` versions.
:data:`SCRIPTS` registers both scripts, to preload them (see :class:`fairpool.ScriptRegistry`).
"""

from __future__ import annotations

import asyncio
import math
import time
from importlib import resources
from typing import Any, NamedTuple

from .registry import ScriptRegistry
from .script import Script

__all__ = [
    "GCRA",
    "SCRIPTS",
    "AsyncGCRA",
    "AsyncSmoothBursty",
    "GCRAResult",
    "SmoothBursty",
]


def _lua(name: str) -> str:
    return (resources.files("fairpool.scripting") / "lua" / f"{name}.lua").read_text("utf-8")


def _load(name: str) -> Script:
    """The script of ``lua/{name}.lua``, after the lines every one starts with (``prelude.lua``)."""
    return Script(_lua("prelude") + _lua(name), name=f"fairpool.{name}")


SMOOTH_BURSTY_SCRIPT = _load("smooth_bursty")
"""The SmoothBursty script (``fairpool/scripting/lua/smooth_bursty.lua``)."""
GCRA_SCRIPT = _load("gcra")
"""The GCRA script (``fairpool/scripting/lua/gcra.lua``)."""
SCRIPTS = ScriptRegistry([SMOOTH_BURSTY_SCRIPT, GCRA_SCRIPT])
"""Both rate-limit scripts, e.g. for ``SCRIPTS.preload(client)`` or a pool's ``on_connect``."""

_MICROS = 1_000_000


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _permits(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return value


def _timeout(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(value).__name__}")
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"timeout must be >= 0 seconds, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# SmoothBursty
# --------------------------------------------------------------------------------------------


class _SmoothBurstyBase:
    """Arguments and state shared by :class:`SmoothBursty` and :class:`AsyncSmoothBursty`."""

    script = SMOOTH_BURSTY_SCRIPT

    def __init__(self, client: Any, key: str | bytes, rate: float, burst_seconds: float = 1.0):
        if isinstance(burst_seconds, bool) or not isinstance(burst_seconds, (int, float)):
            raise TypeError(f"burst_seconds must be a number, not {type(burst_seconds).__name__}")
        if not (burst_seconds >= 0 and math.isfinite(burst_seconds)):
            raise ValueError(f"burst_seconds must be a finite number >= 0, got {burst_seconds!r}")
        if not isinstance(key, (str, bytes)) or not key:
            raise ValueError(f"key must be a non-empty str or bytes, got {key!r}")
        self.client = client
        self.key = key
        self.rate = _positive("rate", rate)
        self.burst_seconds = float(burst_seconds)
        self.max_permits = self.rate * self.burst_seconds

    def __repr__(self) -> str:
        """``<SmoothBursty 'key' rate=100/s burst=1s>``."""
        return (
            f"<{type(self).__name__} {self.key!r} rate={self.rate:g}/s "
            f"burst={self.burst_seconds:g}s>"
        )

    def _args(self, permits: int, timeout_micros: int) -> tuple[float, float, int, int]:
        return self.rate, self.max_permits, permits, timeout_micros


class SmoothBursty(_SmoothBurstyBase):
    """Guava's SmoothBursty ``RateLimiter`` shared through Redis, one hash per ``key``.

    Permits are handed out at ``rate`` per second. While nobody takes them they are saved up, at
    most ``rate * burst_seconds`` of them (Guava's ``maxBurstSeconds``, 1 s by default), and
    saved permits cost no wait. A request for fresh permits is granted at once but pushes the
    next free moment forward by ``permits / rate``: the *next* caller pays for it. A new key
    starts with no saved permits, like a freshly created Guava ``RateLimiter``; the state
    expires once it is worth a full burst again plus a second, after which the limiter starts
    afresh (never granting more than Guava would).

    ``client`` is a ``redis.Redis`` (any pool, e.g. :class:`fairpool.BlockingConnectionPool`) or a
    ``RedisCluster``.

    Raises:
        ValueError: ``rate <= 0``, ``burst_seconds < 0`` or an empty key.
    """

    def reserve(self, permits: int = 1) -> float:
        """Reserve ``permits`` and return the seconds to wait before using them (no sleep).

        Raises:
            ValueError: ``permits < 1``.
        """
        micros = self.script(self.client, (self.key,), self._args(_permits("permits", permits), -1))
        return int(micros) / _MICROS

    def acquire(self, permits: int = 1) -> float:
        """Take ``permits``, sleeping as long as the limiter says; return the seconds slept.

        Raises:
            ValueError: ``permits < 1``.
        """
        wait = self.reserve(permits)
        if wait > 0:
            time.sleep(wait)
        return wait

    def try_acquire(self, permits: int = 1, timeout: float = 0.0) -> bool:
        """Take ``permits`` if they are free within ``timeout`` seconds (sleeping until then).

        Returns False, reserving nothing, when the wait would exceed ``timeout``.

        Raises:
            ValueError: ``permits < 1`` or ``timeout < 0``.
        """
        n = _permits("permits", permits)
        timeout_micros = int(_timeout(timeout) * _MICROS)
        micros = int(self.script(self.client, (self.key,), self._args(n, timeout_micros)))
        if micros < 0:
            return False
        if micros:
            time.sleep(micros / _MICROS)
        return True


class AsyncSmoothBursty(_SmoothBurstyBase):
    """:class:`SmoothBursty` for a ``redis.asyncio.Redis`` (or asyncio ``RedisCluster``).

    Same state and semantics; the methods are coroutines and wait with ``asyncio.sleep``.
    """

    async def reserve(self, permits: int = 1) -> float:
        """Reserve ``permits``; return the seconds to wait before using them (no sleep)."""
        args = self._args(_permits("permits", permits), -1)
        micros = await self.script(self.client, (self.key,), args)
        return int(micros) / _MICROS

    async def acquire(self, permits: int = 1) -> float:
        """Take ``permits``, sleeping as long as the limiter says; return the seconds slept."""
        wait = await self.reserve(permits)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    async def try_acquire(self, permits: int = 1, timeout: float = 0.0) -> bool:
        """Take ``permits`` if free within ``timeout`` seconds; False (nothing reserved) if not."""
        n = _permits("permits", permits)
        timeout_micros = int(_timeout(timeout) * _MICROS)
        micros = int(await self.script(self.client, (self.key,), self._args(n, timeout_micros)))
        if micros < 0:
            return False
        if micros:
            await asyncio.sleep(micros / _MICROS)
        return True


# --------------------------------------------------------------------------------------------
# GCRA
# --------------------------------------------------------------------------------------------


class GCRAResult(NamedTuple):
    """What :meth:`GCRA.allow` answers."""

    allowed: int
    """How many requests were allowed: ``n``, or 0 when refused (so it is truthy if allowed)."""
    remaining: int
    """How many more requests would be allowed right now."""
    retry_after: float
    """Seconds until this request would be allowed (0.0 when it was)."""
    reset_after: float
    """Seconds until the limiter is back to a full burst."""


class _GCRABase:
    """Arguments shared by :class:`GCRA` and :class:`AsyncGCRA`."""

    script = GCRA_SCRIPT

    def __init__(self, client: Any, key: str | bytes, rate: float, period: float, burst: int):
        if not isinstance(key, (str, bytes)) or not key:
            raise ValueError(f"key must be a non-empty str or bytes, got {key!r}")
        self.client = client
        self.key = key
        self.rate = _positive("rate", rate)
        self.period = _positive("period", period)
        self.burst = _permits("burst", burst)
        self.emission_micros = self.period * _MICROS / self.rate

    def __repr__(self) -> str:
        """``<GCRA 'key' 10/1s burst=5>``."""
        name = type(self).__name__
        return f"<{name} {self.key!r} {self.rate:g}/{self.period:g}s burst={self.burst}>"

    def _args(self, n: int) -> tuple[float, int, int]:
        n = _permits("n", n)
        if n > self.burst:
            raise ValueError(f"n must be <= burst ({self.burst}), got {n}: it could never pass")
        return self.emission_micros, self.burst, n

    @staticmethod
    def _result(reply: Any) -> GCRAResult:
        allowed, remaining, retry, reset = (int(x) for x in reply)
        return GCRAResult(allowed, remaining, retry / _MICROS, reset / _MICROS)


class GCRA(_GCRABase):
    """GCRA limiter: ``rate`` requests per ``period`` seconds, bursts of up to ``burst``.

    One Redis string per ``key`` holds the theoretical arrival time; it is written only when a
    request is allowed, with an expiry at the moment the limiter is full again. ``client`` is a
    ``redis.Redis`` or a ``RedisCluster``.

    Raises:
        ValueError: ``rate <= 0``, ``period <= 0``, ``burst < 1`` or an empty key.
    """

    def allow(self, n: int = 1) -> GCRAResult:
        """Try to take ``n`` requests now; never waits.

        Raises:
            ValueError: ``n < 1`` or ``n > burst``.
        """
        return self._result(self.script(self.client, (self.key,), self._args(n)))


class AsyncGCRA(_GCRABase):
    """:class:`GCRA` for a ``redis.asyncio.Redis`` (or asyncio ``RedisCluster``)."""

    async def allow(self, n: int = 1) -> GCRAResult:
        """Try to take ``n`` requests now; never waits."""
        return self._result(await self.script(self.client, (self.key,), self._args(n)))
