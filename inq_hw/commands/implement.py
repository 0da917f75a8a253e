"""Subcommand ``implement``: a package's dataflow top synthesised, placed, routed and packed."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.commands.common import format_table, output_dir, percent, progress
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = ["implement"]


def _configure(parser: argparse.ArgumentParser) -> None:
    from inq_hw.commands.hardware import add_line_buffer_option
    from inq_hw.implement.devices import DEVICES
    from inq_hw.implement.fit import ARCHS, DEFAULT_MARGIN

    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--device",
        default=None,
        help=f"target FPGA: {', '.join(DEVICES)} (required unless --fit names it)",
    )
    parser.add_argument(
        "--fit",
        default=None,
        metavar="DEVICE",
        help="choose each layer's folding for DEVICE: the highest throughput whose predicted "
        f"LUTs, FFs and logic cells fill at most --margin of it (default "
        f"{100 * DEFAULT_MARGIN:.0f}%%; DSPs and block RAMs at most all of it), then "
        "implement it there",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="N",
        help="with --device or --fit: the least area whose images/s at the clock "
        "(clock / interval) reaches N",
    )
    parser.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"share of the device's LUTs, FFs and logic cells a fitted design may fill (default "
        f"{DEFAULT_MARGIN:g})",
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
        "--pipeline",
        default="0",
        metavar="N|auto",
        help="register stages per dot stage (default 0); 'auto': per layer, as many as the "
        "delay model says the clock (--clock-mhz, or the family's default) needs",
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
    add_line_buffer_option(parser)
    parser.add_argument(
        "--arch",
        choices=ARCHS,
        default="auto",
        help="dataflow: the streaming top; pe-array: the programmable shift-PE array (weights "
        "in block RAM, one layer at a time; --pe gives its shape, else --fit chooses it); "
        "auto: the dataflow top, or with --fit the PE array when no folding fits "
        "(default auto)",
    )
    parser.add_argument(
        "--pe",
        default=None,
        metavar="RxC",
        help="implement the shift-PE array of R rows and C columns (e.g. 1x16) instead of "
        "the dataflow top",
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
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="nextpnr's placement seed (default 1); another seed is another placement",
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
    from inq_hw.commands.hardware import dataflow_folding, parse_stages
    from inq_hw.implement.devices import get_device
    from inq_hw.implement.flow import check_seed, implement_package

    device = get_device(_device_name(args))
    if args.check < 0:
        raise ConfigError("--check must not be negative")
    check_seed(args.seed)  # before anything is generated
    clock = args.clock_mhz if args.clock_mhz is not None else _CLOCK[device.family]
    auto = args.pipeline == "auto"
    if auto and (args.fit is not None or args.fps is not None):
        raise ConfigError(
            "--pipeline auto chooses stages for a folding; with --fit or --fps give N"
        )
    stages = 0 if auto else parse_stages(args.pipeline)
    if args.rtl is not None and args.line_buffer is not None:
        raise ConfigError("--line-buffer applies to the top implement generates; drop --rtl")
    pe = _pe_shape(args)
    fit = _fit(args, device.name, clock, stages) if pe is None else None
    if fit is not None:
        folding: dict[str, int] | None = fit.folding
    else:
        folding = dataflow_folding(args.fold, args.package) if args.fold else None
    pipeline: int | dict[str, int] = stages
    if auto and pe is None:
        pipeline = _auto_pipeline(args, device.family, clock, folding)
    with progress(args) as shown:
        if fit is not None:
            shown.message(f"fit {device.name}: {_chosen(fit)}")
        result = implement_package(
            args.package,
            device.name,
            rtl_dir=args.rtl,
            out_dir=args.out,
            baseline=args.baseline,
            folding=folding,
            pipeline=pipeline,
            fit=fit,
            line_buffer=args.line_buffer,
            pe=pe,
            clock_mhz=clock,
            dsp=_dsp(args),
            seed=args.seed,
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


def _pe_shape(args: argparse.Namespace) -> tuple[int, int] | None:
    """``--pe RxC``, checked against the options that apply to the dataflow top only."""
    if args.pe is None:
        if args.arch == "pe-array" and args.fit is None and args.fps is None:
            raise ConfigError("--arch pe-array needs --pe RxC (or --fit DEVICE to choose it)")
        return None
    from inq_hw.implement.pe_array import parse_pe

    shape = parse_pe(args.pe)
    if args.arch == "dataflow":
        raise ConfigError("--pe gives the PE array's shape; it excludes --arch dataflow")
    clash = [
        name
        for name, given in (
            ("--fit", args.fit is not None),
            ("--fps", args.fps is not None),
            ("--fold", bool(args.fold)),
            ("--pipeline", args.pipeline != "0"),
            ("--line-buffer", args.line_buffer is not None),
            ("--rtl", args.rtl is not None),
        )
        if given
    ]
    if clash:
        raise ConfigError(f"--pe implements the PE array as given; drop {', '.join(clash)}")
    return shape


def _chosen(fit: Any) -> str:
    """What a fit chose, in one line."""
    if fit.arch == "pe-array":
        rows, cols = fit.pe
        return (
            f"no folding of the dataflow top fits; shift-PE array {rows}x{cols}, "
            f"{fit.interval_cycles:,} cycles per image, {fit.predicted['lut']:,} LUT, "
            f"{fit.predicted['bram']} BRAM predicted"
        )
    return (
        f"folding {_folds(fit.folding)}, interval {fit.interval_cycles} cycles, "
        f"{fit.predicted['lut']:,} LUT predicted"
    )


def _device_name(args: argparse.Namespace) -> str:
    if args.fit is not None and args.device is not None and args.fit != args.device:
        raise ConfigError(f"--fit {args.fit} and --device {args.device} name two devices")
    name = args.fit or args.device
    if name is None:
        raise ConfigError("--device (or --fit DEVICE) is required (e.g. --device ice40-up5k)")
    return str(name)


def _auto_pipeline(
    args: argparse.Namespace, family: str, clock: float, folding: dict[str, int] | None
) -> dict[str, int]:
    """``--pipeline auto``: each weight layer's stages for ``clock`` on ``family``."""
    from inq_hw.intmodel.package import load_package
    from rtl_gen.pipelining import pipeline_for_clock

    return pipeline_for_clock(
        load_package(args.package),
        clock_mhz=clock,
        family=family,
        folding=folding or {},
        baseline=args.baseline,
    )


def _fit(args: argparse.Namespace, device: str, clock: float, stages: int) -> Any:
    """The folding ``--fit`` / ``--fps`` choose (``None`` without them)."""
    if args.fit is None and args.fps is None:
        return None
    if args.fold or args.rtl is not None:
        raise ConfigError("--fit and --fps choose the folding; drop --fold and --rtl")
    from inq_hw.implement.fit import choose_folding
    from rtl_gen.engines import DEFAULT_LINE_BUFFER

    return choose_folding(
        args.package,
        device,
        fps=args.fps,
        clock_mhz=clock,
        baseline=args.baseline,
        pipeline=stages,
        dsp=_dsp(args),
        margin=args.margin,
        line_buffer=args.line_buffer or DEFAULT_LINE_BUFFER,
        arch=args.arch,
    )


def _folds(folding: dict[str, int]) -> str:
    return ", ".join(f"{name}={fold}" for name, fold in folding.items())


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
    lines = [table]
    cells = result.get("logic_cells")
    if cells:
        lines.append(
            f"placed: {cells['used']:,} {cells['cell']} of {cells['available']:,} "
            f"({percent(cells['share'])}), the device's fill after packing"
        )
    lines += [
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
    lines += _fit_lines(result)
    lines += [f"bitstream -> {result['bitstream']}", f"nextpnr report -> {result['report']}"]
    return "\n".join(lines)


def _fit_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    if "fit" in result:
        fit = result["fit"]
        goal = f"{fit['fps']:g} images/s, least area" if fit["fps"] else "most throughput"
        chose = (
            f"shift-PE array {fit['pe'][0]}x{fit['pe'][1]}"
            if fit.get("arch") == "pe-array"
            else _folds(fit["folding"])
        )
        lines.append(
            f"fitted ({goal}, {fit['margin']:.0%} of {fit['device']}): "
            f"{chose}; {fit['images_per_second']:,.0f} images/s at "
            f"{fit['clock_mhz']:g} MHz"
        )
    predicted = result.get("predicted")
    if predicted:
        used, error = result["resources"], predicted["error"]
        lines.append(
            f"predicted {predicted['lut']:,} LUT / {predicted['ff']:,} FF against "
            f"{used['lut']:,} / {used['ff']:,} synthesised ("
            + ", ".join(f"{key.upper()} {100 * value:+.1f}%" for key, value in error.items())
            + ")"
        )
    return lines
