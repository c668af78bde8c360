"""The layers of eokafka, read from its import statements (nothing is imported to check them).

Every ``import`` of every module counts: at module level, inside functions and under
``if TYPE_CHECKING:``, since each is a dependency a reader has to follow.

* The DSL, the topology, the state stores, the record and the processor context import neither
  ``eokafka.runtime`` nor ``confluent_kafka``, not even through another eokafka module: they
  describe an app and its data, and must stay usable and testable without the Kafka client.
* No eokafka module takes part in an import cycle, so each can be read from what it imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("eokafka.dsl", "eokafka.topology", "eokafka.state", "eokafka.record", "eokafka.context")
FORBIDDEN = ("eokafka.runtime", "confluent_kafka")
RUNTIME = "eokafka.runtime"


@dataclass(frozen=True)
class Import:
    """One imported module, as the statement at ``path:line`` names it."""

    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def modules(root: Path, package: str = "eokafka") -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name (a package by its own)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Each module an import statement anywhere in the file names, with its line."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = name.split(".")[: len(name.split(".")) - (not is_package)]
                parent = parent[: len(parent) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in known else base), node.lineno


def imports(root: Path, package: str = "eokafka") -> dict[str, list[Import]]:
    """Per module: the eokafka modules it imports, and the top-level name of any other."""
    known = modules(root, package)
    graph: dict[str, list[Import]] = {}
    for name, path in known.items():
        found = graph.setdefault(name, [])
        for target, line in _imported(name, path, known):
            while _within(target, package) and target not in known:
                target = target.rpartition(".")[0]  # a name inside a module: the module
            if not _within(target, package):
                target = target.partition(".")[0]
            if target != name:
                found.append(Import(target, str(path.relative_to(root)), line))
    return graph


def _layer(name: str) -> bool:
    return any(_within(name, layer) for layer in LAYERS)


def layer_leaks(graph: dict[str, list[Import]]) -> list[str]:
    """Each way a layer module reaches a forbidden one, named import by import (the shortest,
    and not through another layer module, which names its own)."""
    leaks = []
    for start in sorted(graph):
        if not _layer(start):
            continue
        seen = {start}
        paths: list[tuple[str, list[Import]]] = [(start, [])]
        while paths:  # breadth first: the shortest way to each module
            module, via = paths.pop(0)
            for imp in graph.get(module, []):
                if imp.target in seen:
                    continue
                seen.add(imp.target)
                if any(_within(imp.target, bad) for bad in FORBIDDEN):
                    chain = " -> ".join(f"{i.target} ({i})" for i in [*via, imp])
                    leaks.append(f"{start} -> {chain}")
                elif imp.target in graph and not _layer(imp.target):
                    paths.append((imp.target, [*via, imp]))
    return leaks


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively; the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            nxt = next(todo, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
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


def _one_cycle(start: str, members: set[str], graph: dict[str, list[Import]]) -> str:
    """The shortest cycle through ``start`` inside its component, each arrow's import named."""
    paths: list[tuple[str, list[Import]]] = [(start, [])]
    seen = {start}
    while paths:
        module, via = paths.pop(0)
        for imp in graph[module]:
            if imp.target == start:
                arrows = " -> ".join(f"{i.target} ({i})" for i in [*via, imp])
                return f"{start} -> {arrows}"
            if imp.target in members and imp.target not in seen:
                seen.add(imp.target)
                paths.append((imp.target, [*via, imp]))
    raise AssertionError(f"{start} is in no cycle of {sorted(members)}")


def cycles(graph: dict[str, list[Import]], leave_out: str | None = None) -> list[str]:
    """One named cycle per group of modules that import each other (``leave_out``: a package
    whose modules are not looked at)."""
    kept = {m for m in graph if leave_out is None or not _within(m, leave_out)}
    edges = {m: {i.target for i in graph[m] if i.target in kept} for m in kept}
    return [
        f"{len(component)} modules import each other: {', '.join(component)}; e.g. "
        + _one_cycle(component[0], set(component), graph)
        for component in _strongly_connected(edges)
    ]


GRAPH = imports(ROOT)


def test_the_layers_import_neither_the_runtime_nor_the_kafka_client() -> None:
    leaks = layer_leaks(GRAPH)
    assert not leaks, "a layer module reaches the runtime or the Kafka client:\n" + "\n".join(leaks)


def test_no_import_cycles_outside_the_runtime() -> None:
    found = cycles(GRAPH, leave_out=RUNTIME)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_import_cycles_at_all() -> None:
    found = cycles(GRAPH)
    assert not found, "import cycles:\n" + "\n".join(found)


# -- the checks themselves, on a package planted for them --------------------------------------


def _plant(root: Path, files: dict[str, str]) -> dict[str, list[Import]]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return imports(root)


def test_a_function_level_import_of_the_runtime_is_a_leak(tmp_path: Path) -> None:
    graph = _plant(
        tmp_path,
        {
            "eokafka/__init__.py": "",
            "eokafka/serdes.py": "",
            "eokafka/runtime/__init__.py": "",
            "eokafka/runtime/poison.py": "import confluent_kafka\n",
            "eokafka/dsl/__init__.py": "from eokafka.dsl.graph import Node\n",
            "eokafka/dsl/graph.py": (
                "from eokafka import serdes\n\n"
                "def node():\n"
                "    from eokafka.runtime.poison import headers\n"
            ),
        },
    )
    assert layer_leaks(graph) == [
        "eokafka.dsl.graph -> eokafka.runtime.poison (eokafka/dsl/graph.py:4)"
    ]


def test_a_kafka_client_import_for_typing_only_is_a_leak(tmp_path: Path) -> None:
    graph = _plant(
        tmp_path,
        {
            "eokafka/__init__.py": "",
            "eokafka/record.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from confluent_kafka import Message\n"
            ),
        },
    )
    assert layer_leaks(graph) == ["eokafka.record -> confluent_kafka (eokafka/record.py:3)"]


def test_a_cycle_is_named_with_its_imports(tmp_path: Path) -> None:
    graph = _plant(
        tmp_path,
        {
            "eokafka/__init__.py": "",
            "eokafka/topology.py": "def describe():\n    from eokafka.describe import render\n",
            "eokafka/describe.py": "from eokafka.topology import Topology\n",
            "eokafka/runtime/__init__.py": "",
            "eokafka/runtime/worker.py": "from eokafka.runtime import bounded\n",
            "eokafka/runtime/bounded.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from eokafka.runtime.worker import Worker\n"
            ),
        },
    )
    outside = (
        "2 modules import each other: eokafka.describe, eokafka.topology; e.g. "
        "eokafka.describe -> eokafka.topology (eokafka/describe.py:1) -> "
        "eokafka.describe (eokafka/topology.py:2)"
    )
    assert cycles(graph, leave_out=RUNTIME) == [outside]
    assert sorted(cycles(graph)) == [
        outside,
        "2 modules import each other: eokafka.runtime.bounded, eokafka.runtime.worker; e.g. "
        "eokafka.runtime.bounded -> eokafka.runtime.worker (eokafka/runtime/bounded.py:3) -> "
        "eokafka.runtime.bounded (eokafka/runtime/worker.py:1)",
    ]
