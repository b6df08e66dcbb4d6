"""``fairpool bench`` end to end (real redis-server, short durations) and its helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fairpool import cli
from fairpool.bench import (
    POOL_KINDS,
    BenchConfig,
    make_bench_pool,
    measure,
    parse_pools,
    parse_threads,
    percentile,
)
from fairpool.servers import ENV_VAR, RedisServer, free_port

from .helpers import interrupt_cli, run_cli

LINUX = sys.platform.startswith("linux")


# ------------------------------------------------------------------------------ end to end


def test_bench_json_embedded_server() -> None:
    """Every pool kind at every thread count, with sane figures, against an embedded server."""
    proc = run_cli("bench", "--json", "--threads", "1,4", "--duration", "0.25")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["config"]["threads"] == [1, 4]
    assert data["config"]["pools"] == list(POOL_KINDS)
    assert data["server"]["address"].startswith("127.0.0.1:")
    assert data["server"]["version"].count(".") == 2
    rows = data["results"]
    assert [(r["threads"], r["pool"]) for r in rows] == [(t, k) for t in (1, 4) for k in POOL_KINDS]
    for r in rows:
        assert r["errors"] == 0, r
        assert r["ops"] > 10 and r["ops_per_sec"] > 0
        assert r["max_connections"] == r["threads"]
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert 0.2 < r["seconds"] < 5
        if r["pool"] in ("lifo", "fifo", "round_robin"):
            assert r["pool_stats"]["policy"] == r["pool"]
            assert r["pool_stats"]["created"] <= r["threads"]
            assert r["pool_stats"]["borrows"] >= r["ops"]
        else:
            assert r["pool_stats"] is None
    assert proc.stderr == ""  # --json: no progress display


def test_bench_table_against_url(redis_server: RedisServer) -> None:
    """``--url``: the given server is used; the rich table names the pools and the figures."""
    proc = run_cli(
        "bench",
        "--url",
        redis_server.url,
        "--threads",
        "2",
        "--duration",
        "0.2",
        "--pools",
        "fifo,redis-py,blocking",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        f"127.0.0.1:{redis_server.port}",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "vs redis-py",
        "fairpool fifo",
        "redis-py ConnectionPool",
        "redis-py BlockingConnectionPool",
        "1.00x",
    ):
        assert text in out, text
    assert "fairpool lifo" not in out
    with redis_server.client() as r:
        assert int(r.info("stats")["total_commands_processed"]) > 50


def test_bench_unreachable_url_exits_2() -> None:
    proc = run_cli("bench", "--url", f"redis://127.0.0.1:{free_port()}/0", "--duration", "0.1")
    assert proc.returncode == 2
    assert "cannot use --url" in proc.stderr


def test_bench_without_a_server_binary_exits_2() -> None:
    proc = run_cli("bench", "--duration", "0.1", env={ENV_VAR: "/nonexistent/redis-server"})
    assert proc.returncode == 2
    assert ENV_VAR in proc.stderr and "is not an executable file" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.skipif(not LINUX, reason="reads child processes from /proc")
def test_bench_sigint_stops_the_server(tmp_path: Path) -> None:
    """Ctrl-C during the bench: exit 130, and the embedded server was stopped by the command
    itself (the wrapper lists its live children after ``cli.main`` returns)."""
    code, out, err, _ = interrupt_cli(
        tmp_path, "bench", "--duration", "30", "--json", servers=1, settle=0.8
    )
    assert code == 130, err
    assert "interrupted" in err
    assert "LEFT []" in out


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--threads", "0"],
        ["bench", "--threads", "1,x"],
        ["bench", "--pools", "fifo,nope"],
        ["bench", "--duration", "0"],
        ["bench", "--max-connections", "-3"],
    ],
)
def test_bench_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert "usage: fairpool" in capsys.readouterr().err


def test_module_entry_point_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("fairpool ")


# ------------------------------------------------------------------------------ helpers


def test_measure_in_process(redis_url: str) -> None:
    pool = make_bench_pool("round_robin", redis_url, 3)
    try:
        ops, seconds, latencies, errors = measure(pool, 3, 0.2)
    finally:
        pool.disconnect()
    assert errors == 0
    assert ops == len(latencies) > 0
    assert 0.15 < seconds < 2
    assert all(x > 0 for x in latencies)


def test_parsers_and_percentile() -> None:
    assert parse_threads("1, 8,64,8") == (1, 8, 64)
    assert parse_pools("rr,redis,blocking") == ("round_robin", "redis-py", "redis-py-blocking")
    with pytest.raises(ValueError):
        parse_threads("")
    with pytest.raises(ValueError):
        parse_pools("x")
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([], 0.5) == 0.0
    assert BenchConfig(threads=(4,)).cap(4) == 4
    assert BenchConfig(threads=(4,), max_connections=2).cap(4) == 2


def test_bench_unavailable_cpu_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--cpu", "4096", "--duration", "0.1"]) == 2
    assert "cpu 4096" in capsys.readouterr().err
