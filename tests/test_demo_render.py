"""What ``fairpool demo`` prints, as a reader sees it: the report at 80 and 120 columns, the
conclusions computed from the figures (``fairpool/tools/demo/report.py``), the live view in a real
terminal, a pty (``fairpool/tools/terminal.py``), and the PNG of ``--plot`` (``demo/plot.py``)."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from fairpool.stats import fairness
from fairpool.tools.demo import (
    DemoConfig,
    DemoResult,
    PolicyResult,
    plot_available,
    render_live,
    render_report,
    write_plot,
)
from fairpool.tools.demo import summarize as summarize_demo

LINUX = sys.platform.startswith("linux")
MOVES = re.compile(r"\x1b\[[0-9;?]*[ABCDEFGHJK]|\r")  # cursor moves and erasures: line breaks
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def policy_result(
    policy: str, commands: list[int], end: list[int], shrink_at: float
) -> PolicyResult:
    """A result as run_scenario would build it: 8 connections per proxy after the burst, ``end``
    at the end, reached ``shrink_at`` seconds after the burst (5 s of load)."""
    fair = fairness(commands)
    timeline = [(t / 4, 32 if t / 4 < shrink_at else sum(end)) for t in range(21)]
    return PolicyResult(
        policy=policy,
        label=policy,
        commands=commands,
        client_ops=sum(commands),
        seconds=5.0,
        max_mean=fair.max_mean,
        jain=fair.jain,
        burst_connections=[8, 8, 8, 8],
        end_connections=end,
        created=32,
        timeline=timeline,
    )


def demo_result() -> DemoResult:
    result = DemoResult(
        config=DemoConfig(),
        server_binary="redis-server",
        server_version="7.0.15",
        proxies=[f"127.0.0.1:{7000 + i}" for i in range(4)],
    )
    result.results += [
        policy_result("redis-py", [0, 121_640, 0, 0], [8, 8, 8, 8], 99),
        policy_result("lifo", [0, 83_000, 0, 76_145], [0, 1, 0, 1], 1.5),
        policy_result("fifo", [35_100, 35_200, 34_900, 35_000], [1, 1, 1, 1], 2.0),
        policy_result("round_robin", [36_000, 36_100, 35_900, 36_050], [1, 1, 1, 1], 2.0),
    ]
    return result


CONCLUSIONS = [
    "redis-py's pool sent 100% of the commands to proxy-1, none to the other 3 (Jain 0.25), "
    "and kept all 32 connections open.",
    "fairpool lifo sent 52% of the commands to proxy-1 and 48% to proxy-3, none to the other 2 "
    "(Jain 0.50), and shrank from 32 to 2 connections within 1.5 s of the burst.",
    "fairpool fifo and round_robin spread them over all 4 proxies, 25% each (Jain 1.00), and "
    "shrank from 32 to 4 connections within 2.0 s of the burst.",
]


def test_conclusions_are_computed_from_the_figures() -> None:
    assert summarize_demo(demo_result()) == CONCLUSIONS
    # without LIFO rows the fair pools speak for themselves
    only_fair = demo_result()
    only_fair.results = only_fair.results[2:]
    (line,) = summarize_demo(only_fair)
    assert line.startswith("fairpool fifo and round_robin spread the commands over all 4 proxies")
    # no shrinking asked for: the summary says how to see it
    kept = demo_result()
    kept.config = DemoConfig(idle_timeout=None)
    kept.results = [policy_result("fifo", [10, 10, 10, 10], [8, 8, 8, 8], 99)]
    assert summarize_demo(kept) == [
        "fairpool fifo spread the commands over all 4 proxies, 25% each (Jain 1.00), and kept "
        "all 32 connections open.",
        "Run with --idle-timeout 1 to see the fair pools shrink by demand.",
    ]


def render(renderable: object, width: int) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(width=width, record=True, color_system=None, file=sink)
        console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100, 120])
def test_report_reads_well_at(width: int) -> None:
    """Every line fits; no paragraph breaks into an orphaned word; the table is whole; every
    conclusion is there, word for word, wherever the lines wrap."""
    text = render(render_report(demo_result()), width)
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= width, text
    # the table: header and one row per policy, each on one line
    header = next(line for line in lines if line.startswith("policy"))
    for column in ("proxy-0", "proxy-3", "Jain", "ops/s", "conns", "over time"):
        assert column in header
    rows = {
        line.split()[0]: line
        for line in lines
        if line.split()[:1] in (["redis-py"], ["lifo"], ["fifo"], ["round_robin"]) and "→" in line
    }
    assert set(rows) == {"redis-py", "lifo", "fifo", "round_robin"}
    assert (
        "100.0%" in rows["redis-py"]
        and "32→32" in rows["redis-py"]
        and "██████████" in rows["redis-py"]
    )
    assert "32→4" in rows["fifo"] and rows["fifo"].endswith(" ███▂▂▂▂▂▂▂")  # shrank at 2 of 5 s
    # no orphan: a line of prose with a single word
    prose = [line.strip() for line in lines if line.strip() and "─" not in line]
    assert all(len(line.split()) > 1 for line in prose), text
    flowing = " ".join(text.split())
    for sentence in CONCLUSIONS:
        assert sentence in flowing
    assert "fairpool demo: 4 proxies, a burst of 32, then 2 threads for 5 s per policy" in flowing
    assert "Jain: 1.00 = even, 0.25 = one proxy does everything." in flowing


def test_live_view_shows_the_running_policy_and_the_pending_ones() -> None:
    result = demo_result()
    running = policy_result("fifo", [100, 101, 99, 100], [8, 8, 8, 8], 99)
    result.results = result.results[:2]
    running = PolicyResult(
        **{**running.__dict__, "seconds": 2.5, "timeline": running.timeline[:11]}
    )
    text = render(
        render_live(result, running, ["round_robin"], "fairpool fifo: load 2.5 / 5 s"), 80
    )
    assert max(len(line) for line in text.splitlines()) <= 80
    row = next(line for line in text.splitlines() if line.startswith("fifo"))
    assert "fifo …" in row and "32→32" in row and "·····" in row  # half of the sparkline to go
    assert any(line.strip() == "round_robin" for line in text.splitlines())
    assert "fairpool fifo: load 2.5 / 5 s" in text


@pytest.mark.skipif(not LINUX, reason="pty and TIOCSWINSZ")
@pytest.mark.parametrize("columns", [80, 120])
def test_demo_in_a_real_terminal(columns: int) -> None:
    """``fairpool demo`` in a pseudo-terminal of 80 and 120 columns: the live view draws rows in
    progress (``…``) while the scenario runs, everything fits the width, and the run ends with
    the report and its conclusions."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fairpool",
            "demo",
            "--duration",
            "1.2",
            "--idle-timeout",
            "0.3",
            "--policies",
            "redis-py,fifo",
            "--burst",
            "16",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert code == 0, raw
    assert "\x1b[" in raw  # a terminal: rich drew and erased the live view
    text = ANSI.sub("", MOVES.sub("\n", raw))
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= columns, text
    assert any(line.startswith("fifo …") for line in lines), text  # a row in progress
    flowing = " ".join(text.split())
    assert "redis-py's pool sent" in flowing and "kept all 16 connections open" in flowing
    assert "fairpool fifo spread them over all 4 proxies" in flowing
    assert "shrank from 16 to 4 connections" in flowing


def test_plot_has_both_panels_and_the_legend_clear_of_the_bars(tmp_path: Path) -> None:
    """``--plot``: share bars and connections over time side by side; the legend sits below
    them (it used to cover the top of the tallest bar)."""
    if not plot_available():
        pytest.skip("matplotlib is not installed (pip install 'fairpool[plot]')")
    seen: dict[str, object] = {}

    def check(fig: Any) -> None:
        renderer = fig.canvas.get_renderer()
        bars, lines = fig.axes
        legend = fig.legends[0].get_window_extent(renderer)
        for ax in (bars, lines):
            assert not legend.overlaps(ax.get_window_extent(renderer))
        tallest = max(p.get_height() for p in bars.patches)
        assert tallest == pytest.approx(100.0)  # redis-py: everything on proxy-1
        assert bars.get_ylim()[1] > tallest
        assert len(lines.get_lines()) == 4
        fifo = lines.get_lines()[2]
        ys = [float(y) for y in fifo.get_ydata()]
        assert ys[0] == 32 and ys[-1] == 4
        assert lines.get_xlabel() == "seconds after the burst"
        seen["checked"] = True

    png = tmp_path / "demo.png"
    write_plot(demo_result(), str(png), on_figure=check)
    assert seen == {"checked": True}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
