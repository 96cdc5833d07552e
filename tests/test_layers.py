"""The layer rules, read from the source (AST), so a violation fails the suite.

- the CLI (``live_deepz.commands``) is imported only by ``live_deepz.cli`` and the commands;
- no module imports another subpackage's private ``_module`` (use the package's public
  face); a subpackage (engine, recording, analysis, ...) includes its nested packages;
- the core (``live_deepz`` without ``commands``/``cli``) imports none of engine,
  calibration, ui;
- Qt (qtpy, PySide, PyQt, pyqtgraph) is imported only in ui.

Every ``import`` counts, also those inside functions (lazy imports are still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "live_deepz": "live_deepz",
    "engine": "live_deepz.engine",
    "calibration": "live_deepz.calibration",
    "ui": "live_deepz.ui",
}
"""Source folder -> the package it installs as (pyproject's package-dir)."""
OUTER_LAYERS = ("live_deepz.engine", "live_deepz.calibration", "live_deepz.ui")
CLI = ("live_deepz.cli", "live_deepz.commands")
QT = ("qtpy", "PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _is_core(name: str) -> bool:
    return not any(_within(name, p) for p in OUTER_LAYERS + CLI)


def source_modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``) for every installed source file."""
    found: dict[str, tuple[Path, bool]] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("").parts
            is_pkg = rel[-1] == "__init__"
            parts = [package, *(rel[:-1] if is_pkg else rel)]
            name = ".".join(parts)
            if folder == "live_deepz" and any(_within(name, p) for p in OUTER_LAYERS):
                continue  # (symlinks of an installed tree, never in a checkout)
            found[name] = (path, is_pkg)
    return found


def imported_names(module: str, is_pkg: bool, source: str, known: set[str]) -> list[str]:
    """Every module ``source`` imports (resolved; ``from pkg import x`` counts ``pkg.x``
    when that is a module of ours)."""
    package = module if is_pkg else module.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            out.append(target)
            out += [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
    return out


def violations(module: str, imports: list[str]) -> list[str]:
    """The layer rules broken by ``module`` importing ``imports``."""
    bad: list[str] = []
    for target in imports:
        if _within(target, "live_deepz.commands") and not any(_within(module, p) for p in CLI):
            bad.append(f"{module} imports the CLI ({target})")
        if _is_core(module) and any(_within(target, p) for p in OUTER_LAYERS):
            bad.append(f"core module {module} imports {target}")
        if target.split(".")[0] in QT and not _within(module, "live_deepz.ui"):
            bad.append(f"{module} imports Qt ({target}) outside ui/")
        parts = target.split(".")
        if parts[0] != "live_deepz":
            continue
        for i, part in enumerate(parts[1:], start=1):
            if part.startswith("_") and not part.startswith("__"):
                # a private module is for its own subpackage (engine, recording, ... with
                # their nested packages); the root's (live_deepz._x) for live_deepz/ itself
                owner = ".".join(parts[: min(i, 2)])
                in_root = not any(_within(module, p) for p in OUTER_LAYERS)
                allowed = in_root if owner == "live_deepz" else _within(module, owner)
                if not allowed:
                    bad.append(f"{module} imports {owner}'s private module {target}")
                break
    return bad


def _all_violations() -> list[str]:
    mods = source_modules()
    known = set(mods)
    bad: list[str] = []
    for name, (path, is_pkg) in mods.items():
        imports = imported_names(name, is_pkg, path.read_text(encoding="utf-8"), known)
        bad += violations(name, imports)
    return sorted(set(bad))


def test_the_sources_keep_the_layer_rules() -> None:
    mods = source_modules()
    assert "live_deepz.engine._pipeline" in mods and "live_deepz.ui._session" in mods
    assert _all_violations() == []


@pytest.mark.parametrize(
    ("module", "source", "words"),
    [
        ("live_deepz.ui._x", "from live_deepz.commands.record import run", "imports the CLI"),
        ("live_deepz.engine._x", "import live_deepz.commands.info", "imports the CLI"),
        ("live_deepz.calibration._x", "from live_deepz.commands import demo", "imports the CLI"),
        ("live_deepz.analysis.fwhm", "from ..commands import eval", "imports the CLI"),
        ("live_deepz.ui._x", "from live_deepz.engine._recorder import Recorder", "private"),
        ("live_deepz.commands.x", "from ..engine._offline import read_input", "private"),
        ("live_deepz.engine._x", "from live_deepz.recording._writer import W", "private"),
        ("live_deepz.commands.x", "from ..analysis.evaluation._run import S", "private"),
        ("live_deepz.engine._x", "from live_deepz import _sim_devices", "private"),
        ("live_deepz.recording._x", "from ..engine import Recorder", "core module"),
        ("live_deepz.io", "from live_deepz.calibration import fit_surface", "core module"),
        ("live_deepz.engine._x", "from qtpy import QtCore", "Qt"),
    ],
)
def test_a_violation_is_caught(module: str, source: str, words: str) -> None:
    known = set(source_modules())
    is_pkg = False
    imports = imported_names(module, is_pkg, source, known)
    assert any(words in v for v in violations(module, imports)), imports


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("live_deepz.engine._pipeline", "from ._rings import FrameRing"),
        ("live_deepz.engine._x", "from live_deepz.engine.backends._base import Backend"),
        ("live_deepz.commands.record", "from ..engine import Recorder"),
        ("live_deepz.training.trainer", "from .._version import __version__"),
        ("live_deepz.ui._session", "from live_deepz.calibration import drift_every_n"),
    ],
)
def test_allowed_imports_pass(module: str, source: str) -> None:
    imports = imported_names(module, False, source, set(source_modules()))
    assert violations(module, imports) == []
