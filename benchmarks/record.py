"""Run a benchmark script and keep what it printed in ``docs/benchmarks/<script>.txt``.

For the scripts that print their figures but write no table of their own (``micro``,
``store_backends``, ``restart_latency``, ``restore``, ``broker_recovery``,
``sink_throughput``): the file holds the exact command, the script's output, the machine
(CPU, memory, the 1-minute load at start and end, versions) and ``--note``, so a figure
the README quotes can be traced to the run that produced it.

    python -m benchmarks.record micro
    python -m benchmarks.record restart_latency --note "shared machine" -- --bootstrap HOST:PORT
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from benchmarks.chart import load_average, machine_summary

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("script", help="a module of benchmarks/, e.g. micro or restore")
    p.add_argument("--note", default="", help="a remark for the file, e.g. how busy it was")
    p.add_argument("--out", type=Path, help="default: docs/benchmarks/<script>.txt")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    script_args = argv[cut + 1 :]  # the script's own arguments, after --
    command = [sys.executable, "-m", f"benchmarks.{args.script}", *script_args]
    shown = shlex.join(["python", "-m", f"benchmarks.{args.script}", *script_args])
    load = load_average()
    run = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    sys.stdout.write(run.stdout)
    if run.returncode != 0:
        sys.exit(f"{shown} exited with {run.returncode}: nothing recorded")
    out = args.out or DOCS / f"{args.script}.txt"
    lines = [f"command: {shown}", "", run.stdout.rstrip(), "", f"machine: {machine_summary(load)}"]
    if args.note:
        lines.append(f"note: {args.note}")
    out.write_text("\n".join(lines) + "\n")
    print(f"recorded in {out}")


if __name__ == "__main__":
    main()
