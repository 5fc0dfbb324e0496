"""The package's import graph, lazy imports included: no module imports one that imports it back (the demo
once took a private helper from the CLI, which imports the demo), and only `__main__` imports the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "slp_toolkit"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (functions too)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        if "resources" in path.parts:
            continue
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("slp_toolkit"):
                edges.add(node.module)
                base = PACKAGE.joinpath(*node.module.split(".")[1:])
                edges |= {f"{node.module}.{a.name}" for a in node.names if (base / f"{a.name}.py").is_file()}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("slp_toolkit")}
        graph[module_name(path)] = edges - {module_name(path)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                found.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt in graph and nxt not in done:
                visit(nxt, [*stack, nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    return found


def test_no_import_cycle_anywhere():
    graph = import_graph()
    assert "slp_toolkit.serve.demo" in graph and "slp_toolkit.inference.commands" in graph["slp_toolkit.cli"]  # walks
    assert cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


# The package's floors, lowest first: a module imports its own group's modules and lower floors' only. The one
# edge upwards is config -> tasks (the registry gives each task's model section; tasks/__init__ imports no task).
FLOORS = [
    {"errors"},
    {"schema", "plots"},
    {"config"},
    {"runtime"},
    {"data"},
    {"metrics", "lm", "synth"},
    {"tasks"},
    {"inference"},
    {"training"},
    {"serve"},
    {"cli"},
    {"__main__"},
]
UPWARD = {("slp_toolkit.config", "slp_toolkit.tasks")}


def group(module: str) -> str:
    return module.split(".")[1] if module != "slp_toolkit" else ""


def test_the_floors_do_not_import_upwards():
    """Each folder imports only its floor and the ones below (errors < schema < config < runtime < data < tasks <
    inference < training < serve < cli), so a wrong import fails here."""
    graph = import_graph()
    rank = {name: i for i, floor in enumerate(FLOORS) for name in floor}
    assert set(rank) >= {group(m) for m in graph if group(m)}, "a folder or top module without a floor"
    wrong = sorted(
        (m, e) for m, edges in graph.items() for e in edges
        if group(e) and group(m) and rank[group(e)] > rank[group(m)] and (m, e) not in UPWARD
    )  # fmt: skip
    assert wrong == [], wrong
    assert graph["slp_toolkit.errors"] == set() and graph["slp_toolkit.runtime.loading"] == {"slp_toolkit.errors"}
    assert graph["slp_toolkit.tasks"] == {"slp_toolkit.runtime.loading", "slp_toolkit.runtime.adapters"}  # no task
    # The data layer's one seam: data.manifest says which rows a split has and their identity (fingerprint,
    # slices); data.splits decodes and caches them. Calls run one way, splits -> manifest.
    assert not {e for e in graph["slp_toolkit.data.manifest"] if e.startswith("slp_toolkit.data.splits")}


def test_the_top_level_is_small_and_every_folder_says_its_role():
    top = [p for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(top) <= 12, sorted(p.name for p in top)
    for folder in (d for d in PACKAGE.iterdir() if d.is_dir() and (d / "__init__.py").is_file()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"{folder.name}/__init__.py says nothing of its role"


def test_the_synthetic_tooling_sits_apart():
    """slp_toolkit.synth (corpus, tiny and twin checkpoints) is test-and-demo tooling: it builds data and models,
    and never reaches into training, evaluation or serving; of the product only the CLI's `data synth` / `tiny`
    commands use it (scratch models for `model.init: scratch` are the product's own: runtime/scratch.py)."""
    graph = import_graph()
    synth = {m for m in graph if m.startswith("slp_toolkit.synth.")}
    assert {"slp_toolkit.synth.corpus", "slp_toolkit.synth.tiny", "slp_toolkit.synth.twins"} <= synth
    product = {"slp_toolkit.tasks", "slp_toolkit.training", "slp_toolkit.cli", "slp_toolkit.inference",
               "slp_toolkit.serve"}  # fmt: skip
    for module in synth:
        assert not {e for e in graph[module] if any(e == p or e.startswith(p + ".") for p in product)}, module
    users = {m for m, edges in graph.items() if m not in synth and edges & synth}
    assert "slp_toolkit.cli" in users  # the walk sees lazy imports
    assert users <= {"slp_toolkit.cli", "slp_toolkit.synth"}, users


def test_only_the_registry_imports_a_task_module():
    """Fronts reach a task through the Task interface (e.g. `task.caps.ranked`, `task.caps.speakers`), never by
    importing its module: the registry is the one place that names them."""
    graph = import_graph()
    modules = {m for m in graph if m.startswith("slp_toolkit.tasks.")}
    assert "slp_toolkit.tasks.emotion" in modules
    users = {m for m, edges in graph.items() if edges & modules and not m.startswith("slp_toolkit.tasks")}
    assert users == set(), users


def test_the_tests_mirror_the_package():
    """tests/<sub>/test_<module>.py tests slp_toolkit/<sub>/<module>.py (the toy task is the one test of a
    task from outside the package)."""
    tests = Path(__file__).parent
    subs = [d for d in tests.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))]
    assert {d.name for d in subs} >= {"tasks", "synth"}
    for d in subs:
        for test in d.glob("test_*.py"):
            module = PACKAGE / d.name / f"{test.stem[len('test_') :]}.py"
            assert module.is_file() or test.name == "test_toy_task.py", test
