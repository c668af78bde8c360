"""``eokafka query module:app STORE [KEY]``: a running app's committed state, as JSON.

With a KEY: that key's value, partition and offsets. Without: every key of the store (or
those under ``--prefix`` or in [``--start``, ``--end``)), one JSON object a line.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from eokafka import redact
from eokafka.errors import EokafkaError


def query(
    target: Annotated[str, typer.Argument(help="module:app, e.g. mymodule:app")],
    store: Annotated[str, typer.Argument(help="the store to read")],
    key: Annotated[str | None, typer.Argument(help="a key; without it, keys are listed")] = None,
    prefix: Annotated[str | None, typer.Option(help="list keys that start with this")] = None,
    start: Annotated[str | None, typer.Option(help="list keys from this one on")] = None,
    end: Annotated[str | None, typer.Option(help="list keys below this one")] = None,
    url: Annotated[
        list[str] | None, typer.Option("--url", help="a worker's query url (default: found)")
    ] = None,
    bootstrap_servers: Annotated[str | None, typer.Option(help="host:port[,...]")] = None,
    patience: Annotated[
        float, typer.Option(help="seconds to keep asking while a task restores or moves")
    ] = 30.0,
) -> None:
    """Read committed store state from the app's running workers (any worker, any key)."""
    from eokafka.loading import load_app
    from eokafka.query import QueryClient

    try:
        settings = load_app(target).settings({"bootstrap_servers": bootstrap_servers})
        if url:
            client = QueryClient(url, settings.http_token, patience)
        else:
            client = QueryClient.for_app(settings, patience)
        if key is not None:
            typer.echo(json.dumps(client.get(store, key)))
            return
        for item in client.items(store, prefix, start, end):
            typer.echo(json.dumps(item))
    except EokafkaError as exc:  # as the other commands report theirs (cli._fail)
        typer.secho(redact.scrub(f"error: {exc}"), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
