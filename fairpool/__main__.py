"""``python -m fairpool``: the ``fairpool`` command (see :mod:`fairpool.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
