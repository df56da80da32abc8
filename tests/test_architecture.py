"""The shape of the package: no import cycles (type-only and lazy imports count too), and the lower
layers never import the higher ones."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pinstripe_jobs"


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = ".".join(base[:len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                for candidate in [target, *(f"{target}.{alias.name}" for alias in node.names)]:
                    if candidate in modules and candidate != name:
                        graph[name].add(candidate)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                graph[name].update(n for n in names if n in modules and n != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_check_can_fail():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_lower_layers_never_import_higher_ones():
    graph = import_graph()
    higher = {"pinstripe_jobs.cli.commands", "pinstripe_jobs.cli.services", "pinstripe_jobs.scheduling.bot",
              "pinstripe_jobs.execution.runner"}
    for lower in ("pinstripe_jobs.model.plan", "pinstripe_jobs.execution.planner", "pinstripe_jobs.execution.leases",
                  "pinstripe_jobs.execution.attempts", "pinstripe_jobs.execution.executors.local",
                  "pinstripe_jobs.execution.isolation", "pinstripe_jobs.store.state",
                  "pinstripe_jobs.model.results", "pinstripe_jobs.observers.terminal", "pinstripe_jobs.registry.jobs",
                  "pinstripe_jobs.tenants.query", "pinstripe_jobs.observers.notify",
                  "pinstripe_jobs.scheduling.per_tenant", *EXECUTORS, "pinstripe_jobs.observers.base"):
        assert not (graph[lower] & higher), (lower, graph[lower] & higher)


EXECUTORS = [f"pinstripe_jobs.execution.executors.{name}" for name in ("base", "inline", "threads", "tasks", "local")]


def test_executors_know_the_runner_only_through_their_contract():
    """The executors (and the fleet's) never import the runner: it hands itself in as a ``TenantRunner``."""
    graph = import_graph()
    for executor in [*EXECUTORS, "pinstripe_jobs.fleet.executor"]:
        assert "pinstripe_jobs.execution.runner" not in graph[executor], executor
    assert "pinstripe_jobs.execution.executors.base" in graph["pinstripe_jobs.fleet.executor"]


def test_the_model_never_imports_observers_or_execution():
    graph = import_graph()
    for name in ("pinstripe_jobs.model.plan", "pinstripe_jobs.model.results", "pinstripe_jobs.model.status"):
        upward = {m for m in graph[name] if m.startswith(("pinstripe_jobs.observers", "pinstripe_jobs.execution"))}
        assert not upward, name


def test_the_runner_is_split_along_its_nouns():
    """Planning, leases (locks and history rows) and attempts (calling the job) never import each other, the
    runner or the fan-out: the runner wires them, and the per-tenant path reads top to bottom in it."""
    graph = import_graph()
    pieces = {f"pinstripe_jobs.execution.{name}" for name in ("planner", "leases", "attempts", "executors.local",
                                                               "isolation")}
    for piece in pieces:
        others = (pieces | {"pinstripe_jobs.execution.runner"}) - {"pinstripe_jobs.execution.isolation"}
        assert not graph[piece] & others, piece
    assert len((PACKAGE / "execution" / "runner.py").read_text().splitlines()) < 300
