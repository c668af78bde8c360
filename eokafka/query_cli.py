"""``eokafka query module:app STORE [KEY]``: a running app's committed state, as JSON.

With a KEY: that key's value, partition and offsets. Without: every key of the store (or
those under ``--prefix`` or in [``--start``, ``--end``)), one JSON object a line.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from eokafka.cli_common import BootstrapOption, command_errors, worded_option


def query(
    target: Annotated[
        str, typer.Argument(help="module:app, e.g. mymodule:app", show_default=False)
    ],
    store: Annotated[str, typer.Argument(help="the store to read", show_default=False)],
    key: Annotated[
        str | None, typer.Argument(help="a key [default: none: list the keys]", show_default=False)
    ] = None,
    prefix: Annotated[
        str | None, worded_option("list the keys that start with this", "all keys")
    ] = None,
    start: Annotated[
        str | None, worded_option("list the keys from this one on", "the first")
    ] = None,
    end: Annotated[str | None, worded_option("list the keys below this one", "the last")] = None,
    key_format: Annotated[
        str | None,
        worded_option(
            "text or json: how KEY, --start and --end read (json: 42, {\"id\": 7})",
            "text for String-keyed stores; for JSON, Avro, ... keys: JSON text, else text",
        ),
    ] = None,
    stale: Annotated[
        bool,
        typer.Option("--stale", help="a standby may answer, with its lag", show_default=False),
    ] = False,
    url: Annotated[
        list[str] | None,
        typer.Option(
            "--url",
            help="a worker's query URL, repeatable [default: found from the group]",
            show_default=False,
        ),
    ] = None,
    bootstrap_servers: BootstrapOption = None,
    http_tls_ca: Annotated[
        str | None,
        worded_option(
            "the CA file (PEM) that verifies https workers",
            "http_tls_ca, else the Kafka client's ssl.ca.location, else the system's",
        ),
    ] = None,
    patience: Annotated[
        float, typer.Option(help="seconds to keep asking while a task restores or moves")
    ] = 30.0,
) -> None:
    """Read committed store state from the app's running workers (any worker, any key)."""
    from eokafka.loading import load_app
    from eokafka.query import QueryClient
    from eokafka.runtime.query.tls import trusted_ca

    with command_errors(bootstrap_servers or ""):
        overrides = {"bootstrap_servers": bootstrap_servers, "http_tls_ca": http_tls_ca}
        settings = load_app(target).settings(overrides)
        if url:
            client = QueryClient(url, settings.http_token, patience, trusted_ca(settings))
        else:  # the workers are found from the group: the cluster must answer
            from eokafka.toolclients import reach

            reach(settings)
            client = QueryClient.for_app(settings, patience)
        if key is not None:
            typer.echo(json.dumps(client.get(store, key, stale, key_format)))
            return
        for item in client.items(store, prefix, start, end, key_format=key_format):
            typer.echo(json.dumps(item))
