"""The docs stay true to the code."""

from __future__ import annotations

from pathlib import Path

from fairpool.config import SETTINGS, render_settings_table

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_settings_table_matches_the_validator() -> None:
    text = (DOCS / "settings.md").read_text()
    start = text.index("<!-- settings-table:start -->\n") + len("<!-- settings-table:start -->\n")
    end = text.index("<!-- settings-table:end -->")
    assert text[start:end] == render_settings_table(), (
        "docs/settings.md is stale: regenerate the table with "
        "fairpool.config.render_settings_table()"
    )
    for s in SETTINGS:
        assert f"`{s.name}`" in text
