"""Subcommand ``implement``: a package's dataflow top synthesised, placed, routed and packed."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.commands.common import format_table, output_dir, percent, progress
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = ["implement"]


def _configure(parser: argparse.ArgumentParser) -> None:
    from inq_hw.implement.devices import DEVICES

    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--device", default=None, help=f"target FPGA: {', '.join(DEVICES)} (required)"
    )
    parser.add_argument(
        "--clock-mhz",
        type=float,
        default=None,
        help="clock constraint for place and route (default 12 on iCE40, 100 on ECP5)",
    )
    parser.add_argument(
        "--fold", action="append", default=[], metavar="LAYER=F", help="as for generate"
    )
    parser.add_argument(
        "--pipeline", type=int, default=0, help="register stages per dot stage (default 0)"
    )
    parser.add_argument(
        "--baseline",
        choices=("mult8",),
        default=None,
        help="implement the 8-bit uniform multiplier twin instead",
    )
    parser.add_argument(
        "--no-dsp",
        action="store_true",
        help="map multipliers to LUTs only (ECP5: synth_ecp5 -nodsp); iCE40 uses DSPs only "
        "with --dsp",
    )
    parser.add_argument(
        "--dsp", action="store_true", help="iCE40: map multipliers to SB_MAC16 (synth_ice40 -dsp)"
    )
    parser.add_argument(
        "--rtl", type=Path, default=None, help="an already generated dataflow RTL directory"
    )
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="simulate the synthesised netlist on N test images, bit-exact (default 0: off)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="time limit of each tool stage, seconds"
    )
    parser.add_argument(
        "--out", type=output_dir, default=None, help="default: PACKAGE/implement-DEVICE[-mult8]"
    )


_CLOCK = {"ice40": 12.0, "ecp5": 100.0}


def _dsp(args: argparse.Namespace) -> bool | None:
    if args.dsp and args.no_dsp:
        raise ConfigError("--dsp and --no-dsp exclude each other")
    return True if args.dsp else False if args.no_dsp else None


@command(
    "implement",
    "Synthesise, place and route a package's dataflow top on an FPGA and write its bitstream.",
    _configure,
)
def implement(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.commands.hardware import dataflow_folding
    from inq_hw.implement.devices import get_device
    from inq_hw.implement.flow import implement_package

    if args.device is None:
        raise ConfigError("--device is required (e.g. --device ice40-up5k)")
    device = get_device(args.device)
    if args.check < 0 or args.pipeline < 0:
        raise ConfigError("--check and --pipeline must not be negative")
    folding = dataflow_folding(args.fold, args.package) if args.fold else None
    clock = args.clock_mhz if args.clock_mhz is not None else _CLOCK[device.family]
    with progress(args) as shown:
        result = implement_package(
            args.package,
            device.name,
            rtl_dir=args.rtl,
            out_dir=args.out,
            baseline=args.baseline,
            folding=folding,
            pipeline=args.pipeline,
            clock_mhz=clock,
            dsp=_dsp(args),
            timeout_s=args.timeout,
            progress=shown,
        )
        if args.check:
            from inq_hw.implement.netlist import check_netlist

            summary = check_netlist(args.package, result["rtl"], result, samples=args.check)
            result["netlist_check"] = {
                k: summary[k] for k in ("samples", "mismatched_samples", "simulator_version")
            }
    return {**result, "_text": _text(result)}


def _text(result: dict[str, Any]) -> str:
    shares = result["device_share"]
    rows = [
        [
            name,
            result["resources"][name],
            percent(shares[name]) if shares.get(name) is not None else "",
        ]
        for name in ("lut", "ff", "carry", "bram", "dsp")
    ]
    table = format_table(["resource", "used", f"of {result['device']}"], rows)
    fmax = result["fmax_mhz"]
    lines = [
        table,
        f"Fmax {fmax:.1f} MHz at a {result['clock_mhz']:g} MHz constraint: timing "
        + ("met" if result["timing_met"] else "NOT met"),
        f"{result['images_per_second']:.0f} images/s at Fmax (interval "
        f"{result['interval_cycles']} cycles), latency {result['latency_us']:.2f} µs",
    ]
    if "netlist_check" in result:
        check = result["netlist_check"]
        lines.append(
            f"post-synthesis netlist: {check['samples']} images, "
            f"{check['mismatched_samples']} mismatched"
        )
    lines += [f"bitstream -> {result['bitstream']}", f"nextpnr report -> {result['report']}"]
    return "\n".join(lines)
