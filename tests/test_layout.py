"""The package's shape (issue 11): no import cycle between its modules (imports inside
functions included) and no module over ~450 lines."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "corrflow_napari"
MAX_LINES = 460


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & mods.keys()
            deps |= subs or ({target} & mods.keys())
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names} & mods.keys()
    return deps - {name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    mods = _modules()
    graph = {m: _imports(m, p, mods) for m, p in mods.items()}
    assert _cycles(graph) == []


def test_cycle_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_modules_are_short():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_public_api_names_resolve_without_importing_torch_first():
    """``import corrflow_napari`` is cheap (no torch, no Qt); every name in ``__all__``
    resolves to the engine's own function (e.g. ``propagate`` with confidence)."""
    code = ("import sys, corrflow_napari as c\n"
            "assert 'torch' not in sys.modules and 'qtpy' not in sys.modules\n"
            "from corrflow_napari import propagation, tracking, model\n"
            "assert c.propagate is propagation.propagate\n"
            "assert c.propagate_labels is propagation.propagate_labels\n"
            "assert c.track_points is tracking.track_points\n"
            "assert c.load_model is model.load_model\n"
            "assert set(c.__all__) == {'load_model', 'propagate', 'propagate_labels',\n"
            "                          'track_points', '__version__'}\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
