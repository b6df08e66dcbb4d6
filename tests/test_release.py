"""The release build (``.ci/release-check``, docs/release.md): sdist and wheel build, pass
``twine check --strict``, and the wheel, installed on its own, is a working ``fairpool``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "release-check"


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_release_check_builds_a_complete_wheel(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASSED" in proc.stdout and "release-check:" in proc.stdout
    (wheel,) = out.glob("fairpool-*.whl")
    (sdist,) = out.glob("fairpool-*.tar.gz")
    assert sdist.stat().st_size > 10_000
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Provides-Extra: demo" in text and "Provides-Extra: release" in text
    assert "Description-Content-Type: text/markdown" in text
    # the wheel alone (not this checkout) is importable and runs the command
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=110,
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(site)!r}); import fairpool, fairpool.tools.cli; "
            "print(fairpool.__file__); sys.argv = ['fairpool', '--version']; "
            "fairpool.tools.cli.main()",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.stdout.startswith(str(site)), probe.stdout + probe.stderr
    assert "fairpool 0." in probe.stdout, probe.stdout + probe.stderr
