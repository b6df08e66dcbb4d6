"""What ``fairpool demo`` and ``fairpool bench`` show on the terminal while they run (rich, the
``demo`` extra, imported when used)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._extras import missing_extra
from .demo import POLICY_LABELS, DemoConfig, DemoProgress, DemoResult, PolicyResult, render_live
from .servers import ServerGroup

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ["DemoView", "consoles", "progress_bar"]


def consoles(json_mode: bool) -> tuple[Console | None, Console | None]:
    """(stdout console, stderr console) — both None in JSON mode.

    Raises:
        MissingExtra: rich is not installed.
    """
    if json_mode:
        return None, None
    try:
        from rich.console import Console
    except ImportError as exc:
        raise missing_extra("fairpool's terminal display", "rich") from exc

    out = Console()
    if not out.is_terminal:  # a pipe or a file: no terminal width to respect
        out = Console(width=max(out.width, 120))
    return out, Console(stderr=True)


@contextlib.contextmanager
def progress_bar(console: Console | None) -> Iterator[Any]:
    """A rich Progress on ``console`` (or None when there is no console)."""
    if console is None or not console.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[ops]:>10,} ops"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        yield progress


class DemoView:
    """What ``fairpool demo`` shows on stderr while it runs.

    On a terminal: a rich ``Live`` table (the final table's layout) whose rows fill in as each
    policy runs — per-proxy share and open connections, sampled from the servers — removed when
    the run ends (the summary goes to stdout). Elsewhere (a pipe, a CI log): one plain line per
    server start and per finished policy. Nothing in JSON mode (``console`` is None).
    """

    def __init__(self, console: Console | None, config: DemoConfig) -> None:
        """A view on ``console`` (None: show nothing) of a run of ``config``."""
        self.console = console
        self.config = config
        self.live: Live | None = None
        self.result: DemoResult | None = None
        self.running: PolicyResult | None = None
        self.status = ""

    def __enter__(self) -> DemoView:
        """Start the live display (on a terminal)."""
        if self.console is not None and self.console.is_terminal:
            from rich.live import Live
            from rich.text import Text

            self.live = Live(
                Text("starting the servers…"),
                console=self.console,
                transient=True,
                refresh_per_second=8,
            )
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Remove the live display."""
        if self.live is not None:
            self.live.stop()

    def servers(self, group: ServerGroup) -> None:
        """``run_demo``'s ``on_servers``: the proxies are up."""
        self.result = DemoResult(
            config=self.config,
            server_binary="",
            server_version="",
            proxies=[f"{s.host}:{s.port}" for s in group],
        )
        if self.console is not None and self.live is None:
            ports = ", ".join(str(s.port) for s in group)
            self.console.print(f"Started {len(group)} redis-server proxies on ports {ports}")
        self._refresh()

    def progress(self, event: DemoProgress) -> None:
        """``run_demo``'s ``progress``: fill in the row of the running policy."""
        if self.console is None or self.result is None:
            return
        label = POLICY_LABELS.get(event.policy, event.policy)
        if event.phase in ("start", "burst"):
            self.running = None
            self.status = f"{label}: burst of {self.config.burst} connections…"
        elif event.phase == "load":
            if event.result is not None:
                self.running = event.result
            self.status = f"{label}: load {event.elapsed:.1f} / {event.duration:g} s"
        elif event.phase == "done" and event.result is not None:
            self.running = None
            self.result.results.append(event.result)
            r = event.result
            self.status = f"{label}: done"
            if self.live is None:
                shares = " ".join(f"{100 * x:.0f}%" for x in r.shares)
                self.console.print(
                    f"{label}: shares {shares}, Jain {r.jain:.2f}, "
                    f"connections {r.open_burst}→{r.open_end}"
                )
        self._refresh()

    def _refresh(self) -> None:
        if self.live is None or self.result is None:
            return
        done = {r.policy for r in self.result.results}
        current = self.running.policy if self.running is not None else None
        pending = [p for p in self.config.policies if p not in done and p != current]
        self.live.update(render_live(self.result, self.running, pending, self.status))
