"""``fairpool demo`` end to end (real redis-server processes, short durations) and its parts.

The CLI runs in a subprocess (``sys.executable -m fairpool demo ...``); the scenario's pieces
are also exercised in-process, one section per module of ``fairpool/tools/demo/``: the
round-robin "L4 balancer" (``balancer.py``), one policy's run counted from the servers
(``scenario.py``, ``measure.py``), the configuration (``model.py``). What the demo prints and
plots (``report.py``, ``plot.py``, ``fairpool/tools/terminal.py``) is in test_demo_render.py.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fairpool.pool import peer_endpoint, raw_connection
from fairpool.tools import cli
from fairpool.tools import demo as demo_mod
from fairpool.tools.demo import (
    BalancedConnection,
    DemoConfig,
    RoundRobinBalancer,
    make_pool,
    parse_policies,
    run_scenario,
)
from fairpool.tools.servers import ENV_VAR, RedisServer

from .compat import borrow_args
from .helpers import interrupt_cli, run_cli

RedisServersFactory = Callable[..., list[RedisServer]]

HAVE_MATPLOTLIB = demo_mod.plot_available()
LINUX = sys.platform.startswith("linux")


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ------------------------------------------------------------------------------ end to end


def test_demo_json_shows_the_imbalance_and_the_shrinking() -> None:
    """LIFO (redis-py's and fairpool's) loads one or two proxies; FIFO / round-robin all four; and
    with fairpool's ``idle_timeout`` (on by default) the fair pools shrink to one connection per
    proxy while redis-py's pool keeps the 32 of the burst."""
    proc = run_cli("demo", "--json", "--duration", "1.6", "--idle-timeout", "0.4", "--proxies", "4")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scenario"]["policies"] == ["redis-py", "lifo", "fifo", "round_robin"]
    assert data["scenario"]["burst"] == 32 and data["scenario"]["concurrency"] == 2
    assert data["scenario"]["idle_timeout"] == 0.4
    assert len(data["proxies"]) == 4
    assert all(p["endpoint"].startswith("127.0.0.1:") for p in data["proxies"])
    assert data["server"]["version"].count(".") == 2
    results = {r["policy"]: r for r in data["results"]}
    assert list(results) == ["redis-py", "lifo", "fifo", "round_robin"]
    for r in results.values():
        assert len(r["commands"]) == len(r["shares"]) == 4
        assert r["total"] == sum(r["commands"]) > 100
        # the servers saw exactly the load's commands (the burst's and the demo's own excluded)
        assert r["total"] == r["client_ops"]
        assert abs(sum(r["shares"]) - 1) < 1e-9
        assert r["burst_connections"] == [8, 8, 8, 8]  # the balancer spread the burst evenly
        assert r["created"] == 32
        assert r["ops_per_sec"] > 0 and r["max_mean"] >= 1
        # the connections, sampled from the servers during the load
        timeline = r["timeline"]
        assert timeline[0] == [0.0, 32] and len(timeline) >= 4
        assert [t for t, _ in timeline] == sorted(t for t, _ in timeline)
        assert timeline[-1][1] == r["open_end"]
    for policy in ("redis-py", "lifo"):
        # two threads on a LIFO stack use its top two connections: at most two proxies
        assert results[policy]["jain"] <= 0.55, results[policy]
        assert sum(1 for c in results[policy]["commands"] if c) <= 2
    for policy in ("fifo", "round_robin"):
        assert results[policy]["jain"] > 0.9, results[policy]
        assert results[policy]["max_mean"] < 1.2
        # shrunk by demand, keeping one connection per proxy
        assert results[policy]["end_connections"] == [1, 1, 1, 1], results[policy]
        assert results[policy]["closed"]["demand"] == 28
        assert 0 < results[policy]["shrink_seconds"] < 1.6
    assert results["redis-py"]["open_end"] == 32  # redis-py's pool cannot shrink
    assert results["redis-py"]["shrink_seconds"] is None
    assert results["lifo"]["open_end"] <= 2
    assert results["redis-py"]["pool_stats"] is None
    stats = results["fifo"]["pool_stats"]
    assert stats["policy"] == "fifo" and stats["created"] == 32


def test_demo_shrinks_by_default() -> None:
    """The default run shows both halves of the story: fairpool's idle_timeout is on (1 s, so
    that the fair pools shrink within the default 5 s of load), redis-py's pool is not touched."""
    args = cli.build_parser().parse_args(["demo"])
    assert args.idle_timeout == demo_mod.DEFAULT_IDLE_TIMEOUT == DemoConfig().idle_timeout == 1.0
    assert args.duration == DemoConfig().duration > 2 * demo_mod.DEFAULT_IDLE_TIMEOUT
    assert cli.build_parser().parse_args(["demo", "--idle-timeout", "off"]).idle_timeout is None


def test_demo_table_and_plot(tmp_path: Path) -> None:
    """The report on stdout, plain progress lines on stderr (no terminal), the PNG when asked."""
    if not HAVE_MATPLOTLIB:
        pytest.skip("matplotlib is not installed (pip install 'fairpool[plot]'): no --plot test")
    png = tmp_path / "shares.png"
    proc = run_cli(
        "demo",
        "--duration",
        "0.4",
        "--policies",
        "redis-py,fifo",
        "--burst",
        "8",
        "--idle-timeout",
        "off",
        "--plot",
        str(png),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("fairpool demo: 4 proxies", "proxy-0", "proxy-3", "Jain", "ops/s", "over time"):
        assert text in out
    assert "redis-py" in out and "fifo" in out and "round_robin" not in out
    assert "8→8" in out  # connections after the burst -> at the end
    assert "kept all 8 connections open" in out
    assert "--idle-timeout" in out  # no shrinking asked for: the summary says how to see it
    # not a terminal: no live view, no escape codes, one plain line per finished policy
    assert "\x1b[" not in proc.stderr and "\x1b[" not in out
    assert "Started 4 redis-server proxies" in proc.stderr
    assert "fairpool fifo: shares " in proc.stderr and "connections 8→8" in proc.stderr
    assert f"Wrote {png}" in proc.stderr
    assert png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_plot_without_matplotlib(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without matplotlib, ``--plot`` fails at once (exit 2) and says what to install."""
    monkeypatch.setattr(demo_mod, "plot_available", lambda: False)
    code = cli.main(["demo", "--json", "--plot", str(tmp_path / "x.png")])
    assert code == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "fairpool[plot]" in err
    assert not (tmp_path / "x.png").exists()


def test_demo_idle_timeout_shrinks_fair_pools() -> None:
    """With ``--idle-timeout`` the fair pools close the connections the load did not need."""
    proc = run_cli(
        "demo",
        "--json",
        "--duration",
        "1.2",
        "--idle-timeout",
        "0.2",
        "--policies",
        "lifo,fifo",
        "--burst",
        "16",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scenario"]["idle_timeout"] == 0.2
    for r in data["results"]:
        assert r["burst_connections"] == [4, 4, 4, 4]
        assert r["open_end"] < 16, r
        reason = "idle" if r["policy"] == "lifo" else "demand"
        assert r["closed"][reason] > 0, r


def test_demo_idle_timeout_off_keeps_every_connection() -> None:
    """``--idle-timeout off``: no pool shrinks (the run before the default turned it on)."""
    proc = run_cli(
        "demo", "--json", "--duration", "0.5", "--idle-timeout", "off", "--policies", "fifo"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["scenario"]["idle_timeout"] is None
    (r,) = data["results"]
    assert r["open_end"] == 32 and r["shrink_seconds"] is None, r


@pytest.mark.skipif(not LINUX, reason="reads child processes from /proc")
def test_demo_sigint_stops_every_server(tmp_path: Path) -> None:
    """Ctrl-C during the demo: exit 130, and no redis-server outlives it.

    The demo runs in a wrapper that, after ``cli.main`` returns and before Python exits, lists its
    remaining child processes — so the servers must have been stopped by the demo itself, not by
    PR_SET_PDEATHSIG or the atexit hook.
    """
    code, out, err, servers = interrupt_cli(
        tmp_path, "demo", "--duration", "30", "--json", servers=4, settle=1.0
    )
    assert code == 130, (out, err)
    assert "interrupted" in err
    assert "LEFT []" in out
    assert not [pid for pid in servers if alive(pid)]


def test_demo_without_a_server_binary_exits_2() -> None:
    """No usable redis-server: a clear message and exit code 2."""
    proc = run_cli("demo", "--duration", "1", env={ENV_VAR: "/nonexistent/redis-server"})
    assert proc.returncode == 2
    assert "fairpool demo:" in proc.stderr
    assert ENV_VAR in proc.stderr and "is not an executable file" in proc.stderr
    assert "pip install 'fairpool[demo]'" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--policies", "lifo,nope"],
        ["demo", "--proxies", "0"],
        ["demo", "--duration", "-1"],
        ["demo", "--idle-timeout", "abc"],
        [],
    ],
)
def test_demo_usage_errors_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Bad options are usage errors (exit 2) with argparse's message; nothing is started."""
    with pytest.raises(SystemExit) as exc:
        cli.main(args)
    assert exc.value.code == 2
    assert "usage: fairpool" in capsys.readouterr().err


# ------------------------------------------------------------- the L4 balancer (balancer.py)


def test_balancer_hands_out_endpoints_in_turn() -> None:
    balancer = RoundRobinBalancer([("h", 1), ("h", 2), ("h", 3)])
    assert [balancer.next()[1] for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert balancer.dials == [3, 2, 2]
    balancer.reset()
    assert balancer.next() == ("h", 1)
    with pytest.raises(ValueError):
        RoundRobinBalancer([])


@pytest.mark.parametrize("policy", ["redis-py", "fifo"])
def test_balanced_connections_spread_over_servers(
    redis_servers: RedisServersFactory, policy: str
) -> None:
    """Each NEW connection of a pool goes to the next server; its socket really is there."""
    servers = redis_servers(3)
    balancer = RoundRobinBalancer([(s.host, s.port) for s in servers])
    pool = make_pool(policy, balancer)
    try:
        conns = [pool.get_connection(*borrow_args(pool)) for _ in range(6)]
        ports = [int(str(peer_endpoint(raw_connection(c))).rsplit(":", 1)[1]) for c in conns]
        assert ports == [s.port for s in servers] * 2
        assert all(isinstance(c, BalancedConnection) for c in conns)
        for c in conns:
            pool.release(c)
        for s in servers:
            assert s.info("clients")["connected_clients"] == 3  # 2 of the pool's + INFO's own
    finally:
        pool.disconnect()


# ------------------------------------------------------ one policy's run (scenario, measure)


def test_run_scenario_counts_from_the_servers(redis_servers: RedisServersFactory) -> None:
    """One policy in-process: shares come from the servers and match the client's count."""
    servers = redis_servers(2)
    config = DemoConfig(proxies=2, burst=6, concurrency=2, duration=0.3, policies=("round_robin",))
    events: list[str] = []
    result = run_scenario("round_robin", servers, config, progress=lambda e: events.append(e.phase))
    assert result.burst_connections == [3, 3]
    assert result.total == result.client_ops > 0
    assert result.jain > 0.9
    assert events[0] == "burst" and events[-1] == "done" and "load" in events
    assert result.pool_stats is not None and result.pool_stats["created"] == 6
    # the pool is closed and the servers saw its connections go
    for s in servers:
        assert s.info("clients")["connected_clients"] == 1


# ------------------------------------------------------------ the configuration (model.py)


def test_parse_policies_and_config_validation() -> None:
    assert parse_policies("redis_py, FIFO,rr,fifo") == ("redis-py", "fifo", "round_robin")
    with pytest.raises(ValueError, match="choose from"):
        parse_policies("lifo,bogus")
    with pytest.raises(ValueError):
        parse_policies(" , ")
    with pytest.raises(ValueError):
        DemoConfig(duration=0)
    with pytest.raises(ValueError):
        DemoConfig(burst=0)
    assert DemoConfig(burst=500).max_connections == 500
    assert DemoConfig(policies=("lifo",)).policies == ("lifo",)


@pytest.mark.parametrize(
    ("setting", "value", "rule"),
    [
        ("proxies", 0, ">= 1"),
        ("burst", 0, ">= 1"),
        ("concurrency", 0, ">= 1"),
        ("duration", 0.0, "> 0"),
        ("duration", float("nan"), "> 0"),
        ("idle_timeout", 0.0, "> 0"),
        ("min_idle", -1, ">= 0"),
        ("hold", -0.1, ">= 0"),
        ("sample_interval", 0.0, "> 0"),
    ],
)
def test_config_names_the_setting_and_its_range(setting: str, value: float, rule: str) -> None:
    with pytest.raises(ValueError, match=f"^{setting} must be {rule}$"):
        DemoConfig(**{setting: value})


def test_config_accepts_the_edges() -> None:
    config = DemoConfig(proxies=1, burst=1, concurrency=1, idle_timeout=None, min_idle=0, hold=0)
    assert (config.proxies, config.burst, config.concurrency, config.hold) == (1, 1, 1, 0)
    assert config.idle_timeout is None and config.min_idle == 0
