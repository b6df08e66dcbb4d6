"""fairpool's tooling: test servers, the demo, the benchmark and the ``fairpool`` command.

Nothing in the runtime package imports these modules. Each one imports on a plain
``pip install fairpool``: the optional dependencies (the ``demo`` and ``plot`` extras) are imported
where they are used, and a missing one raises :class:`MissingExtra` with the install hint.
"""

from __future__ import annotations

from ._extras import MissingExtra

__all__ = ["MissingExtra"]
