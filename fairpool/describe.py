"""``repr(pool)`` for both shells: the pool's name, policy, cap, counts and every endpoint.

redis-py's repr lists the connection kwargs (one host); a fairpool pool may spread over several
endpoints, and what an operator wants at a glance is how full it is. Credentials never appear.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pool_endpoints", "pool_repr"]


def pool_endpoints(pool: Any) -> list[str]:
    """The endpoints the pool dials: ``endpoints=[...]`` as ``host:port``, else the
    ``host:port`` (or unix socket path) of its connection kwargs."""
    configured = pool.config.endpoints
    if configured:
        return [_host_port(host, port) for host, port in configured]
    kwargs = pool.connection_kwargs
    path = kwargs.get("path")
    if path:
        return [f"unix://{path}"]
    return [_host_port(kwargs.get("host", "localhost"), kwargs.get("port", 6379))]


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_SECRET_KEYS = frozenset({"password", "username", "ssl_password", "credential_provider"})


def pool_repr(pool: Any) -> str:
    """redis-py's repr with credentials shown as ``<REDACTED>`` (``<module.Class(<connection
    class(kwargs)>)>``, which redis-py's own tests and tools parse), then fairpool's summary:
    ``name='...' policy=fifo max_connections=10 idle=2 in_use=1 waiting=0 endpoints=[h1:6379,
    h2:6379] db=0`` (and ``closed``). Read without the pool lock: the counts may be a moment
    apart, never torn."""
    core = pool._core
    cls = type(pool)
    conn = pool.connection_class
    kwargs = pool.connection_kwargs
    secret = getattr(pool, "SENSITIVE_REPR_KEYS", _SECRET_KEYS)  # redis-py's, where it has them
    omit = getattr(pool, "OMIT_REPR_KEYS", ())
    shown = ",".join(
        f"{k}={'<REDACTED>' if k in secret else v}" for k, v in kwargs.items() if k not in omit
    )
    parts = [
        f"<{cls.__module__}.{cls.__qualname__}(<{conn.__module__}.{conn.__qualname__}({shown})>)>",
        f"name={pool.config.name!r}",
        f"policy={pool.config.policy.value}",
        f"max_connections={pool.max_connections}",
        f"idle={core.idle_count}",
        f"in_use={core.in_use_count}",
        f"waiting={core.waiting}",
        f"endpoints=[{', '.join(pool_endpoints(pool))}]",
        f"db={kwargs.get('db', 0)}",
    ]
    if core.closed:
        parts.append("closed")
    return " ".join(parts)
