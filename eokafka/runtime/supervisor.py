"""Runs one worker in this process, or N worker processes under a thin supervisor.

The supervisor restarts nothing: when a worker exits with an error it stops the others and
exits with that error, leaving restarts to the process manager (systemd, Kubernetes) that
can see the cause. Scale-out beyond one machine is the consumer group's job.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import signal
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eokafka.config import Settings
from eokafka.errors import ConfigError, EokafkaError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.instance import resolve_instance_id

if TYPE_CHECKING:
    from eokafka.app import App

log = logging.getLogger("eokafka.supervisor")


def package_version() -> str:
    try:
        return version("eokafka")
    except PackageNotFoundError:
        return "0+unknown"


def load_app(target: str) -> App:
    """Import ``module:attribute`` and return the App it names."""
    from eokafka.app import App

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r}: expected module:app, e.g. mymodule:app")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # the app's module exists but imports something missing: show where
        raise ConfigError(
            f"{target!r}: no module named {module_name!r} in {Path.cwd()} or on PYTHONPATH"
        ) from exc
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        raise ConfigError(f"{target!r}: {module_name}.{attr} is not an eokafka.App")
    return app


def run_worker(app: App, settings: Settings, slot: int = 0) -> None:
    """Run one worker until SIGTERM/SIGINT (clean exit) or an error (raised)."""
    from eokafka.runtime.source_worker import SourceWorker
    from eokafka.runtime.worker import Worker

    instance = resolve_instance_id(settings, slot)
    try:
        metrics = WorkerMetrics(settings.application_id, instance.value, package_version())
        if settings.metrics_port is not None:
            port = settings.metrics_port + slot
            metrics.serve(port, settings.metrics_host)
            log.info("metrics at http://%s:%d/metrics", settings.metrics_host, port)
        kind = SourceWorker if app.topology.feeds else Worker
        worker = kind(app.topology, settings, instance.value, metrics)
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
        worker.run()
    finally:
        instance.release()


def _child(target: str | None, app: App | None, settings: Settings, slot: int) -> None:
    from eokafka.logs import setup_logging

    setup_logging(f"worker-{slot}")
    try:
        run_worker(load_app(target) if target else app, settings, slot)  # type: ignore[arg-type]
    except EokafkaError as exc:
        log.error("%s", exc)
        sys.exit(1)


def run_app(app: App, settings: Settings, target: str | None = None) -> None:
    if settings.processes == 1:
        run_worker(app, settings)
        return
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(
            target=_child,
            args=(target, None if target else app, settings, slot),
            name=f"eokafka-worker-{slot}",
        )
        for slot in range(settings.processes)
    ]
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.pid is not None and child.exitcode is None:
                child.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.start()
    log.info("started %d worker processes", len(children))
    failed: int | None = None
    while any(c.exitcode is None for c in children):
        multiprocessing.connection.wait([c.sentinel for c in children if c.exitcode is None])
        for child in children:
            if child.exitcode not in (None, 0) and failed is None and not stopping:
                failed = child.exitcode
                log.error("%s exited with %s; stopping the others", child.name, child.exitcode)
                forward(signal.SIGTERM, None)
    if failed is not None:
        raise SystemExit(failed if failed > 0 else 1)
