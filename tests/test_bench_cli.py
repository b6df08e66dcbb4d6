"""``fairpool bench`` end to end (real redis-server, short durations) and its parts, by module of
``fairpool/tools/bench/``: measuring (``run.py``), parsing and statistics (``config.py``,
``results.py``); the report's layout is checked through ``render_report`` (``report.py``)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fairpool.tools import cli
from fairpool.tools.bench import (
    POOL_KINDS,
    BenchConfig,
    BenchResult,
    BenchRow,
    default_cpu,
    make_bench_pool,
    measure,
    parse_pools,
    parse_threads,
    percentile,
    render_report,
)
from fairpool.tools.display import mask_url, scrub
from fairpool.tools.servers import ENV_VAR, RedisServer, free_port

from .helpers import interrupt_cli, run_cli

LINUX = sys.platform.startswith("linux")


# ------------------------------------------------------------------------------ end to end


def quick_bench(*args: str) -> Any:
    """``fairpool bench`` at its shortest (1 thread, one repeat of 0.1 s) with ``args``."""
    return run_cli("bench", "--threads", "1", "--duration", "0.1", "--repeats", "1", *args)


def test_bench_json_embedded_server() -> None:
    """Every pool kind at every thread count, repeated and interleaved, with sane figures, a
    median summary, and the CPU pinning said, against an embedded server."""
    proc = run_cli("bench", "--json", "--threads", "1,4", "--duration", "0.2", "--repeats", "2")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["config"]["threads"] == [1, 4]
    assert data["config"]["pools"] == list(POOL_KINDS)
    assert data["config"]["repeats"] == 2
    assert data["server"]["address"].startswith("127.0.0.1:")
    assert data["server"]["version"].count(".") == 2
    # pinned by default where the platform allows, server included (it is embedded)
    assert data["pinning"] == {"cpu": default_cpu(), "server_pinned": default_cpu() is not None}
    rows = data["results"]
    # interleaved: each repeat measures every thread count and pool, the pools rotated by one
    rotated = [*POOL_KINDS[1:], POOL_KINDS[0]]
    assert [(r["repeat"], r["threads"], r["pool"]) for r in rows] == [
        (rep, t, k)
        for rep, order in enumerate((POOL_KINDS, rotated))
        for t in (1, 4)
        for k in order
    ]
    for r in rows:
        assert r["errors"] == 0, r
        assert r["ops"] > 10 and r["ops_per_sec"] > 0
        assert r["max_connections"] == r["threads"]
        assert 0 < r["p50_us"] <= r["p99_us"] <= r["max_us"]
        assert 0.15 < r["seconds"] < 5
        if r["pool"] in ("lifo", "fifo", "round_robin"):
            assert r["pool_stats"]["policy"] == r["pool"]
            assert r["pool_stats"]["created"] <= r["threads"]
            assert r["pool_stats"]["borrows"] >= r["ops"]
        else:
            assert r["pool_stats"] is None
    summary = data["summary"]
    assert [(s["threads"], s["pool"]) for s in summary] == [
        (t, k) for t in (1, 4) for k in POOL_KINDS
    ]
    for s in summary:
        mine = [r for r in rows if r["pool"] == s["pool"] and r["threads"] == s["threads"]]
        assert s["repeats"] == len(mine) == 2
        assert s["ops_per_sec_min"] <= s["ops_per_sec"] <= s["ops_per_sec_max"]
        assert {s["ops_per_sec_min"], s["ops_per_sec_max"]} == {r["ops_per_sec"] for r in mine}
        assert s["ratio_min"] <= s["ratio"] <= s["ratio_max"]
        if s["pool"] == "redis-py":
            assert s["ratio"] == s["ratio_min"] == s["ratio_max"] == 1.0
    assert proc.stderr == ""  # --json: no progress display


def test_bench_table_against_url(redis_server: RedisServer) -> None:
    """``--url``: the given server is used; the report names the pools, the figures, the
    repeats and the pinning (the client only: a --url server is not ours to pin)."""
    proc = run_cli(
        "bench",
        "--url",
        redis_server.url,
        "--threads",
        "2",
        "--duration",
        "0.2",
        "--repeats",
        "2",
        "--pools",
        "fifo,redis-py,blocking",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in (
        f"127.0.0.1:{redis_server.port}",
        "2 interleaved repeats of 0.2 s",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "vs redis-py",
        "range",
        "fifo",
        "redis-py ",
        "redis-py-blocking",
        "1.00x",
    ):
        assert text in out, text
    if default_cpu() is not None:
        assert f"Client (not the --url server) pinned to CPU {default_cpu()}" in out
    assert "lifo " not in out
    assert "\x1b[" not in proc.stderr  # not a terminal: no progress bar drawn
    with redis_server.client() as r:
        assert int(r.info("stats")["total_commands_processed"]) > 50


@pytest.mark.parametrize(
    ("cpu", "note"),
    [("none", "Not pinned to a CPU (--cpu none)."), ("auto", "Client and server pinned to CPU")],
)
def test_bench_says_how_it_is_pinned(cpu: str, note: str) -> None:
    if cpu == "auto" and default_cpu() is None:
        note = "Not pinned to a CPU: this platform has no os.sched_setaffinity."
    proc = quick_bench("--cpu", cpu, "--pools", "fifo,redis-py")
    assert proc.returncode == 0, proc.stderr
    assert note in " ".join(proc.stdout.split())


def test_bench_masks_the_password_of_an_unreachable_url() -> None:
    """``redis://user:secret@host/0``: the error names the URL with the password masked."""
    port = free_port()
    for url, shown in (
        (f"redis://user:s3cr3t-pw@127.0.0.1:{port}/0", f"redis://user:***@127.0.0.1:{port}/0"),
        (f"redis://127.0.0.1:{port}/0?password=s3cr3t-pw", "password=***"),
    ):
        proc = run_cli("bench", "--url", url, "--duration", "0.1")
        assert proc.returncode == 2, proc.stderr
        assert "cannot use --url" in proc.stderr and shown in proc.stderr, proc.stderr
        assert "s3cr3t-pw" not in proc.stderr + proc.stdout


def test_bench_json_masks_the_password(redis_server: RedisServer) -> None:
    """``--json`` writes the URL with its password masked (the server's default user has no
    password, so any password authenticates)."""
    url = f"redis://default:s3cr3t-pw@127.0.0.1:{redis_server.port}/0"
    proc = quick_bench("--json", "--url", url, "--pools", "fifo")
    assert proc.returncode == 0, proc.stderr
    assert "s3cr3t-pw" not in proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["config"]["url"] == f"redis://default:***@127.0.0.1:{redis_server.port}/0"


def test_mask_url_and_scrub() -> None:
    assert mask_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert mask_url("rediss://:pw@h/0?ssl_cert_reqs=none") == "rediss://:***@h/0?ssl_cert_reqs=none"
    assert mask_url("redis://user@h/0") == "redis://user@h/0"  # a user name is no secret
    assert mask_url("redis://h/0?password=pw&db=2") == "redis://h/0?password=***&db=2"
    assert mask_url("unix:///tmp/r.sock?password=pw") == "unix:///tmp/r.sock?password=***"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    url = "redis://u:p%40ss@h/0"
    assert scrub(f"Error connecting to {url}: bad p@ss and p%40ss", url) == (
        "Error connecting to redis://u:***@h/0: bad *** and ***"
    )
    assert scrub("anything", None) == "anything"


def test_bench_report_fits_80_columns() -> None:
    """The bench table in the demo's style: one line per pool, 80 columns even with six-figure
    throughputs and latencies; the notes wrap without a widow."""
    config = BenchConfig(threads=(1, 256), repeats=3)
    result = BenchResult(config=config, server="127.0.0.1:65535", server_version="7.0.15")
    result.pinned_cpu, result.server_pinned = 0, True
    factor = {
        "lifo": 1.1,
        "fifo": 1.2,
        "round_robin": 0.9,
        "redis-py": 1.0,
        "redis-py-blocking": 0.8,
    }
    for repeat in range(3):
        for threads in config.threads:
            for kind in POOL_KINDS:
                wobble = (0.99, 1.0, 1.01)[repeat] if kind == "fifo" else 1.0
                result.rows.append(
                    BenchRow(
                        pool=kind,
                        label=kind,
                        threads=threads,
                        max_connections=threads,
                        ops=1,
                        seconds=1.0,
                        ops_per_sec=1_234_567.0 * factor[kind] * wobble,
                        p50_us=12_345.0,
                        p99_us=999_999.0,
                        max_us=1e6,
                        errors=0,
                        repeat=repeat,
                    )
                )
    with open(os.devnull, "w") as sink:
        console = Console(width=80, record=True, color_system=None, file=sink)
        console.print(render_report(result))
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80, text
    rows = [line for line in lines if line.split()[-1:] == ["999,999"]]
    assert len(rows) == 2 * len(POOL_KINDS), text
    fifo = next(line for line in rows if " fifo " in line)
    assert "1.20x" in fifo and "1.19-1.21" in fifo, fifo
    assert "Client and server pinned to CPU 0" in text
    prose = [line.strip() for line in lines if line.strip() and "─" not in line]
    assert all(len(line.split()) > 1 for line in prose), text


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


# ------------------------------------------------- the parts: measuring (bench/run.py)


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


# ------------------------ parsing and statistics (bench/config.py, bench/results.py)


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
