"""The package's layers, read from its imports: no import circle, and no arrow from a lower layer
to a higher one (every import counts, those inside functions too, but not those only for type
checkers under ``if TYPE_CHECKING:``)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# lowest first: a module imports from its own layer and the layers below it
LAYERS = {
    "base": ["sakd.errors", "sakd.registry", "sakd.fields", "sakd.randomness", "sakd.outputs", "sakd.tables",
             "sakd.runs", "sakd.plugins", "sakd.version"],
    "parts": ["sakd.neurons", "sakd.models", "sakd.data", "sakd.distill"],
    "engine": ["sakd.training"],
    "applications": ["sakd.analysis", "sakd.export", "sakd.nas", "sakd.tuning"],
    "commands": ["sakd.compare", "sakd.cli"],
    "front door": ["sakd", "sakd.__main__"],
}


def modules() -> dict[str, Path]:
    out = {}
    for f in (SRC / "sakd").rglob("*.py"):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Each module's imports of other sakd modules (a name imported from a package counts as the
    package's module, unless the name is a module itself)."""

    def target(name: str) -> str | None:
        parts = name.split(".")
        return next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in mods), None)

    def typing_only(node) -> bool:
        test = node.test
        return isinstance(node, ast.If) and (getattr(test, "id", None) == "TYPE_CHECKING"
                                             or getattr(test, "attr", None) == "TYPE_CHECKING")

    graph = {}
    for name, path in mods.items():
        found, stack = set(), [ast.parse(path.read_text())]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.If) and typing_only(node):
                stack.extend(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found |= {target(a.name) for a in node.names if a.name.split(".")[0] == "sakd"}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sakd":
                found |= {target(f"{node.module}.{a.name}") for a in node.names}
            stack.extend(ast.iter_child_nodes(node))
        graph[name] = found - {name, None}
    return graph


def layer_of(module: str) -> int:
    ranks = [(len(prefix), rank) for rank, prefixes in enumerate(LAYERS.values()) for prefix in prefixes
             if module == prefix or module.startswith(prefix + ".")]
    assert ranks, f"{module} belongs to no layer: add it to LAYERS"
    return max(ranks)[1]


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circle_and_no_arrow_from_a_lower_layer_to_a_higher_one():
    mods = modules()
    graph = imports(mods)
    assert len(mods) > 80 and sum(map(len, graph.values())) > 200  # the reader sees the package
    assert circles(graph) == []
    upward = sorted(f"{a} ({layer_of(a)}) -> {b} ({layer_of(b)})" for a, bs in graph.items() for b in bs
                    if layer_of(b) > layer_of(a))
    assert upward == []


def test_the_reader_finds_circles_and_upward_arrows():
    graph = {"sakd.models.a": {"sakd.models.b"}, "sakd.models.b": {"sakd.models.a", "sakd.training.t"},
             "sakd.training.t": set()}
    assert circles(graph) == [["sakd.models.a", "sakd.models.b"]]
    assert layer_of("sakd.training.t") > layer_of("sakd.models.b") > layer_of("sakd.runs")
    assert layer_of("sakd") > layer_of("sakd.cli.train")  # the longest prefix decides
