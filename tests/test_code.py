"""The house rules, checked on the source: no import circle, no long function, and the layout's
rules (layers, depth, module sizes, package faces, no private imports across packages).

Both read the package's source with `ast` (nothing is imported), so they run in well under a second.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nas"
MAX_LINES = 60
# Allowed to be longer: the training loop (one loop, read top to bottom).
LONG_ALLOWED = {"train.loop.train"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """The dotted name below the package of a file: 'run.folder', 'search' (a package's __init__)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) or "__init__"


def _modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(tree: ast.Module, package: str = "nas", known: set[str] | None = None) -> set[str]:
    """The modules of `package` that `tree` imports, anywhere in it (top level or inside functions),
    as dotted names below the package; `from nas.run import pareto` names 'run.pareto' when that
    is one of the `known` modules."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split(".")
            if parts[0] != package:
                continue
            base = ".".join(parts[1:])
            for a in node.names:
                sub = f"{base}.{a.name}" if base else a.name
                found.add(sub if not base or (known is not None and sub in known) else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".", 1)[1] for a in node.names if a.name.startswith(package + ".")}
    return found - {""}


def long_functions(tree: ast.Module, module: str, limit: int = MAX_LINES) -> dict[str, int]:
    """`module.name` -> lines (the `def` line to the last, docstring included) of each function over `limit`."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found[f"{module}.{node.name}"] = lines
    return found


def test_the_checks_see_a_circle_and_a_long_function() -> None:
    a = ast.parse("from nas.b import x\n")
    b = ast.parse("def f():\n    import nas.a\n")
    graph = {"a": imports_of(a), "b": imports_of(b)}
    assert graph == {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    assert long_functions(ast.parse(f"def g():\n{body}\n"), "m") == {"m.g": MAX_LINES + 1}
    assert long_functions(ast.parse(f"def g():\n{body}\n"), "m", limit=MAX_LINES + 1) == {}


def test_the_import_graph_of_nas_has_no_circle() -> None:
    modules = _modules()
    graph = {name: imports_of(tree, known=set(modules)) - {name} for name, tree in modules.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_no_function_is_over_60_lines_but_the_training_loop() -> None:
    found = {}
    for name, tree in _modules().items():
        found |= long_functions(tree, name)
    over = sorted((k, v) for k, v in found.items() if k not in LONG_ALLOWED)
    assert not over, f"functions over {MAX_LINES} lines: {over}"


# --------------------------------------------------------------------------- the layout's rules

MAX_MODULE_LINES = 600
MAX_LEVELS = 10  # a module's level: 0 if it imports nothing of nas, else one above the highest it imports
# The packages (and top-level modules) in layers, lowest first: a module imports its own package
# and lower layers only. A command module (`<package>.cli`, `<package>.__main__`) is above them all.
LAYERS = [
    {"errors", "checks", "cli"},
    {"net"},
    {"data"},
    {"proxy"},
    {"space"},
    {"train"},
    {"run"},
    {"samplers"},
    {"trial"},
    {"tune"},
    {"search"},
    {"fidelity"},
    {"calibrate", "dashboard", "export"},
    {"__init__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str:
    """The package (or top-level module) a module belongs to: 'run' for 'run.folder'."""
    return module.split(".")[0]


def is_command(module: str) -> bool:
    return module.endswith((".cli", ".__main__"))


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's level in an import graph without circles."""
    out: dict[str, int] = {}
    for name in graphlib.TopologicalSorter(graph).static_order():
        out[name] = 1 + max((out[d] for d in graph[name] if d in out), default=-1)
    return out


def _graph(runtime: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of nas it imports; `runtime`: leave out what only type checkers read
    (`if TYPE_CHECKING:` blocks)."""
    modules = _modules()
    if runtime:
        modules = {name: _without_type_checking(tree) for name, tree in modules.items()}
    return {name: imports_of(tree, known=set(modules)) & set(modules) - {name} for name, tree in modules.items()}


class _DropTypeChecking(ast.NodeTransformer):
    def visit_If(self, node: ast.If) -> ast.AST | list[ast.stmt] | None:
        test = node.test
        if getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING":
            return node.orelse or None
        return self.generic_visit(node)


def _without_type_checking(tree: ast.Module) -> ast.Module:
    return _DropTypeChecking().visit(ast.parse(ast.unparse(tree)))


def entry_points(graph: dict[str, set[str]]) -> set[str]:
    """What `python -m` runs and what users import: the `__main__` shims and the package faces.
    No module of nas imports them (test below), so they sit on top of the graph, not in its depth."""
    packages = {p.parent.relative_to(PACKAGE).as_posix().replace("/", ".") for p in PACKAGE.rglob("__init__.py")}
    return {m for m in graph if m.endswith("__main__") or m in packages or m == "__init__"}


def test_the_layout_checks_see_a_deep_graph_an_upward_import_and_a_private_one() -> None:
    chain = {f"m{i}": {f"m{i - 1}"} if i else set() for i in range(12)}
    assert max(levels(chain).values()) == 11
    assert upward_imports({"net.arch": {"run.folder"}, "run.folder": set()}) == ["net.arch -> run.folder"]
    assert upward_imports({"search.cli": {"dashboard.html"}, "dashboard.html": set()}) == []
    assert private_imports({"search.study": {"samplers._evolution"}, "samplers._evolution": set()}) == [
        "search.study -> samplers._evolution"
    ]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a module to a package of a higher layer (commands may import anything)."""
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        if not is_command(m)
        for d in deps
        if LAYER[unit_of(d)] > LAYER[unit_of(m)]
    )


def private_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports of another package's `_private` module."""
    return sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if unit_of(d) != unit_of(m) and any(part.startswith("_") and part != "__init__" for part in d.split("."))
    )


def test_the_import_graph_is_at_most_10_levels_deep() -> None:
    """Levels 0..9 over what the modules import when they run; the entry points sit above."""
    graph = _graph(runtime=True)
    entries = entry_points(graph)
    lv = levels({m: deps - entries for m, deps in graph.items() if m not in entries})
    deepest = max(lv, key=lv.get)
    assert lv[deepest] < MAX_LEVELS, f"{deepest} is at level {lv[deepest]}: {sorted(lv.items(), key=lambda kv: kv[1])}"


def test_no_module_of_nas_imports_a_package_face_or_a_main() -> None:
    """Inside nas, the defining module is imported (a face is for users): this keeps the graph shallow."""
    graph = _graph()
    entries = entry_points(graph)
    faces = sorted(f"{m} -> {d}" for m, deps in graph.items() if m not in entries for d in deps & entries)
    assert not faces, faces


def test_every_module_is_in_a_layer_and_imports_nothing_above_it() -> None:
    graph = _graph()
    assert not {unit_of(m) for m in graph} - set(LAYER), "a package without a layer: add it to LAYERS"
    assert not upward_imports(graph)


def test_no_module_imports_another_packages_private_module() -> None:
    assert not private_imports(_graph())


def test_no_module_is_over_600_lines() -> None:
    over = {
        p.relative_to(PACKAGE).as_posix(): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not over, over


def test_each_package_face_maps_its_package_and_holds_no_code() -> None:
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc, f"{init}: no docstring"
        if init.parent != PACKAGE:
            modules = {p.stem for p in init.parent.glob("*.py")} - {"__init__", "__main__"}
            named = {m for m in modules if m in doc}
            assert named == modules, f"{init}: the docstring does not name {sorted(modules - named)}"
        code = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert not code, f"{init}: defines {[n.name for n in code]}; a face only re-exports"
