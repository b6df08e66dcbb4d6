"""Free TCP ports on 127.0.0.1 for test servers: never 6379, never twice in one process."""

from __future__ import annotations

import random
import socket
import threading

__all__ = ["free_port", "free_port_pair_for_cluster"]

HOST = "127.0.0.1"
"""The only address the servers listen on."""

DEFAULT_REDIS_PORT = 6379
# Never hand out the default port, nor the cluster bus port of a server on it.
_AVOID_PORTS = frozenset({DEFAULT_REDIS_PORT, DEFAULT_REDIS_PORT + 10000})
_CLUSTER_BUS_OFFSET = 10000
_LOW_PORT = 10000

# Ports handed out by this process, so that servers created before any of them has started do
# not get the same port. Never released: there are tens of thousands to choose from.
_RESERVED_PORTS: set[int] = set()
_PORTS_LOCK = threading.Lock()
# Not the global `random`: hypothesis (and tests) reseed it, which would make every pytest-xdist
# worker try the same ports in the same order.
_RNG = random.SystemRandom()


def _ephemeral_port_range() -> tuple[int, int] | None:
    """The kernel's range for outgoing connections' local ports (Linux), or None."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low, high = (int(part) for part in fh.read().split())
    except (OSError, ValueError):
        return None
    return low, high


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _usable(port: int, span: int) -> bool:
    ports = (port, port + span) if span else (port,)
    return (
        port >= 1024
        and port + span <= 65535
        and not any(p in _AVOID_PORTS or p in _RESERVED_PORTS for p in ports)
        and all(_port_is_free(p) for p in ports)
    )


def _pick_port(span: int) -> int:
    """Pick and reserve a port p such that p (and p + span if span) are free on 127.0.0.1.

    Ports are preferably taken below the kernel's ephemeral range: ports in that range are also
    handed to outgoing client connections, and a test suite that opens thousands of connections
    could take a server's port while it is down for a restart.
    """
    with _PORTS_LOCK:
        ephemeral = _ephemeral_port_range()
        top = ephemeral[0] - span if ephemeral else 0
        if top - _LOW_PORT >= 1000:
            for _ in range(200):
                port = _RNG.randrange(_LOW_PORT, top)
                if _usable(port, span):
                    _RESERVED_PORTS.update((port, port + span) if span else (port,))
                    return port
        for _ in range(500):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port = int(sock.getsockname()[1])
            if _usable(port, span):
                _RESERVED_PORTS.update((port, port + span) if span else (port,))
                return port
    raise RuntimeError("Could not find a free TCP port on 127.0.0.1.")


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1; never 6379, never twice in the same process."""
    return _pick_port(0)


def free_port_pair_for_cluster() -> int:
    """Return a port p such that p and its cluster bus port p + 10000 are both free.

    p + 10000 <= 65535, and neither is 6379 or 16379.
    """
    return _pick_port(_CLUSTER_BUS_OFFSET)


def reserve_port(port: int) -> int:
    """Reserve a port chosen by the caller, so that :func:`free_port` never hands it out.

    Raises:
        ValueError: ``port`` is 6379 or out of range.
    """
    if port == DEFAULT_REDIS_PORT:
        raise ValueError(
            "fairpool.tools.servers never uses port 6379 (it may be a real Redis server)"
        )
    if not 0 < port <= 65535:
        raise ValueError(f"invalid port {port}")
    with _PORTS_LOCK:
        _RESERVED_PORTS.add(port)
    return port
