"""PNG charts of a benchmark's results, written next to the table it prints.

Every chart carries its own caption: what was measured, how, and on what machine (CPU,
cores, memory, load when the run started, library versions), plus an optional note such
as "indicative, loaded machine". matplotlib comes with the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import textwrap
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.passthrough import Result


def add_options(p: argparse.ArgumentParser, chart: Path) -> None:
    """--values, --chart, --no-chart and --note, the same in every benchmark that charts."""
    p.add_argument(
        "--values",
        choices=("json", "bytes"),
        default="json",
        help="json: the workers parse every value (and write it back); bytes: they don't",
    )
    p.add_argument("--chart", type=Path, default=chart, help="PNG to write (and a .txt beside)")
    p.add_argument("--no-chart", action="store_true", help="print the table only")
    p.add_argument("--note", default="", help="a remark for the chart and table, e.g. the load")


def require_matplotlib() -> None:
    """Fail before a long run, not after it, when the chart cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit(
            "charts need matplotlib: pip install matplotlib (it is in the 'bench' extra), "
            "or pass --no-chart"
        ) from None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    return None


def load_average() -> float:
    """The 1-minute load average: how busy the machine was besides the benchmark."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine_summary(load_at_start: float) -> str:
    """One line about the machine, its load and the software a figure was measured with."""
    import confluent_kafka

    mem = _memory_gb()
    return (
        f"{_cpu_model()}, {os.cpu_count()} logical CPUs, "
        f"{'?' if mem is None else f'{mem:.0f}'} GB RAM, {platform.system()} "
        f"{platform.release()}, 1-min load {load_at_start:.2f} at start and "
        f"{load_average():.2f} at end; Python "
        f"{platform.python_version()}, confluent-kafka {_version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), orjson {_version('orjson')}"
    )


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    """Collect what a table printer prints, so it can go to the screen and to a file."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


def _medians(results: list[Result]) -> dict[str, dict[str, float]]:
    """Per contender (in first-run order) the median of each charted figure over its runs."""
    runs: dict[str, list[Result]] = {}
    for r in results:
        runs.setdefault(r.name, []).append(r)

    def median(rs: list[Result], get: Callable[[Result], float | None]) -> float:
        values = [v for v in map(get, rs) if v is not None]
        return statistics.median(values) if values else float("nan")

    return {
        name: {
            "total": median(rs, lambda r: r.total_rate),
            "steady": median(rs, lambda r: r.steady_rate),
            "cpu": median(rs, lambda r: r.steady_cpu_us),
            "rss": median(rs, lambda r: r.peak_rss_mb),
        }
        for name, rs in runs.items()
    }


def write_chart(
    path: Path, title: str, results: list[Result], how: str, machine: str, note: str = ""
) -> None:
    """Three panels (records/s total and steady, CPU us/record, peak RSS) and a caption."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    figures = _medians(results)
    names = list(figures)
    xs = range(len(names))
    fig, (rate, cpu, rss) = plt.subplots(1, 3, figsize=(13, 5.8), width_ratios=[2, 1, 1])
    width = 0.4
    bars: list[tuple[Any, Any]] = [
        (rate, rate.bar([x - width / 2 for x in xs], [figures[n]["total"] for n in names],
                        width, label="total (start-up included)")),
        (rate, rate.bar([x + width / 2 for x in xs], [figures[n]["steady"] for n in names],
                        width, label="steady (from first output)")),
        (cpu, cpu.bar(xs, [figures[n]["cpu"] for n in names], 0.6, color="tab:green")),
        (rss, rss.bar(xs, [figures[n]["rss"] for n in names], 0.6, color="tab:purple")),
    ]  # fmt: skip
    for ax, label in (
        (rate, "records/s"),
        (cpu, "worker CPU us/record (steady)"),
        (rss, "worker peak RSS MB"),
    ):
        ax.set_title(label, fontsize=10)
        ax.set_xticks(list(xs), names, rotation=20, ha="right", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    for ax, group in bars:
        labels = [
            "" if v != v else f"{v:,.1f}" if v < 100 else f"{v:,.0f}"  # v != v: NaN
            for v in group.datavalues
        ]
        ax.bar_label(group, labels=labels, fontsize=7, padding=2)
    rate.legend(fontsize=8, loc="upper right")
    fig.suptitle(textwrap.fill(title, 130), fontsize=11)
    runs = len(results) // max(1, len(names))
    caption = (
        f"{how} {'Medians of ' + str(runs) + ' rounds. ' if runs > 1 else ''}"
        f"Machine: {machine}.{' ' + note if note else ''}"
    )
    fig.text(0.01, 0.01, textwrap.fill(caption, 190), fontsize=7, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.13, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def publish(
    table: str,
    chart: Path | None,
    title: str,
    results: list[Result],
    how: str,
    load_at_start: float,
    note: str = "",
) -> None:
    """Print the table; with ``chart``, also write it as ``<chart>.txt`` and draw the PNG."""
    machine = machine_summary(load_at_start)
    footer = f"machine: {machine}" + (f"\nnote: {note}" if note else "")
    print(table.rstrip("\n"))
    print(footer)
    if chart is None or not results:
        return
    text = chart.with_suffix(".txt")
    chart.parent.mkdir(parents=True, exist_ok=True)
    text.write_text(table.rstrip("\n") + "\n" + footer + "\n")
    write_chart(chart, title, results, how, machine, note)
    print(f"chart: {chart}; table: {text}")
