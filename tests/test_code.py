"""The house rules of issue 25, checked on the source: no import circle, no long function.

Both read the package's source with `ast` (nothing is imported), so they run in well under a second.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'nas'
MAX_LINES = 60
# Allowed to be longer: the training loop (one loop, read top to bottom).
LONG_ALLOWED = {'train.loop.train'}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """The dotted name below the package of a file: 'run.folder', 'search' (a package's __init__)."""
    parts = path.relative_to(root).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts) or '__init__'


def _modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob('*.py'))}


def imports_of(tree: ast.Module, package: str = 'nas', known: set[str] | None = None) -> set[str]:
    """The modules of `package` that `tree` imports, anywhere in it (top level or inside functions),
    as dotted names below the package; `from nas.run import pareto` names 'run.pareto' when that
    is one of the `known` modules."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split('.')
            if parts[0] != package:
                continue
            base = '.'.join(parts[1:])
            for a in node.names:
                sub = f'{base}.{a.name}' if base else a.name
                found.add(sub if not base or (known is not None and sub in known) else base)
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.', 1)[1] for a in node.names if a.name.startswith(package + '.')}
    return found - {''}


def long_functions(tree: ast.Module, module: str, limit: int = MAX_LINES) -> dict[str, int]:
    """`module.name` -> lines (the `def` line to the last, docstring included) of each function over `limit`."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found[f'{module}.{node.name}'] = lines
    return found


def test_the_checks_see_a_circle_and_a_long_function() -> None:
    a = ast.parse('from nas.b import x\n')
    b = ast.parse('def f():\n    import nas.a\n')
    graph = {'a': imports_of(a), 'b': imports_of(b)}
    assert graph == {'a': {'b'}, 'b': {'a'}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
    body = '\n'.join(f'    x{i} = {i}' for i in range(MAX_LINES))
    assert long_functions(ast.parse(f'def g():\n{body}\n'), 'm') == {'m.g': MAX_LINES + 1}
    assert long_functions(ast.parse(f'def g():\n{body}\n'), 'm', limit=MAX_LINES + 1) == {}


def test_the_import_graph_of_nas_has_no_circle() -> None:
    modules = _modules()
    graph = {name: imports_of(tree, known=set(modules)) - {name} for name, tree in modules.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the circle


def test_no_function_is_over_60_lines_but_the_training_loop() -> None:
    found = {}
    for name, tree in _modules().items():
        found |= long_functions(tree, name)
    over = sorted((k, v) for k, v in found.items() if k not in LONG_ALLOWED)
    assert not over, f'functions over {MAX_LINES} lines: {over}'
