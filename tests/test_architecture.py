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
#: the faces and the libraries only a face needs (terminal and web)
FACES = (
    "commands",
    "web",
    "cli",
    "typer",
    "rich",
    "click",
    "tqdm",
    "curses",
    "starlette",
    "uvicorn",
    "jinja2",
    "multipart",
)
#: what a library function must leave to its caller: anything that writes to the terminal,
#: reads from it, or ends the process; referenced at all (``map(print, xs)`` prints too)
FORBIDDEN = {
    "print",
    "exit",
    "quit",
    "breakpoint",
    "input",
    "sys.exit",
    "os._exit",
    "os.abort",
    "builtins.print",
    "builtins.input",
    "pprint.pprint",
    "pprint.pp",
    "typer.echo",
    "typer.Exit",
}
FORBIDDEN_PREFIXES = ("sys.stdout.", "sys.stderr.", "sys.stdin.")
#: exceptions that end the process when raised
FORBIDDEN_RAISES = {"SystemExit", "typer.Exit", "click.exceptions.Exit"}
#: the one exception, by file, function and name: a triage worker whose parent died before
#: it could ask to die with it ends itself (it is a worker process, not the library's caller)
ALLOWED = {("pipeline/intake/triage.py", "_die_with_parent", "os._exit")}


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


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_run(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run, in functions too; not those under ``if TYPE_CHECKING:``,
    which only a type checker reads."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each module of the package at ``root`` → the package's modules whose code its imports
    run, anywhere in its body, and the names of outside top-level packages it imports
    (prefixed ``ext:``). Importing ``a.b.c`` runs ``a/b/__init__.py`` too, so that is an
    edge; the importing module's own enclosing packages are not (they are already running)."""
    modules = {module_name(p, root.parent): p for p in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph[name] = set()
        own = set(_ancestors(name))
        for node in imports_run(ast.parse(path.read_text(encoding="utf-8"))):
            for target in imported(node, name, path.name == "__init__.py"):
                if target in modules:
                    edges.update(
                        m for m in (*_ancestors(target), target) if m in modules and m not in own
                    )
                elif target.split(".")[0] != root.name:
                    edges.add(f"ext:{target.split('.')[0]}")
        edges.discard(name)
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
    (package / "model" / "evaluate.py").write_text(
        "import numpy\n\ndef f():\n    from .report import g\n"
    )
    (package / "model" / "report.py").write_text("from .evaluate import f\n")
    (package / "model" / "train.py").write_text(
        "from . import evaluate\nfrom ..model import report\n"
    )
    graph = import_graph(package)
    # its own package pkg.model is already running when train runs: not an edge
    assert graph["pkg.model.train"] == {"pkg.model.evaluate", "pkg.model.report"}
    assert "ext:numpy" in graph["pkg.model.evaluate"]
    assert circles(graph) == [["pkg.model.evaluate", "pkg.model.report"]]


def faces_imported(root: Path) -> dict[str, list[str]]:
    found = {
        name: sorted(e[4:] for e in edges if e.startswith("ext:") and e[4:] in FACES)
        for name, edges in import_graph(root).items()
    }
    return {name: faces for name, faces in found.items() if faces}


def test_the_library_imports_no_face():
    assert faces_imported(LIBRARY) == {}


def test_a_face_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("import numpy\nfrom commands.triage import run\n")
    (package / "b.py").write_text("def f():\n    import rich.console\n    from web import app\n")
    (package / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import typer\n"
    )
    assert faces_imported(package) == {"pkg.a": ["commands"], "pkg.b": ["rich", "web"]}


def test_an_import_runs_the_packages_on_its_way(tmp_path):
    """``from pkg.a.z import g`` runs ``pkg/a/__init__.py``: a circle through it counts; a
    module importing its sibling through its own package does not make one."""
    package = tmp_path / "pkg"
    for sub in ("a", "b", "c"):
        (package / sub).mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("from . import x\n")
    (package / "a" / "x.py").write_text("from pkg.b import y\n")
    (package / "a" / "z.py").write_text("g = 1\n")
    (package / "b" / "__init__.py").write_text("")
    (package / "b" / "y.py").write_text("from pkg.a.z import g\n")
    (package / "c" / "__init__.py").write_text("from .m import h\n")
    (package / "c" / "m.py").write_text("from . import n\nh = 1\n")
    (package / "c" / "n.py").write_text("")
    assert circles(import_graph(package)) == [["pkg.a", "pkg.a.x", "pkg.b.y"]]


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str:
    """``s.stdout.write`` → ``sys.stdout.write`` with ``import sys as s``; "" for anything
    that is not a chain of names."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def forbidden_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function, name) of every reference to a forbidden name and every
    ``raise`` of an exception that ends the process, names resolved through the file's imports
    (``from os import _exit``, ``import sys as s``)."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            function = node.name
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if _dotted(exc, aliases) in FORBIDDEN_RAISES:
                found.append((node.lineno, function, _dotted(exc, aliases)))
        if isinstance(node, ast.Name | ast.Attribute) and isinstance(node.ctx, ast.Load):
            name = _dotted(node, aliases)
            if name in FORBIDDEN or name.startswith(FORBIDDEN_PREFIXES):
                found.append((node.lineno, function, name))
                return  # sys.stdout.write is one use, not also sys.stdout
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, "")
    return found


@pytest.mark.parametrize(
    "path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_the_library_never_prints_or_exits(path):
    where = path.relative_to(ROOT).as_posix()
    found = [
        (line, function, name)
        for line, function, name in forbidden_uses(path.read_text(encoding="utf-8"))
        if (where, function, name) not in ALLOWED
    ]
    assert found == []


def test_the_allowed_exit_is_used_once():
    source = (LIBRARY / "intake" / "triage.py").read_text(encoding="utf-8")
    assert [use[1:] for use in forbidden_uses(source)] == [("_die_with_parent", "os._exit")]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import sys\ndef f(x):\n    print(x)\n    if x:\n        sys.exit(2)\n    return fingerprint(x)\n",
            [(3, "f", "print"), (5, "f", "sys.exit")],
        ),
        ("from os import _exit\ndef g():\n    _exit(1)\n", [(3, "g", "os._exit")]),
        ("from sys import exit as bye\nbye()\n", [(2, "", "sys.exit")]),
        ("import sys as s\ndef h():\n    s.exit()\n", [(3, "h", "sys.exit")]),
        ("import sys\nsys.stderr.write('x')\n", [(2, "", "sys.stderr.write")]),
        ("import builtins\nbuiltins.print(1)\n", [(2, "", "builtins.print")]),
        ("import os\nos.abort()\n", [(2, "", "os.abort")]),
        ("from pprint import pprint\npprint({})\n", [(2, "", "pprint.pprint")]),
        ("list(map(print, [1]))\n", [(1, "", "print")]),
        ("answer = input()\n", [(1, "", "input")]),
        ("def k():\n    raise SystemExit(1)\n", [(2, "k", "SystemExit")]),
        ("def k():\n    raise SystemExit\n", [(2, "k", "SystemExit")]),
        ("try:\n    pass\nexcept (KeyboardInterrupt, SystemExit):\n    raise\n", []),
        ("import logging\nlogging.getLogger(__name__).info('x')\nout = {'print': 1}\n", []),
    ],
)
def test_forbidden_uses_are_found(source, expected):
    assert forbidden_uses(source) == expected
