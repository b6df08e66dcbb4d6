"""What the installed redis-py (5.0 through 8.x) offers, detected once at import.

fairpool supports every redis-py from 5.0 to 8.x. Features arrived over those releases
(docs/migrating.md has the table); each is detected here by importing it or by looking at a
signature, never by comparing version strings, and the shells (``pool.py``, ``asyncio.py``,
``sentinel.py``) read the result from this one module. Where the installed redis-py lacks a
feature, fairpool lacks it too: the stand-ins below make the code paths that would use it inert.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from typing import TYPE_CHECKING, Any

__all__ = [
    "ASYNC_SHOULD_RECONNECT",
    "DRIVER_KEYS",
    "ERRORS_TAKE_STATUS_CODE",
    "HAS_CACHING",
    "HAS_DRIVER_INFO",
    "HAS_EVENTS",
    "HAS_MAINT_NOTIFICATIONS",
    "HAS_OBSERVABILITY",
    "SYNC_SHOULD_RECONNECT",
    "AfterConnectionReleasedEvent",
    "AsyncAfterConnectionReleasedEvent",
    "AsyncReAuthConnectionListener",
    "CacheProxyConnection",
    "ConnectionState",
    "ReAuthConnectionListener",
    "arecorder",
    "async_can_read",
    "borrow_args",
    "driver_info_of",
    "get_connection_args_deprecated",
    "get_pool_name",
    "maint_notifications_enabled",
    "pool_init_kwargs",
    "recorder",
    "run_close_hooks",
]


class _Absent:
    """Stands in for a redis-py class the installed version does not have: nothing is an
    instance of it, and it is never instantiated."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this redis-py feature is not available in the installed version")


# --- events: streaming credential re-auth on release (redis-py 5.1+) ---------------------------
if TYPE_CHECKING:  # typed as in the newest redis-py
    from redis.event import (
        AfterConnectionReleasedEvent,
        AsyncAfterConnectionReleasedEvent,
        AsyncReAuthConnectionListener,
        ReAuthConnectionListener,
    )

    HAS_EVENTS: bool
else:
    try:
        from redis.event import (
            AfterConnectionReleasedEvent,
            AsyncAfterConnectionReleasedEvent,
            AsyncReAuthConnectionListener,
            ReAuthConnectionListener,
        )

        HAS_EVENTS = True
    except ImportError:  # redis-py 5.0
        AfterConnectionReleasedEvent = ReAuthConnectionListener = _Absent
        AsyncAfterConnectionReleasedEvent = AsyncReAuthConnectionListener = _Absent
        HAS_EVENTS = False

# --- client-side caching (redis-py 5.1+) -----------------------------------------------------
if TYPE_CHECKING:
    from redis.connection import CacheProxyConnection

    HAS_CACHING: bool
else:
    try:
        from redis.connection import CacheProxyConnection

        HAS_CACHING = True
    except ImportError:  # redis-py 5.0: no connection is ever a caching proxy
        CacheProxyConnection = _Absent
        HAS_CACHING = False


# --- OpenTelemetry metrics (redis-py 7.x+) ---------------------------------------------------
class _OffRecorder:
    """redis-py's recorder module when the installed redis-py has none: never a collector."""

    _metrics_collector: Any = None
    _async_metrics_collector: Any = None

    @staticmethod
    def _get_or_create_collector() -> Any:
        return None


recorder: Any
arecorder: Any
ConnectionState: Any
get_pool_name: Any
try:
    from redis.asyncio.observability import recorder as arecorder
    from redis.observability import recorder
    from redis.observability.attributes import ConnectionState, get_pool_name

    HAS_OBSERVABILITY = True
except ImportError:  # redis-py < 7.x: fairpool reports no gauges either
    recorder = arecorder = _OffRecorder()
    ConnectionState = get_pool_name = None
    HAS_OBSERVABILITY = False

# --- maintenance notifications (redis-py 7.x+) -----------------------------------------------
try:
    import redis.maint_notifications  # noqa: F401

    HAS_MAINT_NOTIFICATIONS = True
except ImportError:
    HAS_MAINT_NOTIFICATIONS = False


def maint_notifications_enabled(pool: Any) -> bool:
    """Whether ``pool`` receives maintenance notifications (push messages that may be pending on
    an idle connection); ``False`` where redis-py has no such feature."""
    enabled = getattr(pool, "maint_notifications_enabled", None)
    return bool(enabled()) if enabled is not None else False


# --- CLIENT SETINFO's driver info (redis-py 8.x) -----------------------------------------------
try:
    from redis.driver_info import DriverInfo as _DriverInfo
except ImportError:  # redis-py before 8: the library name and version are plain arguments
    _DriverInfo = None  # type: ignore[assignment,misc]

HAS_DRIVER_INFO = _DriverInfo is not None
"""Whether connections take ``driver_info=`` (redis-py 8.x)."""

DRIVER_KEYS = frozenset(("driver_info", "lib_name", "lib_version"))
"""Connection arguments that choose the driver info a connection sends (``CLIENT SETINFO``)."""


_TAKES_DRIVER_INFO: dict[type, bool] = {}


def _takes_driver_info(cls: type) -> bool:
    takes = _TAKES_DRIVER_INFO.get(cls)
    if takes is None:
        try:
            params = inspect.signature(cls).parameters.values()
            takes = any(p.name == "driver_info" or p.kind is p.VAR_KEYWORD for p in params)
        except (TypeError, ValueError):  # no signature to read: pass it nothing new
            takes = False
        _TAKES_DRIVER_INFO[cls] = takes
    return takes


def driver_info_of(conn: Any) -> Any:
    """The ``DriverInfo`` that ``conn`` resolved for itself, if its class takes a
    ``driver_info=`` argument (redis-py 8.x), else ``None``. redis-py 8.x resolves it in every
    connection's constructor with ``importlib.metadata`` (about 0.6 ms of CPU, mostly under the
    GIL): the pools reuse a copy of the first one (see ``PoolShell.make_connection``)."""
    if _DriverInfo is None:
        return None
    info = getattr(conn, "driver_info", None)
    if not isinstance(info, _DriverInfo) or not _takes_driver_info(type(conn)):
        return None
    return info


# --- constructor and get_connection() signatures ---------------------------------------------
@cache
def _init_parameters(base_init: Any) -> frozenset[str]:
    return frozenset(inspect.signature(base_init).parameters)


def pool_init_kwargs(base: type, **optional: Any) -> dict[str, Any]:
    """Of redis-py's optional pool constructor arguments (``cache_factory``,
    ``maint_notifications_config``), those to pass to ``base.__init__``: all that this redis-py
    version's ``base`` accepts, and the others only when set (they then reach the connections, as
    with redis-py's own pool, which rejects them the same way)."""
    params = _init_parameters(base.__init__)  # type: ignore[misc]
    return {k: v for k, v in optional.items() if k in params or v is not None}


@cache
def get_connection_args_deprecated(base: type) -> bool:
    """Whether ``base.get_connection()``'s arguments are optional (redis-py 5.1+ deprecates them
    and its clients pass none); redis-py 5.0's clients always pass the command name."""
    param = inspect.signature(base.get_connection).parameters.get("command_name")  # type: ignore[attr-defined]
    return param is None or param.default is not inspect.Parameter.empty


# --- connections asking to be reconnected on release (redis-py 7.x+, maintenance) ------------
def _has_method(cls_path: str, name: str) -> bool:
    module, _, cls = cls_path.rpartition(".")
    return hasattr(getattr(importlib.import_module(module), cls), name)


SYNC_SHOULD_RECONNECT = _has_method("redis.connection.Connection", "should_reconnect")
"""Whether sync connections have ``should_reconnect()`` (else none ever asks to reconnect)."""
ASYNC_SHOULD_RECONNECT = _has_method("redis.asyncio.connection.Connection", "should_reconnect")
"""Whether asyncio connections have ``should_reconnect()``."""


async def async_can_read(conn: Any) -> bool:
    """Whether an asyncio connection has data pending. redis.asyncio before 8.x has only
    ``can_read_destructive()``, which consumes it: fine for the borrow check, which then discards
    the connection unless push messages are expected (a feature of the versions with
    ``can_read()``)."""
    can_read = getattr(conn, "can_read", None)
    if can_read is None:
        can_read = conn.can_read_destructive
    return bool(await can_read())


def _errors_take_status_code() -> bool:
    from redis.exceptions import RedisError

    try:
        return "status_code" in inspect.signature(RedisError.__init__).parameters
    except (TypeError, ValueError):  # a C slot without a signature: Exception's own __init__
        return False


ERRORS_TAKE_STATUS_CODE = _errors_take_status_code()
"""Whether redis-py's exceptions take ``status_code=`` (redis-py 8.x; before, they take none)."""


async def run_close_hooks(pool: Any) -> None:
    """Run redis.asyncio's pool close hooks (``_on_close``: cancels maintenance-notification
    tasks) where this redis-py has them (8.x)."""
    hook = getattr(pool, "_on_close", None)
    if hook is not None:
        await hook()


def borrow_args(pool: Any) -> tuple[str, ...]:
    """Arguments for calling ``pool.get_connection()`` directly on any pool: none, except for
    redis-py 5.0's own pools, which require a command name (later versions deprecate it)."""
    return () if get_connection_args_deprecated(pool.__class__) else ("_",)
