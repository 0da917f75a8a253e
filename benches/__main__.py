"""Run the benches: ``python -m benches [NAME ...] [--json PATH]``.

Every bench module ``benches/bench_<name>.py`` has a ``run()`` that prints a short table
and returns its figures. With no name every bench runs, in the order of :data:`BENCHES`.

Example usage::

    python -m benches                          # all of them
    python -m benches partition                # one
    python -m benches --json reports/bench.json
"""

import argparse
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

BENCHES = (
    "partition",
    "inq_overhead",
    "executor",
    "rtl_gen",
    "pe_array",
    "cost",
    "sim",
    "fastsim",
    "fastsim_build",
    "imports",
    "implement",
    "pipelining",
    "zoo",
    "adder_graph",
    "dataflow_graph",
    "fit",
    "fit_pe",
    "sweep",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benches", description="Run the benches and print their figures."
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"of {', '.join(BENCHES)} (default: all)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all figures here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHES]
    if unknown:
        parser.error(f"Bench must be one of {', '.join(BENCHES)}, not {unknown[0]!r}")
    return args


def _machine() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def run_bench(name: str) -> dict[str, Any]:
    """Run ``benches/bench_<name>.py`` and wrap its figures with timing and machine load."""
    module = importlib.import_module(f"benches.bench_{name}")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    figures = module.run()
    elapsed = time.perf_counter() - start
    print(f"  ({elapsed:.1f} s; 1-min load average {load:.2f} on {os.cpu_count()} CPUs)\n")
    return {"figures": figures, "elapsed_s": elapsed, "load_average_1min": load}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    names = args.names or list(BENCHES)
    results = {name: run_bench(name) for name in names}
    if args.json is not None:
        report = {"machine": _machine(), "benches": results}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
