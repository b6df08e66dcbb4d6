"""The package map in docs/design.md matches the code: every module is in it, and imports only
the fairpool modules its row allows; the I/O-free layer imports no I/O at all."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fairpool"
DESIGN = ROOT / "docs" / "design.md"
SUBPACKAGES = ("scripting", "tools", "contrib")  # taken as a whole: `scripting/`
IO_FREE = (
    "settings",
    "urls",
    "config",
    "errors",
    "metrics/histogram",
    "metrics/window",
    "stats",
    "slot",
    "policies",
    "upkeep",
    "controls",
    "core",
    "endpoints",
    "lifecycle",
)
IO_MODULES = ("redis", "threading", "asyncio", "socket", "select")


def unit_of(path: Path) -> str:
    """The map's name for a module file: ``core``, ``metrics/redispy``, ``scripting/``, ..."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[0] in SUBPACKAGES:
        return parts[0] + "/"
    if parts[-1] == "__init__":
        return "/".join(parts[:-1]) + "/" if len(parts) > 1 else "__init__"
    return "/".join(parts)


def unit_at(parts: list[str]) -> str | None:
    """The unit a dotted module path inside the package names, if it is a module of it."""
    target = PACKAGE.joinpath(*parts)
    if target.with_suffix(".py").exists():
        return unit_of(target.with_suffix(".py"))
    if (target / "__init__.py").exists():
        return unit_of(target / "__init__.py")
    return None


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """The fairpool units and the top-level outside modules ``path`` imports (anywhere in it,
    including ``TYPE_CHECKING`` blocks and function bodies)."""
    here = list(path.relative_to(PACKAGE).parent.parts)
    units: set[str] = set()
    outside: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[list[str]] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = node.module.split(".") if node.module else []
                if node.module:
                    targets.append(base + module)
                targets += [[*base, *module, a.name] for a in node.names]
            elif node.module and node.module.split(".")[0] == "fairpool":
                module = node.module.split(".")[1:]
                targets.append(module)
                targets += [[*module, a.name] for a in node.names]
            elif node.module:
                outside.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "fairpool":
                    targets.append(names[1:])
                else:
                    outside.add(names[0])
        for target in targets:
            unit = unit_at(target) if target else None
            if unit is not None:
                units.add(unit)
    units.discard(unit_of(path))
    return units, outside


def design_map() -> dict[str, set[str]]:
    """docs/design.md's package map: module -> the modules it may import."""
    text = DESIGN.read_text()
    section = text[text.index("## The package map") :]
    rows: dict[str, set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.fullmatch(r"`[\w/]+`", cells[0]):
            if rows and not line.startswith("|"):
                break  # the table ended
            continue
        rows[cells[0].strip("`")] = set(re.findall(r"`([\w/]+)`", cells[2]))
    return rows


MAP = design_map()
MODULES = sorted({unit_of(p) for p in PACKAGE.rglob("*.py")})


def test_the_map_lists_every_module_and_nothing_else() -> None:
    assert set(MAP) == set(MODULES)


@pytest.mark.parametrize("unit", MODULES)
def test_imports_follow_the_map(unit: str) -> None:
    files = [p for p in PACKAGE.rglob("*.py") if unit_of(p) == unit]
    found: set[str] = set()
    for path in files:
        found |= imports_of(path)[0]
    assert found <= MAP[unit], f"{unit} imports {sorted(found - MAP[unit])} (not in its row)"


@pytest.mark.parametrize("unit", IO_FREE)
def test_the_core_layer_does_no_io(unit: str) -> None:
    _units, outside = imports_of(PACKAGE / f"{unit}.py")
    allowed = {"redis"} if unit == "errors" else set()  # redis-py's exception classes only
    assert not (outside & set(IO_MODULES)) - allowed, sorted(outside)
    assert MAP[unit] <= set(IO_FREE), f"{unit} may import only the I/O-free layer"


def test_the_map_has_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(unit: str, path: tuple[str, ...]) -> None:
        assert unit not in path, " -> ".join((*path, unit))
        if seen.get(unit):
            return
        for other in MAP.get(unit, ()):
            visit(other, (*path, unit))
        seen[unit] = 1

    for unit in MAP:
        visit(unit, ())
