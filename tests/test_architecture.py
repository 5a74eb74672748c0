"""The house rules of the code base, checked on its source (no import, no run):

- ``pipeline/`` is the library: it never imports a face (``commands``, ``web``, ``cli``) or a
  terminal library, and never prints or exits;
- no import circles between the library's modules, counting imports inside functions too
  (a function-level import is how a circle hides, not how it is fixed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "pipeline"
FACES = ("commands", "web", "cli", "typer", "rich", "click")
#: calls a library function must leave to its caller
FORBIDDEN_CALLS = {"print", "exit", "quit", "breakpoint", "sys.exit", "os._exit", "typer.echo", "typer.Exit"}
#: the one exception: a triage worker whose parent died before it could ask to die with it
#: ends itself (it is a worker process, not the library's caller)
ALLOWED_CALLS = {("pipeline/intake/triage.py", "os._exit")}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute names ``node`` imports: for ``from x import y`` both ``x.y`` and ``x``
    (``y`` may be a module or a name in ``x``; the caller keeps the ones that are modules)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` → the package's modules it imports anywhere in
    its body, and the names of outside top-level packages it imports (prefixed ``ext:``)."""
    modules = {module_name(p, root.parent): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(node, name, path.name == "__init__.py"):
                    if target in modules and target != name:
                        edges.add(target)
                    elif target.split(".")[0] != root.name:
                        edges.add(f"ext:{target.split('.')[0]}")
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in graph:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_library_has_no_import_circle():
    assert circles(import_graph(LIBRARY)) == []


def test_the_circle_finder_finds_a_circle_hidden_in_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "__init__.py").write_text("")
    (package / "model" / "evaluate.py").write_text("import numpy\n\ndef f():\n    from .report import g\n")
    (package / "model" / "report.py").write_text("from .evaluate import f\n")
    (package / "model" / "train.py").write_text("from . import evaluate\nfrom ..model import report\n")
    graph = import_graph(package)
    assert graph["pkg.model.train"] == {"pkg.model", "pkg.model.evaluate", "pkg.model.report"}
    assert "ext:numpy" in graph["pkg.model.evaluate"]
    assert circles(graph) == [["pkg.model.evaluate", "pkg.model.report"]]


def test_the_library_imports_no_face():
    faces = {name: sorted(e[4:] for e in edges if e.startswith("ext:") and e[4:] in FACES)
             for name, edges in import_graph(LIBRARY).items()}
    assert {name: found for name, found in faces.items() if found} == {}


def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return f"{func.value.id}.{func.attr}"
    return ""


def forbidden_calls(source: str) -> list[tuple[int, str]]:
    return [(node.lineno, _called_name(node)) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and _called_name(node) in FORBIDDEN_CALLS]


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_prints_or_exits(path):
    where = path.relative_to(ROOT).as_posix()
    found = [(line, call) for line, call in forbidden_calls(path.read_text(encoding="utf-8"))
             if (where, call) not in ALLOWED_CALLS]
    assert found == []


def test_forbidden_calls_are_found():
    source = "import sys\ndef f(x):\n    print(x)\n    if x:\n        sys.exit(2)\n    return data_fingerprint(x)\n"
    assert forbidden_calls(source) == [(3, "print"), (5, "sys.exit")]
