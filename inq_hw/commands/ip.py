"""Subcommand ``ip``: the export kit, an AXI4-Stream IP core with its own core file,
testbenches, scripts and constraints (:mod:`rtl_gen.ipkit`)."""

import argparse
from typing import Any

from inq_hw.commands.common import format_table, output_dir
from inq_hw.commands.hardware import add_design_options, dataflow_folding, dataflow_pipeline
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = ["ip"]


def _configure_ip(parser: argparse.ArgumentParser) -> None:
    add_design_options(parser, unit="dataflow")
    parser.add_argument("--out", type=output_dir, required=True, help="the IP directory to write")
    parser.add_argument(
        "--samples", type=int, default=16, help="golden test images shipped (default 16)"
    )
    parser.add_argument(
        "--clock-ns", type=float, default=10.0, help="clock period to constrain (default 10)"
    )


def _print(line: str) -> None:
    print(line, flush=True)


@command(
    "ip",
    "Export an AXI4-Stream IP kit: RTL, FuseSoC core, testbenches, scripts, constraints.",
    _configure_ip,
)
def ip(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.intmodel.package import load_package
    from rtl_gen.ipkit import write_ip
    from sim.vectors import golden_vectors

    if args.unit != "dataflow":
        raise ConfigError(
            f"The IP kit wraps the streaming dataflow top: --unit dataflow, not {args.unit!r}"
        )
    folding = dataflow_folding(args.fold, args.package)
    pipeline = dataflow_pipeline(args, folding)
    _print(f"[1/2] golden vectors: {args.samples} test images")
    images = golden_vectors(load_package(args.package), args.samples)["input"]
    _print(f"[2/2] IP kit -> {args.out}")
    info = write_ip(
        args.package,
        args.out,
        images=images,
        baseline=args.baseline,
        folding=folding,
        pipeline=pipeline,
        clock_ns=args.clock_ns,
    )
    (top,) = info["manifest"]["tops"]
    params = top["params"]
    rows = [
        ["top", info["top"]],
        ["core", info["core"]],
        ["s_axis_tdata bits", params["s_axis"]["width"]],
        ["m_axis_tdata bits", params["m_axis"]["width"]],
        ["latency (cycles)", params["latency_cycles"]],
        ["interval (cycles per image)", params["interval_cycles"]],
        ["golden images", len(images)],
    ]
    text = f"{format_table(['', ''], rows)}\n-> {args.out}"
    return {key: value for key, value in info.items() if key != "manifest"} | {"_text": text}
