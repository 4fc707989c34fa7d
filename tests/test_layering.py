"""The import rules of the architecture (DESIGN.md, "Layers and the direction of imports")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = set(sys.stdlib_module_names)

# package -> top-level names it may import besides the standard library and itself
ALLOWED = {
    "sequences": {"station", "drivers.interfaces", "numpy"},
    "station": {"drivers", "numpy", "pandas", "scipy", "sqlalchemy", "rich", "alembic", "pyarrow",
                "matplotlib", "starlette", "uvicorn"},  # the last two: the operator page
    "station.analysis": {"numpy", "pandas", "scipy"},
    "drivers": {"pyvisa", "pyvisa_py", "serial", "numpy"},
    "sim_instruments": {"numpy"},
    # the simulated MES shares only the pure retest decision with the station
    "sim_mes": {"station.mes.retest"},
}
FORBIDDEN_INSIDE = {"station": {"sequences", "sim_instruments", "sim_mes"}}


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[:2] == ("station", "analysis"):
        return "station.analysis"
    return parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _allowed(package: str, module: str) -> bool:
    top = module.split(".")[0]
    if top in STDLIB or top == "__future__":
        return True
    own = package.split(".")
    if module.split(".")[: len(own)] == own:
        return True
    if package == "station" and module.startswith("station.") and top not in FORBIDDEN_INSIDE:
        return True
    if package == "sequences" and module == "drivers":
        return False
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[package])


SOURCES = sorted(p for pkg in ALLOWED if "." not in pkg for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    package = _package_of(path)
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for line, module in _imports(path)
        if not _allowed(package, module)
    ]
    assert bad == []


def test_the_rules_catch_a_violation(tmp_path: Path) -> None:
    assert not _allowed("sequences", "drivers.keysight.n7744c")
    assert not _allowed("sequences", "sim_instruments.bench")
    assert not _allowed("station", "sim_instruments.world")
    assert not _allowed("station.analysis", "drivers.base")
    assert not _allowed("drivers", "station.engine")
    assert not _allowed("sim_instruments", "drivers.cmis")
    assert not _allowed("station", "sim_mes.server")
    assert not _allowed("sequences", "sim_mes")
    assert not _allowed("sim_mes", "station.mes.http")
    assert _allowed("sim_mes", "station.mes.retest")
    assert _allowed("sequences", "drivers.interfaces")
    assert _allowed("station", "station.analysis.units")
