"""One ``redis-server`` on 127.0.0.1 (:class:`RedisServer`) and several (:class:`ServerGroup`).

Each server has a free port (never 6379), a private temporary directory and no persistence; its
process is started by :mod:`.process`, which makes sure it never outlives Python.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis

from . import process
from .binary import find_redis_server, resolve_binary, server_version
from .ports import HOST, free_port, free_port_pair_for_cluster, reserve_port

if TYPE_CHECKING:
    import mirakuru

__all__ = ["RedisServer", "ServerGroup"]


def _cluster_enabled(args: Sequence[str]) -> bool:
    for i, arg in enumerate(args):
        if arg.lstrip("-") == "cluster-enabled" and i + 1 < len(args):
            return args[i + 1].lower() == "yes"
    return False


def _auto_port(args: Sequence[str]) -> int:
    """A free port for a server started with ``args`` (cluster-bus-safe in cluster mode)."""
    return free_port_pair_for_cluster() if _cluster_enabled(args) else free_port()


_T = TypeVar("_T", bound="_StartStop")


class _StartStop(abc.ABC):
    """``with`` starts, leaving the block stops."""

    @abc.abstractmethod
    def start(self: _T) -> _T:
        """Start; returns self."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop."""

    def __enter__(self: _T) -> _T:
        """Start (see :meth:`start`)."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop (see :meth:`stop`)."""
        self.stop()


class RedisServer(_StartStop):
    """One ``redis-server`` process on 127.0.0.1, with no persistence and a private directory.

    The server is configured with ``--port P --bind 127.0.0.1 --protected-mode no --save ""
    --appendonly no --daemonize no --dir <private temp dir> --logfile <dir>/redis.log`` (plus
    ``--enable-debug-command local`` on Redis >= 7, so that ``DEBUG SLEEP`` works), then ``args``
    (which can override any of these). The temp dir is created on each start and removed on
    stop, so a restarted server starts empty.

    With ``port=None`` a free port is chosen (see :func:`free_port`; a cluster-bus-safe one
    when ``args`` enable cluster mode); if it is taken by someone else before the first start,
    another one is chosen. After the first start the port never changes: :meth:`restart` and
    later :meth:`start` calls reuse it.

    All methods are thread-safe. On Linux the process gets ``PR_SET_PDEATHSIG=SIGKILL`` when
    started from the main thread, so it dies with Python even on SIGKILL; servers started from
    another thread do not get it (the signal fires when the *thread* that started the server
    exits), and rely on the atexit hook instead.
    """

    host: str
    """Always ``"127.0.0.1"``."""
    port: int
    """The TCP port; fixed after the first start."""
    binary: str
    """Absolute path of the ``redis-server`` binary."""
    version: tuple[int, int, int]
    """The binary's version, e.g. ``(7, 0, 15)``."""
    name: str
    """A label used in the temp dir name and in ``repr``."""
    args: tuple[str, ...]
    """Extra command-line arguments given to the server."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        args: Sequence[str] = (),
        name: str = "redis",
        config_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """Describe a server; nothing is started until :meth:`start` (or ``with``).

        Args:
            port: TCP port, or None for a free one. 6379 is refused.
            binary: path of ``redis-server``; default :func:`find_redis_server`.
            args: extra ``redis-server`` arguments, e.g. ``["--maxclients", "20"]``.
            name: a label for logs and the temp dir.
            config_file: a config file, passed first on the command line as redis-server wants
                it (a sentinel needs its own writable one: ``args=["--sentinel"]``).

        Raises:
            ServerBinaryNotFound: no binary given and none found, or it is not redis-server.
            ValueError: ``port`` is 6379 or out of range.
        """
        if isinstance(args, str):
            raise TypeError("args must be a sequence of strings, not a string")
        self.host = HOST
        self.name = name
        self.args = tuple(args)
        self.config_file = None if config_file is None else os.fspath(config_file)
        self.binary = resolve_binary(binary) if binary else find_redis_server()
        self.version = server_version(self.binary)
        self._auto_port = port is None
        self.port = _auto_port(self.args) if port is None else reserve_port(port)
        self._lock = threading.RLock()
        self._executor: mirakuru.Executor | None = None
        self._dir: str | None = None

    def __repr__(self) -> str:
        """``<RedisServer name 127.0.0.1:PORT v7.0.15 running>``."""
        state = "running" if self.running else "stopped"
        version = ".".join(map(str, self.version))
        return f"<RedisServer {self.name} {self.host}:{self.port} v{version} {state}>"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the server process is alive (it may have been started but died since)."""
        executor = self._executor
        return executor is not None and bool(executor.running())

    @property
    def pid(self) -> int | None:
        """The server's process id, or None when it has not been started or was stopped."""
        executor = self._executor
        process = executor.process if executor is not None else None
        return int(process.pid) if process is not None else None

    @property
    def directory(self) -> str | None:
        """The private working directory of the current run (None when stopped)."""
        return self._dir

    @property
    def log_path(self) -> str | None:
        """The server's log file for the current run (None when stopped)."""
        return os.path.join(self._dir, "redis.log") if self._dir else None

    def log_tail(self, lines: int = process.LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log (empty when stopped)."""
        return process.tail(self.log_path, lines) if self.log_path else ""

    def _command(self, directory: str) -> list[str]:
        command = [
            self.binary,
            *([self.config_file] if self.config_file else []),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            directory,
            "--logfile",
            os.path.join(directory, "redis.log"),
        ]
        if self.version >= (7, 0, 0):
            command += ["--enable-debug-command", "local"]
        return command + list(self.args)

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING; no-op if it is running.

        Returns self. Raises :class:`ServerStartError` (with the server's log tail) if the
        process exits or does not answer within 10 s, or if the port is already taken.
        """
        with self._lock:
            if self.running:
                return self
            if self._executor is not None:  # a previous run that died by itself
                with contextlib.suppress(Exception):
                    self._executor.kill()
            self._cleanup()
            attempts = 5 if self._auto_port else 1
            for attempt in range(attempts):
                try:
                    self._executor, self._dir = process.spawn(
                        self.name, self.host, self.port, self._command
                    )
                    break
                except process.PortBusy:
                    if attempt + 1 == attempts:
                        raise process.ServerStartError(
                            f"{self.name}: port {self.host}:{self.port} is already in use"
                        ) from None
                    self.port = _auto_port(self.args)
            self._auto_port = False
            process.track(self)
            return self

    def _cleanup(self) -> None:
        self._executor = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        process.untrack(self)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM, wait up to 10 s, then SIGKILL); no-op if not running.

        Also removes the server's temp dir.
        """
        with self._lock:
            executor = self._executor
            if executor is not None:
                from mirakuru.exceptions import ProcessFinishedWithError

                try:
                    executor.stop()
                except ProcessFinishedWithError:
                    pass  # it exited with an unexpected code (e.g. it had crashed): gone anyway
                except Exception:
                    with contextlib.suppress(Exception):
                        executor.kill()
                    raise
                finally:
                    self._cleanup()
            else:
                self._cleanup()

    def kill(self) -> None:
        """Kill the server with SIGKILL now (fault injection); no-op if not running.

        Waits for the process to be gone and removes the server's temp dir.
        """
        with self._lock:
            executor = self._executor
            try:
                if executor is not None:
                    executor.kill()
            finally:
                self._cleanup()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or, with ``kill=True``, kill) the server, then start it again on the same port.

        The restarted server is empty: there is no persistence.
        """
        with self._lock:
            if kill:
                self.kill()
            else:
                self.stop()
            self.start()

    def client(self, **kwargs: Any) -> redis.Redis:
        """Return a plain :class:`redis.Redis` to this server, with its own connection pool.

        ``kwargs`` are passed to :class:`redis.Redis` (e.g. ``decode_responses=True``). Close it
        when done, e.g. ``with server.client() as r: ...``.
        """
        options: dict[str, Any] = {"host": self.host, "port": self.port, "db": 0}
        options.update(kwargs)
        return redis.Redis(**options)

    def info(self, section: str | None = None) -> dict[str, Any]:
        """Return ``INFO`` (or ``INFO section``) as a dict, through a short-lived client."""
        with self.client() as conn:
            result = conn.info(section) if section else conn.info()
        return cast("dict[str, Any]", result)


class ServerGroup(_StartStop):
    """Several :class:`RedisServer` started and stopped together (e.g. stand-in proxies).

    ``ServerGroup(n, **kwargs)`` creates n servers on distinct free ports, named
    ``{name}-0`` ... ``{name}-{n-1}``; ``kwargs`` (``binary``, ``args``, ``name``) go to each
    :class:`RedisServer`. Use it as a context manager or call :meth:`start` / :meth:`stop`.
    """

    servers: list[RedisServer]
    """The servers, in order."""

    def __init__(
        self,
        n: int,
        *,
        binary: str | None = None,
        args: Sequence[str] = (),
        name: str = "redis",
    ) -> None:
        """Create (but do not start) ``n`` servers."""
        if n < 0:
            raise ValueError("n must be >= 0")
        binary = binary or find_redis_server()
        self.servers = [RedisServer(binary=binary, args=args, name=f"{name}-{i}") for i in range(n)]

    def start(self) -> ServerGroup:
        """Start every server; if one fails, stop those already started and re-raise."""
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every server (all of them are attempted; the first error is re-raised)."""
        error: BaseException | None = None
        for server in self.servers:
            try:
                server.stop()
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    @property
    def urls(self) -> list[str]:
        """The servers' URLs, in order."""
        return [server.url for server in self.servers]

    @property
    def ports(self) -> list[int]:
        """The servers' ports, in order."""
        return [server.port for server in self.servers]

    def __len__(self) -> int:
        """Number of servers."""
        return len(self.servers)

    def __iter__(self) -> Iterator[RedisServer]:
        """Iterate over the servers."""
        return iter(self.servers)

    def __getitem__(self, index: int) -> RedisServer:
        """The index-th server."""
        return self.servers[index]
