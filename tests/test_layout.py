"""The layout's rules, checked on the source: small modules and functions, no reaching into another module's
private names, and no module outside the store asking which database it talks to."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pinstripe_jobs"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
FOLDERS = ("cli", "execution", "execution/executors", "scheduling", "store", "tenants", "observers", "fleet", "web",
           "model", "registry")


def sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))}


def long_functions(trees: dict[Path, ast.Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > limit:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    return found


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names this module defines itself (functions, classes, attributes it assigns)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries, setattr(self, "_x", ...)
    return {name for name in names if name.startswith("_")}


def private_access(trees: dict[Path, ast.Module]) -> list[str]:
    """``x._name`` where ``_name`` is a private name of another module of this package (one this module does not
    define itself), and ``from pinstripe_jobs... import _name``. A dependency's own underscored API (Django's
    ``Model._meta``, SQLAlchemy's ``Row._mapping``) is that library's business, not this rule's."""
    own = {path: _own_private_names(tree) for path, tree in trees.items()}
    ours = set().union(*own.values()) if own else set()
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if node.attr in own[path] or node.attr not in ours or node.attr in PUBLIC_UNDERSCORED:
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue  # a subclass using what its base class keeps for subclasses
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pinstripe_jobs"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} import {alias.name}")
    return found


# Public APIs whose names start with an underscore: os._exit, namedtuple's _asdict/_replace/_fields, SQLAlchemy's
# Row._mapping, sys._getframe.
PUBLIC_UNDERSCORED = {"_exit", "_asdict", "_replace", "_fields", "_mapping", "_getframe"}


def test_folders_show_the_architecture():
    for folder in FOLDERS:
        assert (PACKAGE / folder / "__init__.py").is_file(), folder
    assert (PACKAGE / "py.typed").is_file()


def test_no_module_is_over_500_lines():
    big = [f"{p.relative_to(PACKAGE)} ({n})" for p in PACKAGE.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert big == []


def test_no_function_is_over_60_lines():
    assert long_functions(sources()) == []


def test_the_function_check_can_fail():
    tree = ast.parse("def f():\n" + "    x = 1\n" * 70)
    assert long_functions({PACKAGE / "x.py": tree})


def test_no_module_touches_another_modules_private_names():
    assert private_access(sources()) == []


def test_the_private_check_can_fail():
    tree = ast.parse("def f(store):\n    return store._call(1)\nfrom pinstripe_jobs.x import _y\n")
    other = ast.parse("class Store:\n    def _call(self, x):\n        return x\n")
    assert len(private_access({PACKAGE / "x.py": tree, PACKAGE / "y.py": other})) == 2


def test_no_dialect_checks_outside_the_store():
    """Only the store knows which database it talks to; everyone else asks it what they need (``local``)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "store"):
            continue
        text = path.read_text()
        for needle in ("is_sqlite", "is_postgres", ".dialect"):
            if needle in text:
                offenders.append(f"{path.relative_to(PACKAGE)}: {needle}")
    assert offenders == []


def test_no_two_modules_share_a_confusable_name():
    """One module called "app" at most, and no plan/planner-style twins within one folder."""
    stems = [p.stem for p in PACKAGE.rglob("*.py") if p.stem != "__init__"]
    assert stems.count("app") <= 1
    for folder in {p.parent for p in PACKAGE.rglob("*.py")}:
        names = sorted(p.stem for p in folder.glob("*.py"))
        for a in names:
            for b in names:
                assert not (a != b and b.startswith(a) and b[len(a):] in ("r", "er", "s", "ing")), (folder, a, b)


def test_sql_spells_no_status_by_hand():
    """One vocabulary: the store's SQL lists statuses through ``model.status`` (``sql_list``, ``Status``), never
    as literals (released migrations excepted: they are frozen as they shipped)."""
    import re

    from pinstripe_jobs.model.status import Status

    literal = re.compile("'(" + "|".join(s.value for s in Status) + ")'")
    sql = re.compile(r"\b(SELECT|UPDATE|INSERT|DELETE|WHERE|CASE|status IN|status =)\b")
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in PACKAGE.rglob("*.py")
             if "migrations" not in path.parts
             for n, line in enumerate(path.read_text().splitlines(), 1) if sql.search(line) and literal.search(line)]
    assert found == []
