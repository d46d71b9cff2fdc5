"""The package's architecture (docs/architecture.md): its dependency rules, checked on the code itself.

The layer rules live in pyproject.toml ([tool.importlinter]) and are checked by import-linter; the rules it does
not express (no cycles inside a layer, imports at the top of a module, module length, the documentation naming
every module) are checked here with Python's own parser and grimp, import-linter's import graph.
"""
from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "n2n_raw"
MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)
#: Where an import inside a function is the point: the CLI loads each command's modules when it runs (so
#: ``--help`` stays free of torch), and ``n2n_raw.Denoiser`` is imported on first use for the same reason.
LAZY_ALLOWED = {PKG / "cli.py", PKG / "__init__.py"}
MAX_LINES = 400
REASON = "Over 400 lines, and why:"


def _name(p: Path) -> str:
    parts = p.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_import_contracts_hold():
    """Layers (a module imports only from below), no file access in method/, no torch in io/ and the
    foundation: import-linter's report names any broken rule and the import chain that breaks it."""
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_no_import_cycles():
    graph = grimp.build_graph("n2n_raw")
    cycles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported != "n2n_raw" and graph.chain_exists(importer=imported, imported=importer):
                cycles.append(f"{importer} -> {imported} -> ... -> {importer}")
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("path", [p for p in MODULES if p not in LAZY_ALLOWED], ids=_name)
def test_package_imports_are_at_the_top(path):
    """Inside the package, modules of the package are imported at module level, where the graph can be read."""
    tree = ast.parse(path.read_text())
    inner = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("n2n_raw")):
                    inner.append(f"line {node.lineno}: from {'.' * node.level}{node.module or ''} import ...")
                elif isinstance(node, ast.Import) and any(a.name.startswith("n2n_raw") for a in node.names):
                    inner.append(f"line {node.lineno}: import {node.names[0].name}")
    assert not inner, f"{path.relative_to(ROOT)}: " + "; ".join(inner)


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_short_or_say_why(path):
    text = path.read_text()
    lines = text.count("\n")
    doc = ast.get_docstring(ast.parse(text)) or ""
    assert lines <= MAX_LINES or REASON in doc, f"{path.relative_to(ROOT)}: {lines} lines and no stated reason"


def test_the_architecture_page_names_every_module():
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = []
    for p in MODULES:
        rel = p.relative_to(PKG)
        if p.name in ("__init__.py", "__main__.py") or rel.parts[0] == "io" and rel.parts[1:2] == ("sidd",):
            continue  # packages are named by their folder; io/sidd/'s files are listed on one line
        if f"{rel.name} " not in page and f"{rel.as_posix()}" not in page:
            missing.append(rel.as_posix())
    sidd = sorted(p.stem for p in (PKG / "io" / "sidd").glob("*.py") if p.name != "__init__.py")
    missing += [f"io/sidd/{s}.py" for s in sidd if s.lstrip("_") not in page]
    folders = sorted(d.name for d in PKG.iterdir() if (d / "__init__.py").is_file())
    missing += [f"{d}/" for d in folders if f"{d}/" not in page]
    assert not missing, f"docs/architecture.md does not name: {', '.join(missing)}"


def test_io_and_the_foundation_import_without_torch():
    """Run as a fresh process: importing the file readers, the configuration and the CLI's module must not
    load torch (the CLI's --help and `n2n-raw info` stay fast)."""
    import subprocess
    import sys
    code = ("import sys, n2n_raw.io.camera_raw, n2n_raw.io.dng, n2n_raw.io.sidd, n2n_raw.io.store, "
            "n2n_raw.config, n2n_raw.cli; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
