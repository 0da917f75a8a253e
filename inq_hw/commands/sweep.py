"""Subcommand ``sweep``: a design-space sweep of the flow, on a process pool or Ray."""

import argparse
import sys
from pathlib import Path
from typing import Any

from inq_hw.commands.common import output_dir
from inq_hw.commands.registry import command

__all__ = ["sweep"]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, metavar="SWEEP.toml", help="the sweep file")
    parser.add_argument(
        "--out", type=output_dir, default="runs/sweep", help="stage cache, points, sweep.json"
    )
    parser.add_argument(
        "--executor",
        choices=("auto", "ray", "pool"),
        default="auto",
        help="where stages run: Ray when installed (auto), or a local process pool",
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="stages in flight (default: the CPUs)"
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join (default RAY_ADDRESS, else local)"
    )


@command(
    "sweep", "Run many flow configurations (a grid or points) and their Pareto report.", _configure
)
def sweep(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.sweep import SweepConfig, run_sweep

    config = SweepConfig.from_toml(args.config)
    stream = sys.stderr if args.json else sys.stdout

    def echo(line: str) -> None:
        if not args.no_progress:
            print(line, file=stream, flush=True)

    record = run_sweep(
        config,
        out=args.out,
        executor=args.executor,
        jobs=args.jobs,
        address=args.address,
        echo=echo,
    )
    text = (
        f"{len(record['points'])} points, {len(record['groups'])} designs, "
        f"{record['sweep_seconds']} s on {record['executor']['kind']}\n-> {args.out}/sweep.md"
    )
    return {
        "sweep": str(args.out / "sweep.json"),
        "points": len(record["points"]),
        "sweep_seconds": record["sweep_seconds"],
        "_text": text,
    }
