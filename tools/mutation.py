"""Mutation testing of the I/O-free core and the idle policies (mutmut), and its recorded score.

    python tools/mutation.py run [--jobs N]   mutate the core (core, policies, slot, lifecycle,
                                             upkeep, controls), run the fast I/O-free tests
                                             against every mutant, print the score (killed /
                                             total, per module) and survivors
    python tools/mutation.py record [--jobs N]  the same, then write the score and the fingerprint
                                             of what was tested into docs/mutation.md
    python tools/mutation.py ci [--jobs N]   CI's bounded check: nothing to do when the core, the
                                             policies and their fast tests are what docs/mutation.md
                                             recorded; otherwise a full run, failing under 95 %

The settings live in pyproject.toml (``[tool.mutmut]``: which files are mutated, which tests run).
``FAIRPOOL_MUTATION=1`` makes the property tests derandomized, unshrunk and smaller
(tests/conftest.py, tests/helpers.budget), so one mutant takes seconds. A survivor that is
equivalent to the original (no test could tell them apart) is listed in docs/mutation.md with its
reason; ``record`` names the survivors that have none.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = [
    "fairpool/core.py",
    "fairpool/policies.py",
    "fairpool/slot.py",
    "fairpool/lifecycle.py",
    "fairpool/upkeep.py",
    "fairpool/controls.py",
]
TESTS = [
    "tests/test_core_properties.py",
    "tests/test_core_lifecycle.py",
    "tests/test_core_lifecycle_model.py",
    "tests/test_core_plans.py",
    "tests/test_core_metrics.py",
    "tests/test_core_controls.py",
    "tests/conftest.py",
    "tests/helpers.py",
]
PAGE = ROOT / "docs" / "mutation.md"
TARGET = 0.95
BEGIN, END = "<!-- mutation-score:begin -->", "<!-- mutation-score:end -->"
# mutmut's exit codes: 1 and 3 a test failed (killed), 0 every test passed (survived), 5 and 33
# no test ran the mutated function; timeouts (the mutant loops) count as killed.
KILLED = {1, 3, 36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


def fingerprint() -> str:
    """What a recorded score is valid for: the mutated modules and the tests run against them."""
    digest = hashlib.sha256()
    for name in MODULES + TESTS:
        digest.update(name.encode() + b"\0" + (ROOT / name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def mutmut(jobs: int, budget: float | None) -> bool:
    """Run mutmut afresh; ``False`` if it was stopped after ``budget`` seconds."""
    exe = Path(sys.executable).parent / "mutmut"
    if not exe.exists():
        sys.exit("mutmut is not installed: pip install -e '.[test]'")
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)  # a full, fresh run: no stale results
    env = dict(os.environ, FAIRPOOL_MUTATION="1")
    proc = subprocess.Popen(
        [str(exe), "run", "--max-children", str(jobs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,  # a progress line per mutant
        start_new_session=True,  # its workers in one process group, to stop them together
    )
    try:
        code = proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return False
    if code:
        sys.exit(f"mutmut failed (exit code {code})")
    return True


def results() -> dict[str, dict[str, int | None]]:
    """Exit code of every mutant, per mutated module."""
    out = {}
    for module in MODULES:
        meta = json.loads((ROOT / "mutants" / (module + ".meta")).read_text("utf-8"))
        out[module] = meta["exit_code_by_key"]
    return out


def score(codes: dict[str, dict[str, int | None]]) -> tuple[str, float, list[str]]:
    """A markdown table of the score per module, the overall fraction killed, the survivors."""
    rows = [
        "| module | killed | survived | not run by any test | total | score |",
        "|---|---|---|---|---|---|",
    ]
    killed_all = total_all = 0
    survivors = []
    for module, by_name in codes.items():
        by_name = {n: c for n, c in by_name.items() if c is not None}  # None: not run (yet)
        tally = Counter(
            "killed"
            if c in KILLED
            else "survived"
            if c in SURVIVED
            else "no tests"
            if c in NO_TESTS
            else "other"
            for c in by_name.values()
        )
        survivors += sorted(n for n, c in by_name.items() if c not in KILLED)
        total = len(by_name) or 1
        killed_all += tally["killed"]
        total_all += total
        rows.append(
            f"| `{module}` | {tally['killed']} | {tally['survived'] + tally['other']} | "
            f"{tally['no tests']} | {total} | {tally['killed'] / total:.1%} |"
        )
    ratio = killed_all / (total_all or 1)
    rows.append(f"| **both** | **{killed_all}** | | | **{total_all}** | **{ratio:.1%}** |")
    return "\n".join(rows), ratio, survivors


def explained() -> set[str]:
    """Survivors docs/mutation.md gives a reason for (mutant names in backquotes)."""
    return set(re.findall(r"`(fairpool\.[^`]+__mutmut_\d+)`", PAGE.read_text("utf-8")))


def recorded_fingerprint() -> str | None:
    found = re.search(r"fingerprint `([0-9a-f]+)`", PAGE.read_text("utf-8"))
    return found.group(1) if found else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["run", "record", "ci"])
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="stop after this many seconds and score the mutants tested so far (ci)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="score the results in mutants/ of the last run instead of running mutmut again "
        "(after `mutmut run NAME...` re-tested survivors against new tests)",
    )
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.command == "ci" and recorded_fingerprint() == fingerprint():
        print("mutation: core, policies and their tests are as recorded in docs/mutation.md")
        return 0
    complete = True if args.reuse else mutmut(args.jobs, args.budget)
    table, ratio, survivors = score(results())
    print(table)
    if not complete:
        print(f"stopped after {args.budget:.0f} s: the score is of the mutants tested so far")
        if args.command == "record":
            return 1
    unexplained = [s for s in survivors if s not in explained()]
    for name in survivors:
        print(("  equivalent " if name not in unexplained else "  SURVIVED   ") + name)
    if args.command == "record":
        page = PAGE.read_text("utf-8")
        block = f"{BEGIN}\n{table}\n\nRecorded for fingerprint `{fingerprint()}`.\n{END}"
        page = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, page, flags=re.S)
        PAGE.write_text(page, "utf-8")
        print(f"recorded in {PAGE.relative_to(ROOT)}")
    if unexplained:
        print(
            f"{len(unexplained)} survivors have no reason in docs/mutation.md: kill them with a "
            "test, or explain why they are equivalent"
        )
    if ratio < TARGET:
        print(f"mutation score {ratio:.1%} is below the target of {TARGET:.0%}")
        return 1
    if args.command == "ci":
        print(
            "the core changed since the recorded run: `python tools/mutation.py record` "
            "updates docs/mutation.md"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
