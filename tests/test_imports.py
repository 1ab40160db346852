"""No import circles among snnas's modules: data flows one way (space -> models -> search ->
plan -> runtime; the engine below plan and runtime), and no function-level import hides a
circle either (docs/architecture.md)."""

import ast
from pathlib import Path

import networkx as nx

import snnas

ROOT = Path(snnas.__file__).parent


def _module_name(path):
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name, path, modules):
    """Every snnas module that importing ``name`` may import, at any level of the file:
    the modules named, and the packages above them (their ``__init__`` runs first) that are
    not above ``name`` itself."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules}
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    out = set()
    for target in targets:
        if not target.startswith("snnas"):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            above = ".".join(parts[:i])
            if above in modules and above not in own:
                out.add(above)
    return out


def import_graph():
    modules = _modules()
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(name, path, modules):
            graph.add_edge(name, target)
    return graph


#: No circle is left: the test fails on any import circle.
KNOWN: list[list[str]] = []


def test_no_import_circles():
    components = nx.strongly_connected_components(import_graph())
    assert sorted(sorted(c) for c in components if len(c) > 1) == KNOWN


def test_the_circles_of_issue_14_are_gone():
    graph = import_graph()
    for group in (["snnas.plan._erasure", "snnas.plan._verify", "snnas.plan._export",
                   "snnas.plan._parity", "snnas.plan._onnx"],
                  ["snnas.runtime._failover", "snnas.runtime._worker"],
                  ["snnas.cost._liveness", "snnas.cost._parity"]):  # fmt: skip
        for a in group:
            for b in group:
                assert a == b or not (nx.has_path(graph, a, b) and nx.has_path(graph, b, a))


def test_the_circle_finder_finds_circles():
    """A function-level import that closes a circle is found (the test can fail)."""
    graph = import_graph()
    graph.add_edge("snnas.arch", "snnas.cost._latency")  # e.g. ``from snnas.cost import ...``
    assert any(len(c) > 1 for c in nx.strongly_connected_components(graph))


def test_the_engine_sits_below_plan_and_runtime():
    graph = import_graph()
    below = nx.descendants(graph, "snnas.engine")
    assert not {
        m for m in below if m.split(".")[1] in ("models", "search", "plan", "runtime", "cli")
    }
    assert "snnas.engine" in nx.descendants(graph, "snnas.plan")
    assert "snnas.engine" in nx.descendants(graph, "snnas.runtime")
