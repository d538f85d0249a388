"""Imports: every module of toolrl imports on its own, the module-level imports form no cycle, and each
function-local import says why it is local (a cycle, or a heavy dependency its callers need not pay for).

A cycle between modules can work in one import order and fail in another (``A`` first: ``B`` sees a
half-initialised ``A``), so each module is imported first in a clean interpreter state: one subprocess
imports the modules one after another, removing every ``toolrl`` module (and the absl flags they
defined) before each. Third-party modules stay loaded, which keeps the test at a few seconds of CPU.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "toolrl"

# The files whose function-local imports must each carry a comment. The rest of toolrl joins as its
# local imports are reviewed (issue 26, "Names").
DOCUMENTED_LOCAL_IMPORTS = (
    "toolrl/data/*.py", "toolrl/synth/*.py", "toolrl/env/*.py", "toolrl/rewards/*.py", "toolrl/eval/*.py",
    "toolrl/export.py", "toolrl/chat.py", "toolrl/cli.py", "toolrl/__main__.py", "toolrl/games.py",
)
NOT_YET_REVIEWED = ("toolrl/eval/progress.py",)

_IMPORT_EACH = r"""
import importlib, json, sys
from absl import flags

names = json.loads(sys.argv[1])
defined_before = set(flags.FLAGS)
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m == "toolrl" or m.startswith("toolrl.")]:
        del sys.modules[loaded]
    for flag in set(flags.FLAGS) - defined_before:  # toolrl.main defines --config at import
        delattr(flags.FLAGS, flag)
    try:
        importlib.import_module(name)
    except BaseException as error:  # SystemExit too: a module must not exit on import
        failures[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
"""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (not those inside functions)."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            else:
                visit(child)

    visit(tree)
    return found


def imported_toolrl_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The toolrl modules ``name`` imports at module level, with the packages whose ``__init__`` runs for
    them (``from toolrl.eval import metrics`` runs ``toolrl.eval`` and ``toolrl.eval.metrics``)."""

    def owner(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: list[str] = []
    for node in module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        targets += submodules if all(s in modules for s in submodules) else [*submodules, base]
    out = set()
    for target in targets:
        if not target.startswith("toolrl"):
            continue
        found = owner(target)
        if found is None:
            continue
        parts = found.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    # A module's own packages are already initialising when it runs: no edge to them.
    return {m for m in out if m != name and not name.startswith(m + ".")}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"b"}}) == ["b", "b"]


def test_module_level_imports_form_no_cycle():
    modules = all_modules()
    edges = {name: imported_toolrl_modules(name, path, modules) for name, path in modules.items()}
    # The graph reader sees what it should: the eval package's init imports none of its submodules.
    assert "toolrl.eval.metrics" in edges["toolrl.games"] and "toolrl.eval" in edges["toolrl.games"]
    assert not {m for m in edges["toolrl.eval"] if m.startswith("toolrl.eval.")}
    cycle = find_cycle(edges)
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle)


def test_every_module_imports_first():
    names = list(all_modules())
    assert len(names) > 100 and "toolrl.data.golden" in names
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], cwd=ROOT,
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, failures


def local_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Import statements inside a function body (at any depth)."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(tree, False)
    return found


def undocumented_local_imports(source: str) -> list[int]:
    """Lines of function-local imports without a reason: a comment on the import's own line(s), on the
    line just above (blank lines skipped), or on an import of the same block above it (the block shares
    its comment)."""
    lines = source.splitlines()
    imports = local_imports(ast.parse(source))
    by_end = {node.end_lineno: node for node in imports}
    documented: dict[int, bool] = {}

    def is_documented(node: ast.AST) -> bool:
        if node.lineno in documented:
            return documented[node.lineno]
        own = any("#" in lines[i - 1] for i in range(node.lineno, node.end_lineno + 1))
        above = node.lineno - 1
        while above >= 1 and not lines[above - 1].strip():
            above -= 1
        previous = lines[above - 1].strip() if above >= 1 else ""
        ok = own or previous.startswith("#") or (above in by_end and is_documented(by_end[above]))
        documented[node.lineno] = ok
        return ok

    return [node.lineno for node in imports if not is_documented(node)]


def test_undocumented_local_imports_are_found():
    source = (
        "def f():\n"
        "    # Local: matplotlib is slow to import.\n"
        "    import matplotlib\n"
        "\n"
        "    import matplotlib.pyplot as plt\n"
        "    x = 1\n"
        "    import json\n"
        "    import numpy  # local: reason\n"
        "\n"
        "def g():\n"
        "    import os\n")
    assert undocumented_local_imports(source) == [7, 11]


def test_local_imports_in_reviewed_files_say_why():
    files = sorted({p for pattern in DOCUMENTED_LOCAL_IMPORTS for p in ROOT.glob(pattern)})
    assert len(files) > 50
    missing = []
    for path in files:
        relative = path.relative_to(ROOT).as_posix()
        if relative in NOT_YET_REVIEWED:
            continue
        for line in undocumented_local_imports(path.read_text(encoding="utf-8")):
            missing.append(f"{relative}:{line}")
    assert not missing, ("function-local imports without a comment saying why (hoist them to the top of "
                         "the module, or say which cycle or heavy dependency keeps them local): "
                         + ", ".join(missing))


@pytest.mark.parametrize("package", ["toolrl.rewards", "toolrl.eval"])
def test_package_names_load_on_first_use(package):
    """The two packages re-export their names lazily; every name resolves and ``dir`` lists it."""
    code = (f"import importlib, sys\n"
            f"p = importlib.import_module({package!r})\n"
            f"assert 'jax' not in sys.modules, 'the package init imported jax'\n"
            f"missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
            f"assert not missing, missing\n"
            f"assert set(p.__all__) <= set(dir(p))\n"
            f"try:\n"
            f"    p.no_such_name\n"
            f"except AttributeError:\n"
            f"    pass\n"
            f"else:\n"
            f"    raise AssertionError('no AttributeError')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
