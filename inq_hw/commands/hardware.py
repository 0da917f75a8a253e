"""Subcommand ``generate``: hardware units from an integer model package."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.cli import command
from inq_hw.commands.common import format_table

__all__ = ["generate"]


def _configure_generate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--unit",
        default="network",
        help="'layer:<name>' (one constant-weight unit) or 'network' (default)",
    )
    parser.add_argument(
        "--pipeline", type=int, default=0, help="pipeline stages per unit (default 0)"
    )
    parser.add_argument(
        "--baseline",
        choices=("mult8",),
        default=None,
        help="generate the 8-bit uniform multiplier twin instead",
    )
    parser.add_argument("--out", type=Path, default=None, help="default: PACKAGE/rtl")
    parser.add_argument(
        "--lint", action="store_true", help="run verilator --lint-only -Wall on each top"
    )


@command(
    "generate", "Generate Verilog for constant-weight units of a package.", _configure_generate
)
def generate(args: argparse.Namespace) -> dict[str, Any]:
    from rtl_gen.export import RTLError, verilator_lint
    from rtl_gen.generate import generate as generate_rtl

    out = args.out or args.package / "rtl"
    manifest = generate_rtl(
        args.package, out, unit=args.unit, stages=args.pipeline, baseline=args.baseline
    )
    rows = []
    for top in manifest["tops"]:
        params = top["params"]
        rows.append(
            [
                top["name"],
                params["layer"],
                params["mode"],
                params["inputs"],
                params["outputs"],
                params["acc_bits"],
                top["latency"],
            ]
        )
        if args.lint:
            warnings = verilator_lint([out / top["file"]], top["name"])
            if warnings:
                raise RTLError(f"Verilator lint of {top['name']}: {warnings[0]}")
    text = format_table(["top", "layer", "mode", "inputs", "outputs", "acc bits", "latency"], rows)
    return {**manifest, "out": str(out), "_text": f"{text}\n-> {out}"}
