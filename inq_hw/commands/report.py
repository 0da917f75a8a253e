"""Subcommand ``report``: re-render the trade-off report from a results.json."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.commands.common import output_dir
from inq_hw.commands.registry import command

__all__ = ["report"]


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="results.json written by 'inq-hw flow'")
    parser.add_argument(
        "--out", type=output_dir, default=None, help="report directory (default: beside RESULTS)"
    )


@command(
    "report",
    "Re-render the bit-width trade-off report from a results.json (nothing is re-run).",
    _configure_report,
)
def report(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.report import load_results, render_report

    results = load_results(args.results)
    out = args.out if args.out is not None else args.results.resolve().parent
    files = render_report(results, out)
    text = "\n".join(f"-> {path}" for path in files)
    return {"out": str(out), "files": [str(path) for path in files], "_text": text}
