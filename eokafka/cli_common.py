"""What the eokafka commands share: connection options, their settings, one-line errors.

Exit codes of every command: 0 done; 1 an error, printed as one line ``error: ...`` on
stderr (a setting, an app that does not load, the cluster unreachable or refusing); 2 a
command line it does not understand. ``run`` exits 3 when a signal stops a bounded run
before its bound, ``verify`` 1 when it finds a difference and 2 when it could not check,
``broker status`` 3 when no broker runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from eokafka.cli_plain import fail

__all__ = ["TYPER_STYLE", "BootstrapOption", "ConfigOption", "command_errors", "command_settings",
           "fail", "worded_option"]  # fmt: skip

if TYPE_CHECKING:
    from eokafka.app import App
    from eokafka.config import Settings

# Rich's option tables cut long option names at 80 columns; click's plain help does not.
TYPER_STYLE: dict[str, Any] = {
    "rich_markup_mode": None,
    "pretty_exceptions_show_locals": False,  # locals could hold credentials
    "context_settings": {"max_content_width": 100},
}

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        help="the cluster, host:port[,...] [default: the app's bootstrap_servers, else "
        "EOKAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092]",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        help="a librdkafka setting key=value, repeatable; consumer.key or producer.key for "
        "one client only [default: the app's config and EOKAFKA_CONFIG]",
        show_default=False,
    ),
]


def worded_option(help: str, default: str, *names: str, **limits: float) -> object:
    """An option whose default is said in words: for a setting that the App, the environment
    or the command line may give, None stands for "not given here"."""
    return typer.Option(*names, help=f"{help} [default: {default}]", show_default=False, **limits)


@contextmanager
def command_errors(bootstrap: str = "", code: int = 1) -> Iterator[None]:
    """eokafka's own errors and Kafka's become one line and exit code ``code``."""
    from confluent_kafka import KafkaException

    from eokafka.errors import EokafkaError
    from eokafka.toolclients import kafka_error

    try:
        yield
    except EokafkaError as exc:
        fail(exc, code)
    except KafkaException as exc:
        fail(kafka_error(exc, bootstrap or "bootstrap_servers"), code)


def command_settings(
    target: str | None,
    bootstrap_servers: str | None,
    config: list[str] | None,
    **cli: Any,
) -> tuple[Settings, App | None]:
    """The settings a command connects with: the app's (``target``) or eokafka's own,
    under the environment (``EOKAFKA_*``) and the command line, as ``eokafka run``."""
    import os

    from eokafka import config as settings
    from eokafka.loading import load_app

    overrides: dict[str, Any] = {"bootstrap_servers": bootstrap_servers, **cli}
    if config:
        overrides["config"] = settings.parse_config_pairs(config, "--config")
    if target is None:
        return settings.resolve("eokafka-cli", {}, env=os.environ, cli=overrides), None
    app = load_app(target)
    return app.settings(overrides), app
