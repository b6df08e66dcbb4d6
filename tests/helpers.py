"""Helpers shared by the tests: fake connections for the core, and probes of real servers."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fairpool.core import DIAL, PoolCore, Slot
from fairpool.servers import RedisServer

NO_RETRY = Retry(NoBackoff(), 0)
"""Client retries off: a dead connection handed to a caller shows up as an error."""


class FakeConn:
    """A connection stand-in for the I/O-free core: identity is all it needs."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)

    def __repr__(self) -> str:
        return f"C{self.id}"


def borrow(core: PoolCore[FakeConn], now: float) -> FakeConn:
    """Borrow from the core as a shell would: an idle connection, or dial a new one."""
    got = core.acquire(now)
    if got is DIAL:
        conn = FakeConn()
        core.dialled(conn, now)
        return conn
    assert isinstance(got, Slot)
    return got.conn


def dial_new(core: PoolCore[FakeConn], n: int, now: float) -> list[FakeConn]:
    """Open n new connections (held by the caller); every borrow must dial."""
    conns = []
    for _ in range(n):
        assert core.acquire(now) is DIAL
        conn = FakeConn()
        core.dialled(conn, now)
        conns.append(conn)
    return conns


def clients_on(server: RedisServer) -> int:
    """Client connections on the server, not counting the one asking."""
    with server.client() as c:
        return len(c.client_list()) - 1


def ping_calls(server: RedisServer) -> int:
    """PING commands the server has processed (its own counter, not the pool's)."""
    with server.client() as c:
        return int(c.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))


def balanced_connection_class(servers: list[RedisServer]) -> type[redis.Connection]:
    """A connection class that sends each *new* connection to the next server in turn, as an L4
    balancer in front of a proxy layer would."""
    ports = itertools.cycle([s.port for s in servers])
    lock = threading.Lock()

    class Balanced(redis.Connection):
        def __init__(self, **kwargs: Any) -> None:
            with lock:
                kwargs["port"] = next(ports)
            super().__init__(**kwargs)

    return Balanced
