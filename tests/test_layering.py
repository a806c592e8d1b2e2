"""The layering of docs/architecture.md, read from the source: every import of every module.

Each module's imports are read with :mod:`ast`, wherever they are written: at the top,
under ``if TYPE_CHECKING:`` or inside a function. An import hidden in a function or behind
``TYPE_CHECKING`` is still a dependency, so it counts the same (that is how a cycle used to be
hidden). The rules:

- ``protocol/`` is sans-IO: of aiovirt it imports only ``aiovirt.errors`` and other
  ``protocol/`` modules, and no I/O or concurrency module of the standard library;
- a backend knows its own wire only: it imports ``aiovirt.errors``, ``protocol/`` and the
  coalescer, never the face, the router or another backend (the hypervisor backend's drivers
  are part of it);
- ``sim/`` is a server, not a client: it imports ``aiovirt.errors``, ``protocol/`` and itself;
- no import cycle between aiovirt's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aiovirt

PACKAGE = Path(aiovirt.__file__).resolve().parent
ROOT = "aiovirt"

# Modules that do I/O or run concurrently: a sans-IO codec imports none of them.
IO_MODULES = {"asyncio", "socket", "selectors", "ssl", "subprocess", "threading",
              "concurrent", "aiohttp", "anyio", "multiprocessing"}

# The backend families: a family's modules may import each other (the hypervisor backend
# loads the driver a spec names).
BACKEND_FAMILIES = {
    "aiovirt.backends.xenctrl": "aiovirt.backends.hypervisor",
    "aiovirt.backends.privcmd_sim": "aiovirt.backends.hypervisor",
}

# Known edges that close a cycle, each removed by a named part of an open issue. Add none
# without naming the part that removes it.
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def imports_of(name: str, path: Path) -> set[str]:
    """Return every module ``name`` imports (aiovirt's resolved to their module, others to
    their top-level name), wherever the import statement is."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(_resolve(alias.name))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else _resolve(base))
    found.discard(name)
    return found


def _resolve(dotted: str) -> str:
    if dotted == ROOT or dotted.startswith(ROOT + "."):
        while dotted not in MODULES and "." in dotted:
            dotted = dotted.rsplit(".", 1)[0]
        return dotted
    return dotted.split(".", 1)[0]


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def ours(targets: set[str]) -> set[str]:
    return {t for t in targets if t == ROOT or t.startswith(ROOT + ".")}


def test_the_reader_sees_every_module() -> None:
    # the test reads the tree it claims to guard
    for expected in ("aiovirt.connection", "aiovirt.routing.router", "aiovirt.protocol.xs_wire",
                     "aiovirt.backends.hypervisor", "aiovirt.sim"):
        assert expected in MODULES
    assert "aiovirt.routing.xend" in GRAPH["aiovirt.routing.router"]
    assert "aiovirt.errors" in GRAPH["aiovirt.protocol.sexpr"]


def test_protocol_imports_only_the_error_table_and_does_no_io() -> None:
    bad = []
    for name, targets in GRAPH.items():
        if not name.startswith("aiovirt.protocol"):
            continue
        for target in ours(targets):
            if target != "aiovirt.errors" and not target.startswith("aiovirt.protocol"):
                bad.append(f"{name} imports {target}")
        bad += [f"{name} imports {t} (I/O)" for t in targets & IO_MODULES]
    assert not bad, bad


def test_a_backend_knows_its_own_wire_only() -> None:
    bad = []
    for name, targets in GRAPH.items():
        if not name.startswith("aiovirt.backends."):
            continue
        family = BACKEND_FAMILIES.get(name, name)
        for target in ours(targets):
            if target in ("aiovirt.errors", "aiovirt.batching"):
                continue
            if target.startswith("aiovirt.protocol"):
                continue
            if target.startswith("aiovirt.backends.") and (
                    BACKEND_FAMILIES.get(target, target) == family):
                continue
            bad.append(f"{name} imports {target}")
    assert not bad, bad


def test_the_simulator_imports_no_client_module() -> None:
    bad = []
    for name, targets in GRAPH.items():
        if not (name == "aiovirt.sim" or name.startswith("aiovirt.sim.")):
            continue
        for target in ours(targets):
            if target == "aiovirt.errors" or target.startswith(("aiovirt.protocol",
                                                                 "aiovirt.sim")):
                continue
            bad.append(f"{name} imports {target}")
    assert not bad, bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in graph:
                continue
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_hidden_anywhere() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    graph = {name: ours(targets) for name, targets in GRAPH.items()}
    for (source, target), part in ALLOWED_CYCLE_EDGES.items():
        assert target in graph.get(source, set()), (
            f"{source} no longer imports {target}: remove its allowance ({part})")
        graph[source] = graph[source] - {target}
    assert cycles(graph) == []
