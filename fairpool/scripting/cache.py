"""What fairpool knows about each server: the script SHAs it has loaded, whether it is Redis 7+.

A :class:`ServerInfo` is shared by every client whose pool talks to one host/port (or socket path);
a cluster gets one for all its nodes. Pure bookkeeping: no I/O. Imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Hashable
from typing import Any

__all__ = [
    "ServerInfo",
    "forget_servers",
    "learn_generation",
    "server_at",
    "server_for_client",
    "server_for_cluster",
    "server_for_connection",
    "server_for_pool",
]


class ServerInfo:
    """Per-server knowledge: which script SHAs are loaded, and whether it is Redis 7+."""

    __slots__ = ("__weakref__", "loaded", "modern")

    def __init__(self) -> None:
        """Nothing known yet."""
        self.loaded: set[str] = set()
        # True: Redis 7+ (EVALSHA_RO, shebangs). False: older. None: not known yet.
        self.modern: bool | None = None


_servers: dict[Hashable, ServerInfo] = {}
_servers_lock = threading.Lock()
_by_owner: weakref.WeakKeyDictionary[Any, ServerInfo] = weakref.WeakKeyDictionary()


def server_at(address: Hashable) -> ServerInfo:
    """The :class:`ServerInfo` of an address (``(host, port)`` or ``("unix", path)``)."""
    server = _servers.get(address)
    if server is None:
        with _servers_lock:
            server = _servers.setdefault(address, ServerInfo())
    return server


def _address_of_kwargs(kwargs: Any) -> Hashable | None:
    if not isinstance(kwargs, dict):
        return None
    path = kwargs.get("path")
    if path:
        return ("unix", str(path))
    return (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))


def server_for_connection(connection: Any) -> ServerInfo:
    """The :class:`ServerInfo` of the server a redis-py ``Connection`` talks to."""
    path = getattr(connection, "path", None)
    if path:
        return server_at(("unix", str(path)))
    host = getattr(connection, "host", None)
    port = getattr(connection, "port", None)
    if host is None or port is None:
        return server_at(("connection", id(connection)))
    return server_at((str(host), int(port)))


def server_for_pool(pool: Any) -> ServerInfo:
    """The :class:`ServerInfo` a pool talks to, keyed by its host/port (or socket path)."""
    try:
        return _by_owner[pool]
    except (KeyError, TypeError):
        pass
    address = _address_of_kwargs(getattr(pool, "connection_kwargs", None))
    server = server_at(address if address is not None else ("pool", id(pool)))
    with contextlib.suppress(TypeError):  # not weak-referenceable: look it up each time
        _by_owner[pool] = server
    return server


def server_for_client(client: Any) -> ServerInfo:
    """The :class:`ServerInfo` of a client's pool (a fresh one for a client without a pool)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        return ServerInfo()
    return server_for_pool(pool)


def server_for_cluster(cluster: Any) -> ServerInfo:
    """A cluster's nodes are assumed to share one Redis generation: one :class:`ServerInfo`."""
    try:
        return _by_owner[cluster]
    except (KeyError, TypeError):
        pass
    server = ServerInfo()
    with contextlib.suppress(TypeError):
        _by_owner[cluster] = server
    return server


def forget_servers() -> None:
    """Forget everything learned about servers (loaded scripts, versions). For tests."""
    with _servers_lock:
        for server in _servers.values():
            server.loaded.clear()
            server.modern = None
        _servers.clear()
    _by_owner.clear()


def learn_generation(server: ServerInfo, info: Any) -> None:
    """Set ``server.modern`` from an ``INFO server`` reply (a dict or the raw text)."""
    version: str | None = None
    if isinstance(info, dict):
        version = str(info.get("redis_version", "")) or None
    elif isinstance(info, (bytes, str)):
        text = info.decode("utf-8", "replace") if isinstance(info, bytes) else info
        m = re.search(r"^redis_version:(\S+)", text, re.M)
        version = m.group(1) if m else None
    if version:
        with contextlib.suppress(ValueError):
            server.modern = int(version.split(".")[0]) >= 7
