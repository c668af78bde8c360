"""``eokafka topics``: list, describe, create (also every topic an app needs) and delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from eokafka.cli_common import (
    TYPER_STYLE,
    BootstrapOption,
    ConfigOption,
    command_errors,
    command_settings,
)

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

    from eokafka.app import App

topics_cli = typer.Typer(
    no_args_is_help=True,
    help="List, describe, create (also all of an app's) and delete topics.",
    **TYPER_STYLE,
)


def _connect(
    target: str | None, bootstrap_servers: str | None, config: list[str] | None
) -> tuple[App | None, AdminClient]:
    """The app (of ``target``) and an admin client, once the cluster has answered."""
    from eokafka import toolclients
    from eokafka.logs import setup_command_logging

    setup_command_logging()
    settings, app = command_settings(target, bootstrap_servers, config)
    toolclients.reach(settings)
    return app, toolclients.admin(settings)


@topics_cli.command("list")
def list_topics(
    internal: Annotated[
        bool, typer.Option("--internal", help="also the broker's own __ topics")
    ] = False,
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """List the cluster's topics.

    With their partition counts and replication factors.
    """
    from eokafka import topic_admin

    with command_errors(bootstrap_servers or ""):
        _, admin = _connect(None, bootstrap_servers, config)
        found = topic_admin.topics(admin, internal)
    width = max([len(t.name) for t in found] + [5])
    typer.echo(f"{'TOPIC':<{width}}  PARTITIONS  REPLICATION")
    for t in found:
        typer.echo(f"{t.name:<{width}}  {t.partitions:>10}  {t.replication:>11}")


@topics_cli.command("describe")
def describe_topics(
    names: Annotated[list[str], typer.Argument(help="the topics", show_default=False)],
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """Show topics' partitions, offsets and configs.

    Each partition's leader, replicas, in-sync replicas and offsets, and the configs set on
    the topic itself.
    """
    from eokafka import topic_admin

    with command_errors(bootstrap_servers or ""):
        _, admin = _connect(None, bootstrap_servers, config)
        for name in names:
            typer.echo("\n".join(topic_admin.describe(admin, name)))


@topics_cli.command("create")
def create_topics(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="the topics to create (or --for module:app)", show_default=False),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="partitions of each new topic [default: with --for, the app's co-partitioned "
            "inputs' count; else the broker's num.partitions]",
            show_default=False,
        ),
    ] = None,
    replication_factor: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="replicas of each partition [default: the broker's default.replication.factor]",
            show_default=False,
        ),
    ] = None,
    topic_config: Annotated[
        list[str] | None,
        typer.Option(
            "--topic-config",
            help="a topic config key=value, repeatable, e.g. retention.ms=-1 [default: the "
            "broker's defaults]",
            show_default=False,
        ),
    ] = None,
    for_app: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="module:app: create every input and output topic the app declares that is "
            "missing, co-partitioned inputs with the same count [default: the topics named]",
            show_default=False,
        ),
    ] = None,
    if_not_exists: Annotated[
        bool, typer.Option("--if-not-exists", help="a topic that exists is not an error")
    ] = False,
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """Create topics, or all those an app reads and writes.

    With --for module:app: the inputs and outputs the app declares that are missing,
    co-partitioned inputs with the same count. The app's internal topics (changelogs,
    repartition and dead-letter topics) are left to its workers, which create them at start.
    """
    from eokafka import app_topics, topic_admin
    from eokafka.app_topics import count_text
    from eokafka.config import parse_config_pairs
    from eokafka.errors import ConfigError

    with command_errors(bootstrap_servers or ""):
        if bool(names) == bool(for_app):
            raise ConfigError("name the topics to create, or give --for module:app (not both)")
        configs = parse_config_pairs(topic_config or [], "--topic-config")
        app, admin = _connect(for_app, bootstrap_servers, config)
        replication = replication_factor or -1
        if app is None:
            counts = dict.fromkeys(names or [], partitions or -1)
            created = topic_admin.create(admin, counts, replication, configs, if_not_exists)
            for topic, count in created.items():
                typer.echo(f"created topic {topic} with {count_text(count)}")
            return
        topology = app.topology
        counts = app_topics.count_topics(topology, lambda t: topic_admin.partition_count(admin, t))
        plan = app_topics.plan_topics(topology, counts, partitions)
        if not plan.roles:
            raise ConfigError(f"{for_app} declares no input or output topic")
        created = topic_admin.create(admin, plan.create, replication, configs, if_not_exists)
        for topic, role in plan.roles.items():
            if topic in plan.existing:
                typer.echo(f"{role} topic {topic}: exists, {count_text(plan.existing[topic])}")
            else:
                count, why = count_text(created[topic]), plan.why[topic]
                typer.echo(f"created {role} topic {topic} with {count} ({why})")


@topics_cli.command("delete")
def delete_topics(
    names: Annotated[list[str], typer.Argument(help="the topics", show_default=False)],
    bootstrap_servers: BootstrapOption = None,
    config: ConfigOption = None,
) -> None:
    """Delete topics and their records (no undo).

    Returns once the cluster's metadata no longer shows them.
    """
    from eokafka import topic_admin

    with command_errors(bootstrap_servers or ""):
        _, admin = _connect(None, bootstrap_servers, config)
        topic_admin.delete(admin, names)
    for name in names:
        typer.echo(f"deleted topic {name}")
