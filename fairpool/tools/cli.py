"""The ``fairpool`` command (also ``python -m fairpool``).

``fairpool demo``
    Replays the proxy-imbalance story on embedded ``redis-server`` processes standing in for
    proxies and shows each policy's per-proxy command share (see :mod:`fairpool.tools.demo`).
``fairpool bench``
    PING throughput and latency per pool and thread count (see :mod:`fairpool.tools.bench`).

Exit codes: 0 success; 1 unexpected failure; 2 bad usage, no usable ``redis-server``, a missing
optional dependency or an unreachable ``--url``; 130 interrupted by SIGINT (Ctrl-C); 143 stopped by
SIGTERM. Embedded servers are stopped in every case.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import __version__
from ._extras import MissingExtra
from .display import scrub

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


def _int_at_least(lo: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers ≥ ``lo``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}; got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text}")
    return value


def _seconds_or_off(text: str) -> float | None:
    """A positive number of seconds, or ``off`` / ``none`` / ``0`` for None."""
    if text.strip().lower() in ("off", "none", "0"):
        return None
    return _positive_float(text)


def _cpu(text: str) -> int | str | None:
    """``auto``, ``none`` / ``off``, or a CPU number."""
    word = text.strip().lower()
    if word == "auto":
        return "auto"
    if word in ("none", "off"):
        return None
    return _non_negative_int(text)


def _parsed_by(module: str, function: str) -> Callable[[str], Any]:
    """An argparse ``type`` calling ``fairpool.tools.<module>.<function>``, imported only when an
    option of that sub-command is given (so that ``--version`` and ``--help`` import neither the
    demo nor the benchmark); its ``ValueError`` becomes a usage error."""

    def convert(text: str) -> Any:
        parse = getattr(importlib.import_module(f"{__package__}.{module}"), function)
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


@dataclass(frozen=True)
class _Command:
    """A sub-command: its own options, the options every sub-command shares (``--duration``, the
    comma-separated list of what it compares, ``--json``) and how it runs."""

    name: str
    help: str
    description: str
    duration: float
    """``--duration``'s default, in seconds ``per`` what."""
    per: str
    compare: str
    """The option listing what to compare, read by ``fairpool.tools.<name>.<parse>``."""
    parse: str
    choices: str
    options: Callable[[argparse.ArgumentParser], None]
    """Adds the sub-command's own options."""
    run: Callable[[argparse.Namespace], int]
    """Runs it; it imports ``fairpool.tools.<name>`` only then."""

    def add_to(self, sub: Any) -> None:
        """Declare this sub-command on ``sub`` (``add_subparsers()``'s result)."""
        command = sub.add_parser(self.name, help=self.help, description=self.description)
        self.options(command)
        command.add_argument(
            "--duration",
            type=_positive_float,
            default=self.duration,
            help=f"seconds {self.per} (default {self.duration:g})",
        )
        command.add_argument(
            self.compare,
            type=_parsed_by(self.name, self.parse),
            default=None,
            help=f"comma-separated: {self.choices}",
        )
        command.add_argument(
            "--json", action="store_true", help="print machine-readable JSON to stdout, no display"
        )


def _demo_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--proxies", type=_positive_int, default=4, help="servers (default 4)")
    command.add_argument(
        "--burst",
        type=_positive_int,
        default=32,
        help="threads borrowing a connection at once in the burst (default 32)",
    )
    command.add_argument(
        "--concurrency",
        type=_positive_int,
        default=2,
        help="threads of the steady load after the burst (default 2)",
    )
    command.add_argument(
        "--idle-timeout",
        type=_seconds_or_off,
        default=1.0,
        metavar="SECONDS",
        help=(
            "fairpool idle_timeout, which makes the pools shrink after the burst (default 1; "
            "'off' keeps every connection; not applied to redis-py, which cannot shrink)"
        ),
    )
    command.add_argument(
        "--min-idle",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="fairpool min_idle: connections kept when shrinking (default 0)",
    )
    command.add_argument(
        "--plot",
        metavar="FILE.png",
        default=None,
        help="also write a bar chart of the shares (needs matplotlib: fairpool[plot])",
    )


def _bench_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--threads",
        type=_parsed_by("bench", "parse_threads"),
        default=(1, 8, 64),
        help="comma-separated thread counts (default 1,8,64)",
    )
    command.add_argument(
        "--repeats",
        type=_positive_int,
        default=3,
        metavar="N",
        help="interleaved repeats of every measurement; median and range are shown (default 3)",
    )
    command.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="cap for every pool (default: one connection per thread)",
    )
    command.add_argument(
        "--url", default=None, help="use this server (redis://...) instead of an embedded one"
    )
    command.add_argument(
        "--cpu",
        type=_cpu,
        default="auto",
        metavar="N|auto|none",
        help=(
            "pin this process and the embedded server to CPU N (Linux): steadier figures on "
            "small VMs, where client and server on different vCPUs make round trips slower "
            "(default auto: the first CPU, where the platform allows; none: no pinning)"
        ),
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``fairpool`` argument parser (sub-commands ``demo`` and ``bench``)."""
    parser = argparse.ArgumentParser(
        prog="fairpool",
        description="A fair drop-in connection pool for redis-py: demo and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"fairpool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for command in _COMMANDS.values():
        command.add_to(sub)
    return parser


# --------------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------------


class _Stopper:
    """SIGINT / SIGTERM set :attr:`stop` so that the run winds down and cleans up; a second
    SIGINT raises ``KeyboardInterrupt`` at once (the servers' atexit hook still stops them)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = self.signum or signum
        self.stop.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Stopper]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in previous:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    @property
    def exit_code(self) -> int:
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _error(command: str, message: str) -> None:
    print(f"fairpool {command}: {message}", file=sys.stderr)


def _print_result(result: Any, out: Console | None, render: Callable[[Any], Any]) -> None:
    """The result on stdout: JSON (``out`` is None in JSON mode) or ``render(result)``."""
    if out is None:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        out.print(render(result))


# Each command imports its module when it runs: ``--version`` and ``--help`` import neither.


def _demo(args: argparse.Namespace) -> int:
    from . import demo
    from .servers import ServerBinaryNotFound, ServerStartError
    from .terminal import DemoView, consoles

    if args.plot and not demo.plot_available():
        _error("demo", demo.PLOT_MISSING)
        return EXIT_USAGE
    config = demo.DemoConfig(
        proxies=args.proxies,
        burst=args.burst,
        concurrency=args.concurrency,
        duration=args.duration,
        policies=args.policies or demo.DEFAULT_POLICIES,
        idle_timeout=args.idle_timeout,
        min_idle=args.min_idle,
    )
    out, err = consoles(args.json)
    stopper = _Stopper()
    view = DemoView(err, config)
    with stopper.installed(), view:
        failure: tuple[int, str] | None = None
        try:
            result = demo.run_demo(
                config, stop=stopper.stop, progress=view.progress, on_servers=view.servers
            )
        except (ServerBinaryNotFound, ServerStartError, MissingExtra) as exc:
            failure = (EXIT_USAGE, str(exc))
        except (demo.DemoInterrupted, KeyboardInterrupt):
            failure = (stopper.exit_code, "interrupted; all servers stopped.")
    if failure is not None:  # reported once the live display is gone
        _error("demo", failure[1])
        return failure[0]
    _print_result(result, out, demo.render_report)
    if args.plot:
        try:
            demo.write_plot(result, args.plot)
        except (OSError, RuntimeError) as exc:
            _error("demo", f"could not write {args.plot}: {exc}")
            return EXIT_FAILURE
        if err is not None:
            err.print(f"Wrote {args.plot}")
    return EXIT_OK


def _bench(args: argparse.Namespace) -> int:
    import redis

    from . import bench
    from .display import mask_url
    from .servers import ServerBinaryNotFound, ServerStartError
    from .terminal import consoles, progress_bar

    try:
        config = bench.BenchConfig(
            threads=args.threads,
            duration=args.duration,
            pools=args.pools or bench.POOL_KINDS,
            url=args.url,
            max_connections=args.max_connections,
            cpu=args.cpu,
            repeats=args.repeats,
        )
    except ValueError as exc:
        _error("bench", str(exc))
        return EXIT_USAGE
    out, err = consoles(args.json)
    stopper = _Stopper()
    with stopper.installed(), progress_bar(err) as progress:
        task = None

        def on_progress(event: bench.BenchProgress) -> None:
            nonlocal task
            if progress is None:
                return
            if task is None:
                task = progress.add_task("", total=event.count * event.duration, ops=0)
            label = f"repeat {event.repeat + 1}/{config.repeats}: {event.pool} x {event.threads}"
            done = event.index * event.duration + min(event.elapsed, event.duration)
            progress.update(task, description=label, completed=done, ops=event.ops)

        failure: tuple[int, str] | None = None
        try:
            result = bench.run_bench(config, stop=stopper.stop, progress=on_progress)
        except (ServerBinaryNotFound, ServerStartError, MissingExtra) as exc:
            failure = (EXIT_USAGE, str(exc))
        except (bench.BenchInterrupted, KeyboardInterrupt):
            failure = (
                stopper.exit_code,
                "interrupted." if args.url else "interrupted; server stopped.",
            )
        except (redis.ConnectionError, redis.TimeoutError, ValueError) as exc:
            if args.url is None:
                raise
            failure = (
                EXIT_USAGE,
                f"cannot use --url {mask_url(args.url)}: {scrub(str(exc), args.url)}",
            )
    if failure is not None:  # reported once the progress display is gone
        _error("bench", failure[1])
        return failure[0]
    _print_result(result, out, bench.render_report)
    return EXIT_OK


_COMMANDS: dict[str, _Command] = {
    command.name: command
    for command in (
        _Command(
            name="demo",
            help="show how LIFO concentrates load on a few proxies and FIFO/round-robin do not",
            description=(
                "Start embedded redis-server processes as stand-in proxies, spread new "
                "connections over them round-robin (as an L4 balancer would), open a burst of "
                "connections, then run a steady low-concurrency load with each policy and show "
                "every proxy's share of the commands (read from the servers' INFO)."
            ),
            duration=5.0,
            per="of steady load per policy",
            compare="--policies",
            parse="parse_policies",
            choices="redis-py,lifo,fifo,round_robin (default: all four)",
            options=_demo_options,
            run=_demo,
        ),
        _Command(
            name="bench",
            help="PING throughput and latency per pool and thread count",
            description=(
                "PING through redis.Redis with fairpool's policies and redis-py's ConnectionPool "
                "and BlockingConnectionPool, at several thread counts, against an embedded "
                "redis-server or --url."
            ),
            duration=1.0,
            per="per measurement",
            compare="--pools",
            parse="parse_pools",
            choices="lifo,fifo,round_robin,redis-py,redis-py-blocking (default: all)",
            options=_bench_options,
            run=_bench,
        ),
    )
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fairpool`` command line; returns the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        return _COMMANDS[args.command].run(args)
    except MissingExtra as exc:  # the message says what to install
        _error(args.command, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error(args.command, "interrupted.")
        return EXIT_SIGINT
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        message = f"failed: {exc!r}"
        url = getattr(args, "url", None)
        if url:
            message = scrub(message, url)
        _error(args.command, message)
        return EXIT_FAILURE
