"""Runs one worker in this process, or N worker processes under a thin supervisor.

The supervisor restarts nothing: when a worker exits with an error it stops the others and
exits with that error, leaving restarts to the process manager (systemd, Kubernetes) that
can see the cause. Scale-out beyond one machine is the consumer group's job.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from eokafka import startup_gc
from eokafka.config import Settings
from eokafka.errors import ConfigError, EokafkaError
from eokafka.metrics import WorkerMetrics
from eokafka.runtime.process.instance import resolve_instance_id
from eokafka.topology import Topology

if TYPE_CHECKING:  # bounded runs and sources: imported when a run has them
    from eokafka.runtime.process.bounded import Bounds, RunSummary
    from eokafka.runtime.process.sources import SourceWorker

log = logging.getLogger("eokafka.supervisor")


def package_version() -> str:
    """The installed package's version (importlib.metadata's imports and its scan of sys.path
    cost a worker's start: called when the metrics are first scraped)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eokafka")
    except PackageNotFoundError:
        return "0+unknown"


def worker_metrics(settings: Settings, instance_id: str) -> WorkerMetrics:
    """The worker's metrics: served when the worker has a metrics port or a query server
    (its page reads them); otherwise nothing can read them and they are not kept."""
    served = settings.metrics_port is not None or settings.http_port is not None
    return WorkerMetrics(settings.application_id, instance_id, package_version, served=served)


Load = Callable[[str], Topology]  # ``module:app`` -> its topology, in a child process


def run_worker(
    topology: Topology, settings: Settings, slot: int = 0, bounds: Bounds | None = None
) -> RunSummary | None:
    """Run one worker until SIGTERM/SIGINT or its bounds (clean exit) or an error (raised)."""
    from eokafka.runtime.process.preflight import check_connection
    from eokafka.runtime.process.worker import Worker

    # A refused login is an error, not an endless retry. The first input's metadata alone:
    # the worker checks that topic next, and all topics' may be thousands.
    check_connection(settings, topic=next(iter(topology.topics), None))
    instance = resolve_instance_id(settings, slot)
    try:
        metrics = worker_metrics(settings, instance.value)
        if settings.metrics_port is not None:
            port = settings.metrics_port + slot
            metrics.serve(port, settings.metrics_host)
            log.info("metrics at http://%s:%d/metrics", settings.metrics_host, port)
        worker: Worker | SourceWorker
        server = None
        if topology.feeds:
            if bounds is not None:
                raise ConfigError(
                    "--until-end, --max-records and --max-seconds bound a run over input "
                    "topics; a source-only app reads none"
                )
            from eokafka.runtime.process.sources import SourceWorker  # feeds only

            worker = SourceWorker(topology, settings, instance.value, metrics)
        else:
            url = None
            if settings.http_port is not None:  # the web server's imports cost a worker's start
                from eokafka.runtime.query.start import query_url, start_query_server

                url = query_url(settings, slot)
            worker = Worker(topology, settings, instance.value, metrics, bounds, query_url=url)
            if worker.desk is not None:
                server = start_query_server(
                    topology, settings, worker.desk, metrics, instance.value, slot
                )
                log.info("queries at %s (bound to %s)", url, settings.http_host)
        signal.signal(signal.SIGTERM, worker.stop)
        signal.signal(signal.SIGINT, worker.stop)
        startup_gc.resume()  # built: collect cycles again (eokafka/startup_gc.py)
        try:
            worker.run()
        finally:
            if server is not None:
                server.close()
        bound = worker.bound if isinstance(worker, Worker) else None
        return bound.summary() if bound is not None else None
    finally:
        instance.release()


def _child(
    target: str | None,
    load: Load | None,
    topology: Topology | None,
    settings: Settings,
    slot: int,
    bounds: Bounds | None,
    results: Any,
) -> None:
    from eokafka.logs import setup_logging

    setup_logging(f"worker-{slot}")
    try:
        if target is not None and load is not None:
            topology = load(target)
        assert topology is not None
        summary = run_worker(topology, settings, slot, bounds)
    except EokafkaError as exc:
        log.error("%s", exc)
        sys.exit(1)
    except Exception:
        log.exception("worker %d failed", slot)  # through the log: secrets scrubbed
        sys.exit(1)
    if summary is not None:
        log.info("%s", summary.text())
        results.put(summary)


def run_app(
    topology: Topology,
    settings: Settings,
    target: str | None = None,
    load: Load | None = None,
    bounds: Bounds | None = None,
) -> RunSummary | None:
    """Run the workers; for a bounded run, return the summary of all of them together.

    With several processes, each child loads ``target`` with ``load`` itself (the app's
    module is imported there); without a target it is handed the topology."""
    if settings.processes == 1:
        return run_worker(topology, settings, 0, bounds)
    startup_gc.resume()  # this process only waits for its children from here on
    import multiprocessing  # one worker in this process needs none of it
    import multiprocessing.connection

    ctx = multiprocessing.get_context("spawn")
    results = ctx.SimpleQueue()
    children = [
        ctx.Process(
            target=_child,
            args=(
                target,
                load,
                None if target else topology,
                settings,
                slot,
                None if bounds is None else bounds.share(slot, settings.processes),
                results,
            ),
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
    while True:
        # One snapshot of the live children: both may exit between two checks, and an
        # empty wait() would block for ever.
        alive = [c.sentinel for c in children if c.exitcode is None]
        if not alive:
            break
        multiprocessing.connection.wait(alive)
        for child in children:
            if child.exitcode not in (None, 0) and failed is None and not stopping:
                failed = child.exitcode
                log.error("%s exited with %s; stopping the others", child.name, child.exitcode)
                forward(signal.SIGTERM, None)
    if failed is not None:
        raise SystemExit(failed if failed > 0 else 1)
    if bounds is None:
        return None
    from eokafka.runtime.process.bounded import RunSummary, total  # as in this run's children

    summaries = []
    while not results.empty():
        summaries.append(results.get())
    if len(summaries) < len(children):  # a worker stopped by a signal before it reported
        summaries.append(RunSummary(0, 0, 0.0, "interrupted"))
    return total(summaries)
