"""No product module imports the evaluation package (the command-line shell, ``cli*``, may).

Two checks: every product source file is parsed for an import naming ``evaluation``
(imports inside functions included), and a fresh interpreter imports the Qt-free product
modules and finds ``corrflow_napari.evaluation`` not loaded. The widgets are parsed but not
imported (napari and Qt take seconds to import; their files are covered by the parse)."""
import ast
import subprocess
import sys
from pathlib import Path

import corrflow_napari

PACKAGE = Path(corrflow_napari.__file__).parent
SHELL = "corrflow_napari.cli"          # cli.py, cli_*.py, or a cli/ package


def _product_modules() -> list[str]:
    """Every module of the package but the evaluation ones and the shells, found from the
    files (``pkgutil.walk_packages`` would import the packages, evaluation included)."""
    names = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        names.append(".".join(("corrflow_napari",) + parts))
    return sorted(n for n in names if not n.startswith(SHELL) and n != "corrflow_napari"
                  and not n.startswith("corrflow_napari.evaluation"))


def test_product_modules_do_not_import_evaluation_at_import_time():
    # one fresh interpreter imports every product module in turn and names the first one
    # after whose import corrflow_napari.evaluation is loaded
    mods = [m for m in _product_modules() if not m.startswith("corrflow_napari.widgets")]
    assert "corrflow_napari.propagation" in mods and "corrflow_napari.io" in mods
    code = ("import importlib, sys\n"
            f"for name in {mods!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'corrflow_napari.evaluation' in sys.modules:\n"
            "        sys.exit('imported by ' + name)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_no_product_source_names_evaluation():
    # imports inside functions too: ``from .evaluation``, ``from ..evaluation``, absolute
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "evaluation" or rel.parts[0].startswith("cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(n == "evaluation" or n.startswith("evaluation.") or ".evaluation" in n
                   for n in names):
                bad.append(f"{rel}:{node.lineno}")
    assert not bad, f"product modules import corrflow_napari.evaluation: {bad}"
