"""What the proxies themselves say during ``fairpool demo``: the load commands each one processed
(``INFO commandstats``) and the client connections it holds (``INFO clients``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from ..servers import RedisServer

__all__ = ["ProxyCounters"]

# Commands the demo itself sends to the servers (snapshots, resets): not part of any proxy's load.
_ADMIN_COMMANDS = ("cmdstat_info", "cmdstat_config")


def _load_commands(stats: dict[str, Any]) -> int:
    """Calls in an ``INFO commandstats`` dict, the demo's own admin commands excluded."""
    total = 0
    for name, entry in stats.items():
        if name.startswith(_ADMIN_COMMANDS) or not isinstance(entry, dict):
            continue
        total += int(entry.get("calls", 0))
    return total


class ProxyCounters:
    """One plain client per server for the demo's own INFO / CONFIG RESETSTAT calls."""

    def __init__(self, servers: Sequence[RedisServer]) -> None:
        """Connect to every server of ``servers``."""
        self.clients = [s.client(socket_timeout=10) for s in servers]

    def reset_stats(self) -> None:
        """``CONFIG RESETSTAT`` on every server."""
        for c in self.clients:
            c.config_resetstat()

    def commands(self) -> list[int]:
        """Load commands each server has processed since its last reset."""
        return [_load_commands(dict(c.info("commandstats"))) for c in self.clients]

    def connections(self) -> list[int]:
        """Client connections each server holds, these counters' own not included."""
        return [int(c.info("clients")["connected_clients"]) - 1 for c in self.clients]

    def wait_idle(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until the servers have noticed every closed client connection."""
        deadline = time.monotonic() + timeout
        while any(self.connections()) and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Close the clients."""
        for c in self.clients:
            with contextlib.suppress(Exception):
                c.close()
