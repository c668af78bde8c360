"""``eokafka describe module:app``: an app's topology and settings, as text or a picture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from eokafka.cli_common import fail
from eokafka.errors import EokafkaError


def describe(
    target: Annotated[str, typer.Argument(help="module:app", show_default=False)],
    format: Annotated[
        str, typer.Option("--format", "-f", help="text | mermaid | dot")
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="write a file: .png/.svg/.pdf (needs Graphviz), .dot, .mmd [default: print]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show an app's topology and its settings.

    The topics, processors, stores and changelogs, as text, Mermaid or Graphviz dot.
    """
    from eokafka.describe import render, write_picture
    from eokafka.loading import load_app
    from eokafka.on_error import shown
    from eokafka.topology import topology_graph

    try:
        app = load_app(target)
        settings = app.settings()
        dlq = settings.dlq_topic if app.topology.may_dead_letter(settings.on_error) else None
        graph = topology_graph(app.topology, app.application_id, dlq)
        if output is not None:
            write_picture(graph, output, None if format == "text" else format)
            typer.echo(f"wrote {output}")
            return
        typer.echo(render(graph, format))
        if format == "text":
            typer.echo(f"settings: {settings}")
            policies = app.topology.error_policies(settings.on_error)
            if any(p != settings.on_error for p in policies.values()):
                each = ", ".join(f"{topic}: {shown(p)}" for topic, p in policies.items())
                typer.echo(f"on_error: {each}")
    except EokafkaError as exc:
        fail(exc)
