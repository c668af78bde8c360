"""The body of ``eokafka verify``: check, repair or follow, print, and give the exit code.

Exit codes: 0 all checked and right (after a repair: nothing left that a check would fail
on); 1 a difference (after a repair: one it could not repair); 2 the check could not run.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException

from eokafka.errors import ConfigError, EokafkaError
from eokafka.sink import Sink
from eokafka.verify import CheckOptions, check
from eokafka.verify.follow import FollowOptions, follow
from eokafka.verify.progress import NO_PROGRESS, RichProgress

if TYPE_CHECKING:
    from eokafka.verify.repair import Repaired


class CheckFailed(EokafkaError):
    """The check could not run (exit code 2)."""


@dataclass(frozen=True)
class VerifyCommand:
    """Everything ``eokafka verify`` was asked."""

    check: CheckOptions
    as_json: bool = False
    app: str | None = None  # module:app: its group and its sinks' row formats
    repair: bool = False
    yes: bool = False
    delete_extra: bool = False
    delete_unkeyed: bool = False
    follow: FollowOptions | None = None
    progress: bool | None = None  # None: a bar when stderr is a terminal


def _app(target: str) -> tuple[str, Mapping[str, Sink]]:
    from eokafka.loading import load_app

    app = load_app(target)
    return app.application_id, app.topology.sinks


def run(cmd: VerifyCommand, echo: Callable[[str], None]) -> int:
    """Carry out ``cmd``; raise CheckFailed (exit code 2) when the check can't run."""
    try:
        return _run(cmd, echo)
    except KafkaException as exc:
        raise CheckFailed(f"Kafka: {exc.args[0]}") from exc
    except EokafkaError as exc:
        raise CheckFailed(str(exc)) from exc


def _run(cmd: VerifyCommand, echo: Callable[[str], None]) -> int:
    if cmd.yes and not cmd.repair:
        raise ConfigError("--yes carries out a repair: give --repair too")
    if (cmd.delete_extra or cmd.delete_unkeyed) and not cmd.repair:
        raise ConfigError("--delete-extra and --delete-unkeyed are repair options: give "
                          "--repair too")
    opts, sinks = cmd.check, {}
    if cmd.app is not None:
        group, sinks = _app(cmd.app)
        opts = replace(opts, group=opts.group or group)
    if cmd.follow is not None:
        if cmd.repair:
            raise ConfigError("--follow watches; --repair repairs once: choose one")
        return follow(opts, replace(cmd.follow, as_json=cmd.as_json), echo)
    show = cmd.progress if cmd.progress is not None else sys.stderr.isatty() and not cmd.as_json
    if cmd.repair:
        from eokafka.verify.repair import RepairOptions, repair

        how = RepairOptions(cmd.yes, cmd.delete_extra, cmd.delete_unkeyed)
        with RichProgress() if show else nullcontext(NO_PROGRESS) as progress:
            repaired = repair(opts, how, sinks, progress)
        return _said(repaired, opts, cmd.as_json, echo)
    with RichProgress() if show else nullcontext(NO_PROGRESS) as progress:
        report = check(opts, progress).report
    echo(json.dumps(report.as_dict(), indent=2) if cmd.as_json else report.summary())
    return 0 if report.ok else 1


def _said(
    repaired: Repaired, opts: CheckOptions, as_json: bool, echo: Callable[[str], None]
) -> int:
    """Print a repair's check, plan and outcome; its exit code."""
    report, plan, done = repaired.report, repaired.plan, repaired.done
    if as_json:
        echo(json.dumps(repaired.as_dict(), indent=2))
    else:
        echo(report.summary())
        echo(plan.summary())
        if done is None:
            echo("nothing changed: run again with --yes to carry this plan out")
        else:
            echo(done.summary())
            echo("run eokafka verify again to see the destination as it is now")
    if done is None:
        return 0 if report.ok else 1
    return 1 if plan.still_failing(opts.allow_unkeyed) or report.open_transactions else 0
