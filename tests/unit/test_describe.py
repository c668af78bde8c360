"""``eokafka describe``: one graph of topics, processors and stores in three formats."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eokafka.cli import cli
from eokafka.describe import render, write_picture
from eokafka.errors import ConfigError
from eokafka.topology import topology_graph
from tests.apps.describe_apps import secured, words

WORDS = topology_graph(words.topology, "words", "words-dlq")
TOPICS = {
    "sentences": "source",
    "clicks": "source",
    "word-counts": "output",
    "words-by-word-repartition": "repartition",
    "words-word-counts-changelog": "changelog",
    "words-per-min-changelog": "changelog",
    "words-per-min-stream-time-changelog": "changelog",
    "words-dlq": "dead-letter",
}


def test_the_graph_has_every_topic_with_its_kind() -> None:
    assert WORDS.topics == {name: TOPICS[name] for name in WORDS.topics}
    assert set(WORDS.topics) == set(TOPICS)
    assert {(s.name, s.backend, s.window) for s in WORDS.stores.values()} == {
        ("word-counts", "rocksdb", False),
        ("per-min", "memory", True),
        ("per-min-stream-time", "memory", False),  # the window's stream time, compacted only
    }


def test_text_lists_sources_processors_stores_changelogs_and_outputs() -> None:
    text = render(WORDS, "text")
    assert "source sentences\n  -> processor stream > flat_map > repartition(by-word)" in text
    assert "-> repartition topic words-by-word-repartition" in text
    assert (
        "source words-by-word-repartition (repartition topic, partitions like sentences)" in text
    )
    assert "store word-counts (rocksdb), changelog words-word-counts-changelog" in text
    assert "store per-min (memory, window), changelog words-per-min-changelog" in text
    assert "-> output topic word-counts" in text
    assert text.count("-> dead-letter topic words-dlq") == 3  # on_error=dead-letter: all


def _edges(text: str, arrow: str) -> set[tuple[str, str]]:
    return set(re.findall(rf"^\s*(\w+) {arrow} (\w+)", text, re.MULTILINE))


def _labels(text: str, pattern: str) -> dict[str, str]:
    return {node: label for node, label in re.findall(pattern, text, re.MULTILINE)}


def _named_edges(labels: dict[str, str], edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(labels[a], labels[b]) for a, b in edges}


def test_mermaid_and_dot_draw_the_same_edges() -> None:
    mermaid, dot = render(WORDS, "mermaid"), render(WORDS, "dot")
    assert mermaid.startswith("flowchart LR\n")
    assert dot.startswith('digraph "words" {') and dot.endswith("}")
    m_labels = _labels(mermaid, r'^\s*(\w+)\(?\[\(?"([^"]+)"')
    d_labels = {
        node: label.split("\\n")[0]
        for node, label in _labels(dot, r'^\s*(\w+) \[label="([^"]+)"').items()
    }
    m_labels = {node: label.split("<br/>")[0] for node, label in m_labels.items()}
    m_edges = _edges(mermaid, "-->") | _edges(mermaid, r"-\.->") | _edges(mermaid, r"-\..*?\.->")
    d_edges = _edges(dot, "->")
    assert _named_edges(m_labels, m_edges) == _named_edges(d_labels, d_edges)
    named = _named_edges(d_labels, d_edges)
    assert ("sentences", "stream > flat_map > repartition(by-word)") in named
    assert ("stream > flat_map > repartition(by-word)", "words-by-word-repartition") in named
    assert ("words-by-word-repartition", "repartition > count(word-counts) > to(word-counts)") in (
        named
    )
    assert ("word-counts", "words-word-counts-changelog") in named  # the store's changelog
    assert ("stream > window count(per-min, update)", "words-dlq") in named
    assert len(named) == 13  # with the stream time store and its changelog


def test_labels_are_escaped() -> None:
    graph = topology_graph(words.topology, "words")
    graph.processors[0] = graph.processors[0].__class__(
        'say "hi"\\', "sentences", "String", "String", (), ()
    )
    assert 'p0 [label="say \\"hi\\"\\\\", shape=box];' in render(graph, "dot")
    assert 'p0["say #quot;hi#quot;\\"]:::processor' in render(graph, "mermaid")


def test_hand_written_processors_show_their_declared_outputs() -> None:
    text = render(topology_graph(secured.topology, "secured"), "text")
    assert "store totals (memory), changelog secured-totals-changelog" in text
    assert "-> output topic totals-out" in text


def test_an_unknown_format_or_file_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text, mermaid, dot"):
        render(WORDS, "png")
    with pytest.raises(ConfigError, match="unknown file type '.jpg'"):
        write_picture(WORDS, tmp_path / "x.jpg")


def test_without_graphviz_a_picture_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="Graphviz's `dot`.*apt-get install graphviz"):
        write_picture(WORDS, tmp_path / "words.png")
    write_picture(WORDS, tmp_path / "words.mmd")  # text formats need nothing
    assert (tmp_path / "words.mmd").read_text().startswith("flowchart LR")


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_cli_draws_a_picture_with_graphviz(tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"words{suffix}"
    result = CliRunner().invoke(
        cli, ["describe", "tests.apps.describe_apps:words", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


def test_cli_describe_formats_and_redacts_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    target = "tests.apps.describe_apps:secured"
    text = runner.invoke(cli, ["describe", target])
    assert text.exit_code == 0, text.output
    assert "'sasl.username': 'alice'" in text.output
    assert "'sasl.password': '[redacted]'" in text.output
    assert "'ssl.key.password': '[redacted]'" in text.output
    assert "s3cret-in-code" not in text.output
    for fmt, start in (("mermaid", "flowchart LR"), ("dot", 'digraph "secured"')):
        result = runner.invoke(cli, ["describe", target, "--format", fmt])
        assert result.exit_code == 0 and result.output.startswith(start)
        assert "settings" not in result.output  # pipeable as is
    bad = runner.invoke(cli, ["describe", target, "--format", "jpeg"])
    assert bad.exit_code == 1 and "choose one of text, mermaid, dot" in bad.output
