"""The one table style of ``fairpool demo`` and ``fairpool bench``, and small text helpers.

Borderless tables with a rule under the header, one space between columns, no outer padding:
both commands' tables fit 80 columns. Titles and notes are printed as paragraphs around the table
(not as its title and caption), so they wrap at the terminal's width, not the table's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._extras import missing_extra

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

SPARK = "▁▂▃▄▅▆▇█"
"""Eight bar heights for :func:`sparkline`."""


def table(*columns: tuple[str, str]) -> Table:
    """A table in the shared style; ``columns`` are ``(header, justify)`` pairs."""
    try:
        from rich import box
        from rich.table import Table
    except ImportError as exc:
        raise missing_extra("fairpool's report tables", "rich") from exc

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for header, justify in columns:
        t.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    return t


def wrap(text: str, width: int) -> list[str]:
    """``text`` wrapped at ``width`` columns on spaces, without a widow: when the last line would
    be one word, the line before gives it a word (if that still leaves the line before two)."""
    import textwrap

    lines = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(lines) > 1 and len(lines[-1].split()) == 1:
        before = lines[-2].split(" ")
        moved = f"{before[-1]} {lines[-1]}"
        if len(before) > 2 and len(moved) <= width:
            lines[-2:] = [" ".join(before[:-1]), moved]
    return lines


class Paragraph:
    """Plain text wrapped at the console's width by :func:`wrap` (no widowed last word)."""

    def __init__(self, text: str, style: str = "") -> None:
        """A paragraph of ``text`` drawn in ``style``."""
        self.text = text
        self.style = style

    def __rich_console__(self, console: Any, options: Any) -> Any:
        """Rich's render protocol: one Text per wrapped line."""
        from rich.text import Text

        for line in wrap(self.text, options.max_width):
            yield Text(line, style=self.style)


def report(
    title: str, body: RenderableType, notes: Iterable[str] = (), conclusions: Sequence[str] = ()
) -> RenderableType:
    """``title`` (bold), ``body``, the ``notes`` (dim) and the ``conclusions``, one paragraph
    each, all wrapped at the console's width."""
    try:
        from rich.console import Group
        from rich.text import Text
    except ImportError as exc:
        raise missing_extra("fairpool's reports", "rich") from exc

    parts: list[Any] = [Paragraph(title, style="bold"), body]
    notes = list(notes)
    if notes:
        parts.append(Text(""))
        parts += [Paragraph(note, style="dim") for note in notes]
    if conclusions:
        parts.append(Text(""))
        parts += [Paragraph(line) for line in conclusions]
    return Group(*parts)


def sparkline(values: Sequence[float], width: int, top: float) -> str:
    """``values`` resampled to ``width`` cells (the last value of each slice), each drawn as one of
    :data:`SPARK` scaled to ``top`` (a value of 0 is the lowest bar)."""
    if not values or width < 1:
        return ""
    cells = []
    for i in range(width):
        j = min(len(values) - 1, ((i + 1) * len(values) - 1) // width)
        level = values[j] / top if top > 0 else 0.0
        cells.append(SPARK[max(0, min(len(SPARK) - 1, round(level * (len(SPARK) - 1))))])
    return "".join(cells)


def mask_url(url: str) -> str:
    """``url`` with its password (``user:secret@`` or a ``password=`` query parameter) replaced
    by ``***``, for messages and output; anything that is not a URL is returned unchanged."""
    from urllib.parse import parse_qsl, urlencode, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() == "password" for k, _ in pairs):
            masked = [(k, "***" if k.lower() == "password" else v) for k, v in pairs]
            query = urlencode(masked, safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def secrets_of(url: str) -> list[str]:
    """The passwords written in ``url`` (to scrub them from error messages)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if ":" in userinfo:
        secret = userinfo.split(":", 1)[1]
        found += [secret, unquote(secret)]
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k.lower() == "password" and v:
            found.append(v)
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str | None) -> str:
    """``text`` with every password of ``url`` replaced by ``***``."""
    if not url:
        return text
    text = text.replace(url, mask_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, "***")
    return text
