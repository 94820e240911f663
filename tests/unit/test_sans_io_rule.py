"""The protocol cores import no asyncio, sockets, clocks or threads (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "sanstack"
CORE_PACKAGES = ("iscsi", "scsi", "mpio", "nbd")
CORE_MODULES = (
    "target/config.py",
    "target/target.py",
    "target/registry.py",
    "snapshot/model.py",
    "snapshot/layout.py",
    "snapshot/state.py",
    "snapshot/schedule.py",
)
FORBIDDEN = {"asyncio", "socket", "time", "threading", "selectors", "uvloop", "concurrent"}


def core_files() -> list[Path]:
    files = [f for pkg in CORE_PACKAGES for f in sorted((SRC / pkg).rglob("*.py"))]
    return files + [SRC / m for m in CORE_MODULES]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_core_module_is_sans_io(path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_there_are_core_modules() -> None:
    assert len(core_files()) >= 8
