"""The package's layers: agentlab (core) <- kernels <- rl and adapters <- studies (synergy) and bench <- cli.

Every import of an agentlab module, at the top of a file or inside a function, is read from the
source (ast), so a lazy import cannot hide an import against the direction or a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Source folder -> package, and each package's layer: a module may import its own layer or lower ones.
PACKAGES = {
    "agentlab": ("agentlab", 0),
    "kernels": ("agentlab.kernels", 1),
    "rl": ("agentlab.rl", 2),
    "adapters": ("agentlab.adapters", 2),
    "synergy": ("agentlab.synergy", 3),
    "bench": ("agentlab.bench", 3),
    "studies": ("agentlab.studies", 3),
    "cli": ("agentlab.cli", 4),
}


def modules() -> dict[str, Path]:
    found = {}
    for folder, (package, _) in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()
MODULES_SEEN = set(MODULES)


def layer(module: str) -> tuple[str, int]:
    """(package, layer) of an agentlab module name; the most specific package wins."""
    best = ("agentlab", 0)
    for package, rank in PACKAGES.values():
        if (module == package or module.startswith(package + ".")) and len(package) > len(best[0]):
            best = (package, rank)
    return best


def imports(module: str, path: Path) -> set[str]:
    """The agentlab modules `module` imports anywhere in its source (resolved to modules that exist)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names]
            if not all(name in MODULES_SEEN for name in names):  # `from pkg import module` needs only the module
                names.append(base)
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name.startswith("agentlab") and name != module:
                found.add(name)
    return found


GRAPH = {module: imports(module, path) for module, path in MODULES.items()}


def test_the_graph_sees_the_package():
    assert "agentlab.kernels.atari.breakout" in MODULES and "agentlab.cli.app" in MODULES
    assert "agentlab.rl.ppo" in GRAPH["agentlab.rl.training"]  # a real edge is found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "agentlab"))
def test_imports_follow_the_layers(module):
    """(The package root, `agentlab/__init__.py`, is the public facade: it re-exports `make` lazily.)"""
    own_package, own = layer(module)
    against = sorted(m for m in GRAPH[module] if layer(m)[1] > own)
    assert not against, f"{module} (layer {own}) imports a higher layer: {against}"
    if own_package != "agentlab.cli":
        assert not [m for m in GRAPH[module] if m.startswith("agentlab.cli")], f"{module} imports from cli/"


def test_no_import_cycles():
    """Tarjan's strongly connected components of the import graph: every one has a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            # A package's __init__ re-exporting its submodules is not a cycle of logic.
            real = [m for m in component if not (MODULES[m].name == "__init__.py" and len(component) > 1)]
            if len(real) > 1:
                cycles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"
