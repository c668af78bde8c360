"""``eokafka reset module:app``: reprocess from scratch (the plan and its steps: reset.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from eokafka.cli_common import (
    BootstrapOption,
    ConfigOption,
    command_errors,
    command_settings,
    worded_option,
)
from eokafka.errors import ConfigError


def reset(
    target: Annotated[str, typer.Argument(help="module:app", show_default=False)],
    to_earliest: Annotated[
        bool,
        typer.Option(
            "--to-earliest", help="input offsets to the start [default]", show_default=False
        ),
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="input offsets to the end")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            help="input offsets to the first record at/after an ISO 8601 time (UTC if no "
            "zone) [default: --to-earliest]",
            show_default=False,
        ),
    ] = None,
    by_duration: Annotated[
        str | None,
        typer.Option(
            help="input offsets that long before now: PT1H, P1DT2H or seconds [default: "
            "--to-earliest]",
            show_default=False,
        ),
    ] = None,
    delete_dead_letters: Annotated[
        bool, typer.Option("--delete-dead-letters", help="also delete <app id>-dlq")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="carry the plan out")] = False,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for the group's members to go")
    ] = 0.0,
    bootstrap_servers: BootstrapOption = None,
    state_dir: Annotated[
        str | None,
        worded_option(
            "the workers' state dir", "$XDG_STATE_HOME/eokafka or ~/.local/state/eokafka"
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Reprocess from scratch: offsets, internal topics, local state.

    Moves the input offsets, deletes the app's internal topics and wipes its state. Prints
    the plan and changes nothing unless --yes is given. Refuses while any worker of the app
    is a member of its consumer group.
    """
    from eokafka import toolclients
    from eokafka.logs import setup_command_logging
    from eokafka.reset import (
        admin_client,
        choose_target,
        execute,
        plan_reset,
        wait_until_inactive,
    )

    setup_command_logging()
    with command_errors(bootstrap_servers or ""):
        if to_earliest and (to_latest or to_datetime or by_duration):
            raise ConfigError("--to-earliest and another target: choose one")
        settings, app = command_settings(target, bootstrap_servers, config, state_dir=state_dir)
        assert app is not None
        goal = choose_target(to_latest, to_datetime, by_duration)
        toolclients.reach(settings)
        admin = admin_client(settings)
        wait_until_inactive(admin, settings.application_id, wait)
        plan = plan_reset(app.topology, settings, goal, delete_dead_letters, admin)
        typer.echo(plan.describe())
        if not yes:
            typer.echo("nothing changed: run again with --yes to carry this out")
            return
        execute(plan, settings, admin)
        typer.echo("reset done: the next run reprocesses from the new offsets")
