"""The package's layering, enforced: no module imports from a layer above its own.

The layer order is written down here, independently of the code (docs/architecture.md explains
it). Every ``import``/``from … import`` anywhere in a module counts, including the lazy ones
inside functions. A new module belongs to the layer of its package; a new top-level module must be
given a layer below.
"""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "osnmf"

# low → high; a module may import from its own layer and the layers before it.
LAYERS = [
    ("base", ["osnmf.errors", "osnmf.atomic", "osnmf._version", "osnmf.progress", "osnmf.run", "osnmf.recipes",
              "osnmf.constraints", "osnmf.linalg"]),
    ("formats", ["osnmf.formats"]),
    ("data types", ["osnmf.atlas", "osnmf.expression"]),
    ("readers", ["osnmf.io"]),
    ("datasets", ["osnmf.datasets"]),
    ("preprocess", ["osnmf.preprocess"]),
    ("factorize", ["osnmf.factorize"]),
    ("baselines", ["osnmf.baselines"]),
    ("analyses", ["osnmf.spatial", "osnmf.interpret", "osnmf.evaluate"]),
    # the settings of a run (its parameter table) and what its stages made
    ("results", ["osnmf.config", "osnmf.params_table", "osnmf.results"]),
    ("presentation", ["osnmf.plotting", "osnmf.report", "osnmf.viewer", "osnmf.qtcheck"]),
    ("pipeline", ["osnmf.pipeline", "osnmf.project", "osnmf.project_cells", "osnmf.accept"]),
    ("cli", ["osnmf.cli"]),
]
TOP = "osnmf"  # the package __init__: lazy re-exports only, imports nothing but base


def layer_of(module: str) -> int:
    """Index of the layer of ``module``: the longest matching prefix wins."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise AssertionError(f"{module} has no layer: add it (or its package) to LAYERS in tests/test_layers.py "
                             "and to docs/architecture.md")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _module_level(tree: ast.Module):
    """The nodes run at import time: everything outside function bodies."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, module: str, known: set[str], import_time_only: bool = False) -> set[str]:
    """osnmf modules imported in the file (``from osnmf import x`` → ``osnmf.x`` for submodules):
    anywhere, including inside functions, or only at import time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in (_module_level(tree) if import_time_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "osnmf")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "osnmf":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in known else base)
    return out


def test_layers_cover_every_module_and_name_real_packages():
    modules = _modules()
    for name in modules:
        if name != TOP:
            layer_of(name)
    for _, prefixes in LAYERS:
        for p in prefixes:
            assert any(m == p or m.startswith(p + ".") for m in modules) or p in {"osnmf.results"}, \
                f"LAYERS names {p}, which does not exist"


def test_no_import_from_a_higher_layer():
    modules = _modules()
    known = set(modules)
    bad = []
    for name, path in modules.items():
        for target in imports_of(path, name, known):
            if target == TOP:
                if name != TOP:
                    bad.append(f"{name} imports from the package root 'osnmf' (import from the defining module)")
                continue
            if name == TOP:
                if layer_of(target) != 0:
                    bad.append(f"osnmf/__init__.py imports {target} eagerly (keep it lazy)")
                continue
            if layer_of(target) > layer_of(name):
                bad.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("import_time_only", [True, False], ids=["import-time", "lazy-included"])
def test_module_imports_have_no_cycles(import_time_only):
    """No module imports itself through others: neither at import time nor through the lazy imports
    inside functions (a lazy import that closes a loop is the same knot, merely postponed)."""
    modules = _modules()
    known = set(modules)
    graph = {name: {t for t in imports_of(path, name, known, import_time_only=import_time_only)
                    if t in known and t != name and t != TOP}
             for name, path in modules.items() if name != TOP}
    # a package's __init__ re-exporting its own modules is not a cycle of concerns
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The parser itself, on a module written here: imports inside functions and relative ones count."""
    pkg = tmp_path / "osnmf" / "spatial"
    pkg.mkdir(parents=True)
    (tmp_path / "osnmf" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    f = pkg / "demo.py"
    f.write_text("import numpy\n\ndef g():\n    from osnmf.report.files import write_outputs\n"
                 "    from ..pipeline import run_pipeline\n    from . import moran\n")
    known = {"osnmf.spatial.moran", "osnmf.report.files", "osnmf.pipeline"}
    found = imports_of(f, "osnmf.spatial.demo", known)
    assert found == {"osnmf.report.files", "osnmf.pipeline", "osnmf.spatial.moran"}
    assert imports_of(f, "osnmf.spatial.demo", known, import_time_only=True) == set()
    assert layer_of("osnmf.report.files") > layer_of("osnmf.spatial.demo")  # would be reported


def test_modules_export_only_what_they_define():
    """No re-exports kept for old import paths: every name in a module's ``__all__`` is defined
    there (a package's ``__init__`` is its public face and may gather its modules' names)."""
    bad = []
    for name, path in _modules().items():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined, exported = set(), []
        todo = list(tree.body)
        while todo:  # module level, into if/try blocks (not into functions or classes)
            node = todo.pop()
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                todo += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", []) + [
                    stmt for handler in getattr(node, "handlers", []) for stmt in handler.body]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Name):
                    defined.add(target.id)
                    if target.id == "__all__":
                        exported = list(ast.literal_eval(node.value))
        bad += [f"{name}: {n}" for n in exported if n not in defined]
    assert not bad, "re-exported names (import them from their defining module):\n" + "\n".join(bad)


def test_each_package_sits_in_one_layer():
    """A folder is one room: all modules of a subpackage share its layer, so no arrow points back
    into a package from a layer between its modules (as once atlas.py ← io/metaimage.py while
    io/'s readers imported Atlas)."""
    by_package: dict[str, set[str]] = {}
    for name, path in _modules().items():
        if name == TOP:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top_package = ".".join(package.split(".")[:2])
        if top_package != TOP:
            by_package.setdefault(top_package, set()).add(LAYERS[layer_of(name)][0])
    mixed = {p: sorted(layers) for p, layers in by_package.items() if len(layers) > 1}
    assert not mixed, f"packages spanning layers: {mixed}"


def test_the_report_reads_results_and_computes_no_statistics():
    """report/, plotting/ and the viewer read stage results: they import none of the modules that
    compute a run's statistics (spatial/: Moran's I, region links; evaluate/: metrics, comparisons;
    baselines/). The links, the largest Moran's I and the γ argmin are stage results now."""
    computing = ("osnmf.spatial", "osnmf.evaluate", "osnmf.baselines")
    modules = _modules()
    known = set(modules)
    bad = [f"{name} imports {target}" for name, path in modules.items() if name != TOP
           if layer_of(name) == [n for n, _ in LAYERS].index("presentation")
           for target in imports_of(path, name, known) if target.startswith(computing)]
    assert not bad, bad
