"""The error raised when an optional dependency of the tooling is not installed."""

from __future__ import annotations


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message names it and the pip command."""


def missing_extra(feature: str, module: str, extra: str = "demo") -> MissingExtra:
    """The :class:`MissingExtra` for ``feature`` needing ``module`` from the ``extra`` extra."""
    return MissingExtra(
        f"{feature} needs the {extra!r} extra ({module} is not installed): "
        f"pip install 'fairpool[{extra}]'",
        name=module,
    )
