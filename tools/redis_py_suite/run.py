"""Run redis-py's own connection-pool tests through fairpool's pools, and compare with redis-py's.

    .venv/bin/pip install -e '.[redis-py-tests]'     # pytest-asyncio, which redis-py's tests use
    .venv/bin/python tools/redis_py_suite/run.py      # exit status 0: no unexpected difference

What it does:

1. gets the sdist of the installed redis-py version (``pip download --no-binary :all: --no-deps
   redis==<version>``, cached in ``~/.cache/fairpool/redis-py-suite/``) and copies its ``tests/``
   and ``pyproject.toml`` (pytest's settings) to a scratch directory — the tests then import the
   installed ``redis``, not the sdist's copy;
2. starts a redis-server on a free port (never 6379) with ``fairpool.tools.servers.RedisServer``;
3. runs ``tests/test_connection_pool.py``, ``tests/test_connection.py`` and their asyncio twins
   twice: as they are (redis-py's pools), and with the ``fairpool_swap`` plugin, which puts
   fairpool's pool classes in place of redis-py's everywhere in the ``redis`` package;
4. compares the two runs test by test. A test that passes with redis-py's pools and fails with
   fairpool's is an unexpected difference unless ``expected_differences.txt`` lists it (with the
   reason; docs/migrating.md explains them). Listed tests that pass are reported as stale.

Prints the pass/fail counts of both runs (docs/migrating.md records them).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from fairpool.tools.servers import RedisServer, find_redis_server, server_version

HERE = Path(__file__).resolve().parent
MODULES = (
    "tests/test_connection_pool.py",
    "tests/test_connection.py",
    "tests/test_asyncio/test_connection_pool.py",
    "tests/test_asyncio/test_connection.py",
)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fairpool/redis-py-suite"


def sdist(version: str) -> Path:
    """The redis-py sdist of ``version`` (downloaded once, then cached)."""
    target = CACHE / version
    found = sorted(target.glob("redis-*.tar.gz"))
    if found:
        return found[0]
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:"),
            *("--no-deps", "-d", str(target), f"redis=={version}"),
        ],
        check=True,
    )
    return sorted(target.glob("redis-*.tar.gz"))[0]


def unpack_tests(archive: Path, into: Path) -> Path:
    """Copy the sdist's ``tests/`` and ``pyproject.toml`` into ``into`` (not its ``redis/``)."""
    with tarfile.open(archive) as tar:
        root = tar.getnames()[0].split("/")[0]
        members = [
            m
            for m in tar.getmembers()
            if m.name.startswith((f"{root}/tests/", f"{root}/pyproject.toml"))
        ]
        if hasattr(tarfile, "data_filter"):  # Python ≥ 3.10.12 / 3.11.4
            tar.extractall(into, members=members, filter="data")
        else:
            tar.extractall(into, members=members)  # redis-py's own sdist
    return into / root


def run_pytest(root: Path, url: str, swap: bool, junit: Path, extra: list[str]) -> int:
    env = dict(os.environ)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore"]
    args += ["-o", "addopts=", "--timeout=60", f"--junitxml={junit}", f"--redis-url={url}"]
    if swap:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        args += ["-p", "fairpool_swap"]
    proc = subprocess.run([*args, *MODULES, *extra], cwd=root, env=env)
    return proc.returncode


def outcomes(junit: Path) -> dict[str, str]:
    """``{test id: "passed" | "failed" | "skipped"}`` from a JUnit XML report."""
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            result[name] = "failed"
        elif case.find("skipped") is not None:
            result[name] = "skipped"
        else:
            result[name] = "passed"
    return result


def expected_differences() -> dict[str, str]:
    """``{test id: reason}`` from ``expected_differences.txt`` (``id  # reason`` per line)."""
    listed: dict[str, str] = {}
    for line in (HERE / "expected_differences.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            test, _, reason = line.partition("#")
            listed[test.strip()] = reason.strip()
    return listed


def counts(results: dict[str, str]) -> str:
    tally = {k: sum(1 for v in results.values() if v == k) for k in ("passed", "failed", "skipped")}
    return ", ".join(f"{v} {k}" for k, v in tally.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=importlib.metadata.version("redis"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("pytest_args", nargs="*", help="passed on to pytest (e.g. -k ...)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="fairpool-redis-py-suite-"))
    try:
        root = unpack_tests(sdist(args.version), scratch)
        binary = find_redis_server()
        server_args = ["--save", "", "--appendonly", "no"]
        if server_version(binary) >= (7, 0, 0):
            server_args += ["--enable-debug-command", "yes"]  # redis-py's tests use DEBUG
        with RedisServer(binary=binary, name="redis-py-suite", args=server_args) as server:
            url = f"redis://{server.host}:{server.port}/0"
            run_pytest(root, url, False, scratch / "redis-py.xml", args.pytest_args)
            run_pytest(root, url, True, scratch / "fairpool.xml", args.pytest_args)
        theirs = outcomes(scratch / "redis-py.xml")
        ours = outcomes(scratch / "fairpool.xml")
        print(f"\nredis-py {args.version}'s tests ({', '.join(MODULES)}):")
        print(f"  redis-py's pools: {counts(theirs)}")
        print(f"  fairpool's pools: {counts(ours)}")
        listed = expected_differences()
        worse = sorted(t for t, o in ours.items() if o == "failed" and theirs.get(t) == "passed")
        unexpected = [t for t in worse if t not in listed]
        stale = sorted(t for t in listed if ours.get(t) == "passed")
        for t in worse:
            print(f"  {'expected' if t in listed else 'UNEXPECTED'}: {t}  {listed.get(t, '')}")
        for t in stale:
            print(f"  stale entry (passes now): {t}")
        return 1 if unexpected else 0
    finally:
        if args.keep:
            print(f"scratch directory kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
