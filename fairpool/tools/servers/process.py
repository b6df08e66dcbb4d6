"""Starting ``redis-server`` processes that never outlive Python.

A process is run by a :mod:`mirakuru` executor (the ``demo`` extra, imported at the first start)
that is ready once the server answers ``PING``. On Linux the child gets ``PR_SET_PDEATHSIG`` so
that it is killed even when Python is killed with ``SIGKILL``; an :mod:`atexit` hook stops every
server still registered with :func:`track`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Protocol

from .._extras import missing_extra

if TYPE_CHECKING:
    import mirakuru

__all__ = ["ServerStartError"]

START_TIMEOUT = 10.0
"""Seconds to wait for a server to answer ``PING`` (and, when stopping, to exit after SIGTERM)."""

LOG_TAIL_LINES = 40
"""Lines of a server's log quoted in an error, and by default by ``RedisServer.log_tail``."""


class ServerStartError(RuntimeError):
    """A ``redis-server`` process failed to start or to answer ``PING`` in time.

    The message includes the command line and the tail of the server's log.
    """


class PortBusy(Exception):
    """The port was taken by someone else: the caller may try another one."""


def tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the text file at ``path`` (empty when it cannot be read)."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# The child process
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


def spawn(
    name: str, host: str, port: int, command_for: Callable[[str], list[str]]
) -> tuple[mirakuru.Executor, str]:
    """Start ``command_for(directory)`` in a new private temp ``directory`` and wait until the
    server on host:port answers PING; returns ``(executor, directory)``.

    On failure the directory is removed and the process killed.

    Raises:
        MissingExtra: mirakuru is not installed (before anything is created).
        PortBusy: something else listens on the port.
        ServerStartError: the process could not be run, exited, or did not answer in time.
    """
    executor_class = _executor_class()  # before anything else: raises MissingExtra
    from mirakuru.exceptions import AlreadyRunning, ProcessExitedWithError, TimeoutExpired

    label = re.sub(r"[^\w.-]", "_", name)
    directory = tempfile.mkdtemp(prefix=f"fairpool-{label}-{port}-")
    command = command_for(directory)
    output_path = os.path.join(directory, "output.log")
    executor: mirakuru.Executor | None = None
    try:
        with open(output_path, "ab") as output:
            executor = executor_class(
                command,
                host=host,
                port=port,
                cwd=directory,
                output=output,
                pdeathsig=threading.current_thread() is threading.main_thread(),
            )
            executor.start()
    except BaseException as exc:
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.kill()
        log = tail(os.path.join(directory, "redis.log"))
        output_text = tail(output_path)
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(exc, AlreadyRunning) or "Address already in use" in log + output_text:
            raise PortBusy from exc
        if isinstance(exc, TimeoutExpired):
            what = f"did not answer PING within {START_TIMEOUT:g} s"
        elif isinstance(exc, ProcessExitedWithError):
            what = f"exited with code {exc.exit_code} before answering PING"
        elif isinstance(exc, OSError):
            what = f"could not be run: {exc}"
        else:
            raise
        details = "\n".join(
            part
            for part in (
                f"command: {shlex.join(command)}",
                f"--- output ---\n{output_text}" if output_text.strip() else "",
                f"--- redis.log (tail) ---\n{log}" if log.strip() else "",
            )
            if part
        )
        raise ServerStartError(f"{name}: redis-server {what}\n{details}") from exc
    return executor, directory


# --------------------------------------------------------------------------------------------
# Servers still running at exit
# --------------------------------------------------------------------------------------------


class _Stoppable(Protocol):
    def stop(self) -> None: ...


# Every started server, so that the atexit hook can stop those still running.
_LIVE: set[_Stoppable] = set()
_LIVE_LOCK = threading.Lock()


def track(server: _Stoppable) -> None:
    """Stop ``server`` at exit if it is still tracked then."""
    with _LIVE_LOCK:
        _LIVE.add(server)


def untrack(server: _Stoppable) -> None:
    """Forget ``server`` (it was stopped)."""
    with _LIVE_LOCK:
        _LIVE.discard(server)


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
