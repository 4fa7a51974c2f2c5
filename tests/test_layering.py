"""The layering, read from the source: no import cycles, `classifiers` never imports model or
engine code, `cli/` only parses and prints, and library modules stay short or say why.

Imports are read with `ast` from every module of `embedcache`, `classifiers` and `cli`,
including imports inside functions (a deferred import is still a dependency). An edge goes to
the module named: `from a.b import c` is an edge to `a.b.c` when that is a module, else to
`a.b`; a package's `__init__` is a node like any other module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("embedcache", "classifiers", "cli")
MAX_LINES = 400
# What the command-line layer may import of embedcache besides its own modules and the
# classifiers library (which holds no model code): the public faces, never the model, engine or
# store internals.
CLI_ALLOWED = ("embedcache", "embedcache.errors", "embedcache.checkpoints", "embedcache.request", "embedcache.store",
               "embedcache.attention_plot", "embedcache.sequences.readers", "embedcache.variants",
               "embedcache.util.ranges")
CLI_FORBIDDEN_ROOTS = ("numpy", "pandas", "jax", "zarr", "sklearn", "xgboost", "matplotlib", "pyarrow", "h5py")
# Model and engine code: what classifiers must never need (JAX itself is fine: the MLP and
# layer-weighted probes are JAX + Optax).
MODEL_CODE = ("embedcache.families", "embedcache.engine", "embedcache.build", "embedcache.checkpoints")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                out.append((child if child in MODULES else base, node.lineno))
    return out


GRAPH = {name: sorted({m for m, _ in _imports(path) if m in MODULES and m != name}) for name, path in MODULES.items()}


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        comp.append(top)
                        if top == node:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))
    return comps


def test_the_reader_sees_the_whole_tree():
    assert {"embedcache.cache", "embedcache.families.base", "classifiers.runs.fit", "cli.embedcache_app"} <= MODULES.keys()
    assert "embedcache.families.base" in GRAPH["embedcache.checkpoints.base"]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_every_module_imports_on_its_own():
    """An import cycle through a package's ``__init__`` shows only in some import orders (a
    submodule imported first meets its package half-initialized); the graph above does not see
    those, so each module is imported first, alone, with every project module forgotten."""
    import json
    import subprocess
    import sys

    script = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    for m in [m for m in sys.modules if m.split('.')[0] in ('embedcache', 'classifiers', 'cli')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(failed))\n"
    )
    names = sorted(MODULES)
    done = subprocess.run([sys.executable, "-c", script, json.dumps(names)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("classifiers")))
def test_classifiers_never_import_model_or_engine_code(name):
    bad = [(m, line) for m, line in _imports(MODULES[name]) if m.startswith(MODEL_CODE)]
    assert bad == [], f"{name} imports model/engine code: {bad}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("cli")))
def test_cli_only_parses_and_prints(name):
    path = MODULES[name]
    imports = _imports(path)
    data = [(m, line) for m, line in imports if m.split(".")[0] in CLI_FORBIDDEN_ROOTS]
    assert data == [], f"{name} works on data itself (imports {data}); that belongs in a library"
    ours = [(m, line) for m, line in imports
            if m.split(".")[0] in PACKAGES and m not in CLI_ALLOWED and not m.startswith(("cli.", "classifiers"))]
    assert ours == [], f"{name} reaches past the libraries' public modules: {ours}"
    if name == "cli.embedcache_app":
        assert "classifiers" not in {m.split(".")[0] for m, _ in imports}, "the embedding CLI imports classifiers"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not m.startswith("cli")))
def test_library_modules_are_short_or_say_why(name):
    path = MODULES[name]
    lines = len(path.read_text().splitlines())
    if lines > MAX_LINES:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "Length:" in doc, (f"{path.relative_to(ROOT)} has {lines} lines (> {MAX_LINES}): split it, or "
                                  "state in its docstring, on a line starting 'Length:', why it is one module")
