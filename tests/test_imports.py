"""The package's import graph: no cycles, nothing imports the command line, no hidden imports, light parsers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
#: Modules a function may import where it needs them: optional dependencies (extras).
OPTIONAL = ("ray", "lightning", "torchjd")
HEAVY = ("torch", "pandas", "scipy", "sklearn", "matplotlib")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "taskrel").rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The taskrel module an import of `name` loads (a name inside a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """(import node, inside a function) for every import executed at run time (TYPE_CHECKING blocks aside)."""

    def walk(node: ast.AST, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, in_function
            yield from walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    yield from walk(tree, False)


def _targets(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level or node.module is None:
        raise AssertionError(f"relative import at line {node.lineno}")
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for node, _ in _imports(ast.parse(path.read_text())):
            for target in _targets(node):
                module = _resolve(target) if target.startswith("taskrel") else None
                if module is not None and module != name:
                    edges[name].add(module)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, or None (depth-first search with colours)."""
    colour = dict.fromkeys(edges, 0)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if colour[nxt] == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if colour[nxt] == 0 and (found := visit(nxt)):
                return found
        colour[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if colour[node] == 0 and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles_among_taskrel_modules():
    assert _cycle(_graph()) is None


def test_nothing_in_the_library_imports_the_command_line():
    edges = _graph()
    command_line = ("taskrel.cli", "taskrel.__main__")
    offenders = sorted(m for m, targets in edges.items() if not m.startswith(command_line) and any(
        t == "taskrel.cli" or t.startswith("taskrel.cli.") for t in targets))  # fmt: skip
    assert offenders == []


def test_the_data_and_models_import_no_stage_of_the_workflow():
    low = ("taskrel.data", "taskrel.models", "taskrel.plots", "taskrel.groups", "taskrel.errors", "taskrel.choices")
    stages = ("affinity", "predict", "select", "grouping", "weighting", "decentral", "train", "problems", "cli")
    offenders = sorted(
        f"{m} -> {t}" for m, targets in _graph().items() if m.startswith(low)
        for t in targets if t.split(".")[1:2] and t.split(".")[1] in stages
    )  # fmt: skip
    assert offenders == []


def test_imports_inside_functions_are_optional_dependencies_or_say_their_start_up_cost():
    offenders = []
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node, in_function in _imports(ast.parse(path.read_text())):
            if not in_function or any(t.split(".")[0] in OPTIONAL for t in _targets(node)):
                continue
            # the import's own line, or the comment line opening its block of imports, says why
            above = node.lineno - 2
            while above >= 0 and lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            if "start-up:" not in lines[node.lineno - 1] and "start-up:" not in lines[above]:
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_every_parser_builds_without_the_heavy_libraries():
    code = (
        "import sys\nfrom taskrel.cli import build_parser\nbuild_parser()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_what_select_and_evaluate_predictors_run_needs_no_torch():
    modules = ["taskrel.select.program", "taskrel.select.compact", "taskrel.select.scores", "taskrel.gains",
               "taskrel.affinity.matrix", "taskrel.predict.evaluation", "taskrel.predict.registry"]  # fmt: skip
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("names", "registry"),
    [
        ("PREDICTORS", "taskrel.predict.registry:PREDICTORS"),
        ("AFFINITY_COLLECTORS", "taskrel.affinity.measure:COLLECTORS"),
        ("AFFINITY_WEIGHTINGS", "taskrel.grouping.pipeline:AFFINITY_TEXT"),
    ],
)
def test_the_command_lines_names_are_the_librarys(names, registry):
    import importlib

    import taskrel.choices

    module, _, attr = registry.partition(":")
    assert sorted(getattr(importlib.import_module(module), attr)) == sorted(getattr(taskrel.choices, names))
