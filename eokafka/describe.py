"""Pictures of a topology: topics, processors, stores, changelogs, as text, Mermaid or dot.

One graph (built by ``eokafka.topology.topology_graph``) is rendered three ways, so the
formats never disagree.
Output topics are known where the DSL sends (``to``, repartitions) or where a processor
declares them (``@app.processor(..., outputs=[...])``); a processor may send elsewhere too.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from eokafka.errors import ConfigError

Format = Literal["text", "mermaid", "dot"]
FORMATS: tuple[Format, ...] = ("text", "mermaid", "dot")
TopicKind = Literal["source", "output", "repartition", "changelog", "dead-letter", "global-table"]
_RENDERED = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
_WRITTEN: dict[str, Format] = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".txt": "text"}


@dataclass(frozen=True)
class ProcessorNode:
    name: str
    topic: str
    key_serde: str
    value_serde: str
    stores: tuple[str, ...]
    outputs: tuple[str, ...]
    dead_letters: str | None = None  # the dead-letter topic its records may go to
    timers: str | None = None  # what its timers are (eokafka.timers), if it has any
    globals: tuple[str, ...] = ()  # the global tables it reads


@dataclass(frozen=True)
class StoreNode:
    name: str
    backend: str
    window: bool
    changelog: str | None


@dataclass
class Graph:
    """What ``describe`` shows, in declaration order."""

    application_id: str | None
    topics: dict[str, TopicKind] = field(default_factory=dict)
    processors: list[ProcessorNode] = field(default_factory=list)
    stores: dict[str, StoreNode] = field(default_factory=dict)
    partitions_like: dict[str, str] = field(default_factory=dict)  # internal -> external
    global_tables: dict[str, str] = field(default_factory=dict)  # global table -> its topic


def render(graph: Graph, fmt: str) -> str:
    if fmt == "text":
        return _text(graph)
    if fmt == "mermaid":
        return _mermaid(graph)
    if fmt == "dot":
        return _dot(graph)
    raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


def _text(graph: Graph) -> str:
    lines: list[str] = []
    by_topic: dict[str, list[ProcessorNode]] = {}
    for p in graph.processors:
        by_topic.setdefault(p.topic, []).append(p)
    for topic, processors in sorted(by_topic.items()):
        kind = graph.topics[topic]
        like = graph.partitions_like.get(topic)
        extra = f" ({kind} topic, partitions like {like})" if kind != "source" and like else ""
        lines.append(f"source {topic}{extra}")
        for p in processors:
            lines.append(f"  -> processor {p.name} (key {p.key_serde}, value {p.value_serde})")
            for name in p.stores:
                store = graph.stores[name]
                kind_note = ", window" if store.window else ""
                changelog = f", changelog {store.changelog}" if store.changelog else ""
                lines.append(f"     store {name} ({store.backend}{kind_note}){changelog}")
            if p.timers:
                lines.append(f"     {p.timers}")
            for name in p.globals:
                lines.append(f"     reads global table {name}")
            for out in p.outputs:
                lines.append(f"     -> {graph.topics[out]} topic {out}")
            if p.dead_letters:
                lines.append(f"     -> dead-letter topic {p.dead_letters}")
    for name, topic in graph.global_tables.items():
        lines.append(
            f"global table {name} <- topic {topic} (in memory, all partitions read by every "
            "worker; the topic is its changelog)"
        )
    return "\n".join(lines)


def _ids(graph: Graph) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Stable node ids: topics t0.., stores s0.., processors p0.. (in declaration order)."""
    topics = {name: f"t{i}" for i, name in enumerate(graph.topics)}
    stores = {name: f"s{i}" for i, name in enumerate(graph.stores)}
    processors = [f"p{i}" for i in range(len(graph.processors))]
    return topics, stores, processors


def _edges(graph: Graph) -> list[tuple[str, str, str]]:
    """(from, to, style): "data" (records flow), "state" (store, changelog), "poison"."""
    topics, stores, processors = _ids(graph)
    edges: list[tuple[str, str, str]] = []
    for pid, p in zip(processors, graph.processors, strict=True):
        edges.append((topics[p.topic], pid, "data"))
        edges.extend((pid, stores[name], "state") for name in p.stores)
        edges.extend((pid, topics[out], "data") for out in p.outputs)
        if p.dead_letters:
            edges.append((pid, topics[p.dead_letters], "poison"))
        edges.extend((stores[name], pid, "state") for name in p.globals)
    for name, topic in graph.global_tables.items():
        edges.append((topics[topic], stores[name], "data"))
    for name, store in graph.stores.items():
        if store.changelog is not None:
            edges.append((stores[name], topics[store.changelog], "state"))
    return edges


def _store_label(store: StoreNode) -> str:
    return f"{store.name}\n{store.backend}{' window' if store.window else ''} store"


def _mermaid_text(label: str) -> str:
    return label.replace('"', "#quot;").replace("\n", "<br/>")


def _mermaid(graph: Graph) -> str:
    topics, stores, processors = _ids(graph)
    lines = ["flowchart LR"]
    for name, tid in topics.items():
        lines.append(f'  {tid}(["{_mermaid_text(name)}"]):::{graph.topics[name].replace("-", "")}')
    for pid, p in zip(processors, graph.processors, strict=True):
        lines.append(f'  {pid}["{_mermaid_text(p.name)}"]:::processor')
    for name, sid in stores.items():
        lines.append(f'  {sid}[("{_mermaid_text(_store_label(graph.stores[name]))}")]:::store')
    for a, b, style in _edges(graph):
        arrow = {"data": "-->", "state": "-.->", "poison": "-. dead letters .->"}[style]
        lines.append(f"  {a} {arrow} {b}")
    lines += [
        "  classDef source fill:#dbeafe,stroke:#1d4ed8",
        "  classDef output fill:#dcfce7,stroke:#15803d",
        "  classDef repartition fill:#fef9c3,stroke:#a16207",
        "  classDef changelog fill:#f3e8ff,stroke:#7e22ce",
        "  classDef deadletter fill:#fee2e2,stroke:#b91c1c",
        "  classDef globaltable fill:#e0f2fe,stroke:#0369a1",
        "  classDef processor fill:#ffffff,stroke:#334155",
        "  classDef store fill:#f1f5f9,stroke:#475569",
    ]
    return "\n".join(lines)


def _dot_text(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_DOT_COLOURS = {
    "source": "#dbeafe",
    "output": "#dcfce7",
    "repartition": "#fef9c3",
    "changelog": "#f3e8ff",
    "dead-letter": "#fee2e2",
    "global-table": "#e0f2fe",
}


def _dot(graph: Graph) -> str:
    topics, stores, processors = _ids(graph)
    title = _dot_text(graph.application_id or "topology")
    lines = [
        f'digraph "{title}" {{',
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=11];',
    ]
    for name, tid in topics.items():
        kind = graph.topics[name]
        lines.append(
            f'  {tid} [label="{_dot_text(name)}\\n({kind})", shape=box, '
            f'style="rounded,filled", fillcolor="{_DOT_COLOURS[kind]}"];'
        )
    for pid, p in zip(processors, graph.processors, strict=True):
        lines.append(f'  {pid} [label="{_dot_text(p.name)}", shape=box];')
    for name, sid in stores.items():
        label = _dot_text(_store_label(graph.stores[name]))
        lines.append(f'  {sid} [label="{label}", shape=cylinder];')
    attrs = {"data": "", "state": " [style=dashed]", "poison": ' [style=dotted, color="#b91c1c"]'}
    for a, b, style in _edges(graph):
        lines.append(f"  {a} -> {b}{attrs[style]};")
    lines.append("}")
    return "\n".join(lines)


def write_picture(graph: Graph, output: Path, fmt: str | None = None) -> None:
    """Write ``output``: .png/.svg/.pdf rendered by Graphviz ``dot``; .dot/.gv/.mmd/.txt as text.

    ``fmt`` (when given) must agree with a text suffix.
    """
    suffix = output.suffix.lower()
    if suffix in _WRITTEN:
        wanted = _WRITTEN[suffix]
        if fmt not in (None, wanted):
            raise ConfigError(f"--output {output} is a {wanted} file but --format is {fmt}")
        output.write_text(render(graph, wanted) + "\n", encoding="utf-8")
        return
    if suffix not in _RENDERED:
        known = ", ".join(sorted([*_RENDERED, *_WRITTEN]))
        raise ConfigError(f"--output {output}: unknown file type {suffix!r}; use one of {known}")
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigError(
            f"--output {output} needs Graphviz's `dot` on PATH to draw {suffix[1:]}: install "
            "Graphviz (apt-get install graphviz, brew install graphviz), or write the source "
            "with --format dot / --output file.dot"
        )
    import subprocess  # only to draw: a worker loads the topology's description module too

    proc = subprocess.run(
        [dot, f"-T{_RENDERED[suffix]}", "-o", str(output)],
        input=render(graph, "dot"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ConfigError(f"Graphviz dot failed (exit {proc.returncode}): {proc.stderr.strip()}")
