"""Subcommand ``flow``: the whole pipeline on one data set and model, and its report."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw import defaults
from inq_hw.commands.common import format_table, output_dir, percent, samples_arg
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = ["flow"]


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="flow.toml of an earlier run")
    parser.add_argument("--name", default=None, help="report name (default: the model's)")
    parser.add_argument("--dataset", default=None, help="digits (default), digits28, mnist, ...")
    parser.add_argument("--data-dir", default=None, help="directory of a local data set")
    parser.add_argument("--model", default=None, help="zoo model (default digits-cnn)")
    parser.add_argument("--bits", default=None, help="INQ bit-widths, e.g. 2,3,4,5 (default)")
    parser.add_argument(
        "--a-bits", type=int, default=None, help="activation width, 4 to 16 bits (default 8)"
    )
    parser.add_argument("--simulator", choices=("icarus", "verilator"), default=None)
    parser.add_argument(
        "--targets", default=None, help="cost targets among analytic,generic,ice40,ecp5,nangate45"
    )
    parser.add_argument(
        "--samples",
        type=samples_arg,
        default=None,
        help="test images simulated, a count or 'all' (default 8)",
    )
    parser.add_argument("--skip-synthesis", action="store_true", default=None)
    parser.add_argument(
        "--skip-implementation",
        action="store_true",
        default=None,
        help="do not place and route the whole tops",
    )
    parser.add_argument(
        "--implement-device",
        default=None,
        help="FPGA the whole tops are placed and routed on: ice40-up5k, ice40-hx8k, ecp5-25k, "
        f"ecp5-45k, ecp5-85k (default {defaults.DEFAULT_IMPLEMENT_DEVICE})",
    )
    parser.add_argument(
        "--implement-clock-mhz",
        type=float,
        default=None,
        help="clock constraint of place and route, MHz "
        f"(default {defaults.DEFAULT_IMPLEMENT_CLOCK_MHZ:g})",
    )
    parser.add_argument(
        "--implement-fit",
        action="store_true",
        default=None,
        help="choose each implemented top's folding for --implement-device (the most "
        "throughput that fits, as 'implement --fit'), instead of --fold",
    )
    parser.add_argument(
        "--implement-pipeline",
        type=int,
        default=None,
        metavar="N",
        help="register stages in every dot stage of each implemented top (default 0; "
        "as 'implement --pipeline N')",
    )
    parser.add_argument(
        "--implement-bits",
        default=None,
        help="bit-widths whose whole tops are implemented: smallest, all, or e.g. 2,4 "
        f"(default {defaults.DEFAULT_IMPLEMENT_BITS})",
    )
    parser.add_argument(
        "--implement-designs",
        default=None,
        help="whole tops implemented, among shift_add,mult8,mult8_lut (default "
        f"{','.join(defaults.DEFAULT_IMPLEMENT_DESIGNS)})",
    )
    parser.add_argument(
        "--fp32-epochs",
        type=int,
        default=None,
        help=f"FP32 epochs (default {defaults.FP32_EPOCHS})",
    )
    parser.add_argument(
        "--inq-epochs",
        type=int,
        default=None,
        help=f"epochs per INQ step (default {defaults.INQ_EPOCHS})",
    )
    parser.add_argument(
        "--partition",
        choices=("magnitude", "random"),
        default=None,
        help=f"which weights freeze first (default {defaults.PARTITION}, as quantize)",
    )
    parser.add_argument(
        "--schedule",
        default=None,
        help="accumulated portions (0.5,0.75,0.875,1) or a name: default, auto, paper2..paper5"
        f" (default {defaults.SCHEDULE}, as quantize)",
    )
    parser.add_argument(
        "--lr", type=float, default=None, help=f"learning rate (default {defaults.LR})"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help=f"seed of initialisation, shuffles, random partition (default {defaults.SEED})",
    )
    parser.add_argument(
        "--twin",
        choices=("uniform8", "uniform"),
        default=None,
        help="multiplier twin: uniform8 (8-bit, rounded from FP32; default) or uniform (each "
        "bit-width's own, trained by the same INQ re-training)",
    )
    parser.add_argument(
        "--fold",
        action="append",
        default=None,
        metavar="LAYER=F",
        help="dataflow folding (default "
        + ", ".join(f"{k}={v}" for k, v in defaults.FOLDING.items())
        + ": every digits-cnn layer on one lane)",
    )
    parser.add_argument("--out", type=output_dir, default="runs/flow", help="stage cache")
    parser.add_argument(
        "--report", type=output_dir, default=None, help="report directory (default reports/NAME)"
    )


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, not {text!r}") from None


def config_from_args(args: argparse.Namespace) -> Any:
    """The flow config: ``--config`` (or the defaults), then the options given."""
    from inq_hw.flow import FlowConfig

    config = FlowConfig.from_toml(args.config) if args.config else FlowConfig()
    changes: dict[str, Any] = {}
    options = ("dataset", "data_dir", "model", "simulator", "samples", "skip_synthesis")
    implement = (
        "skip_implementation",
        "implement_device",
        "implement_clock_mhz",
        "implement_fit",
        "implement_pipeline",
    )
    training = ("partition", "schedule", "lr", "seed", "a_bits", "twin")
    for option in (*options, *implement, *training):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    if args.fp32_epochs is not None:
        changes["fp32_epochs"] = args.fp32_epochs
    if args.inq_epochs is not None:
        changes["inq_epochs"] = args.inq_epochs
    if args.bits is not None:
        changes["bits"] = _ints(args.bits, "--bits")
    if args.targets is not None:
        changes["targets"] = tuple(t.strip() for t in args.targets.split(","))
    if args.implement_bits is not None:
        text = args.implement_bits.strip()
        bits = text if text in ("smallest", "all") else _ints(text, "--implement-bits")
        changes["implement_bits"] = bits
    if args.implement_designs is not None:
        changes["implement_designs"] = tuple(d.strip() for d in args.implement_designs.split(","))
    if args.fold is not None:
        from rtl_gen.dataflow import parse_folds

        changes["folding"] = parse_folds(args.fold)
    if args.name is not None:
        changes["name"] = args.name
    elif args.model is not None:
        changes["name"] = args.model
    return config.replace(**changes)


def _placed(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "-"
    if figures.get("refused"):
        return "does not fit"
    fmax, rate = figures.get("fmax_mhz"), figures.get("images_per_second")
    if fmax is None or rate is None:
        return f"{figures['resources']['lut']} LUT, no Fmax"
    return f"{figures['resources']['lut']} LUT, {fmax:.1f} MHz, {rate:.0f}/s"


@command("flow", "Train, quantize, lower, generate, simulate, cost: the report.", _configure)
def flow(args: argparse.Namespace) -> dict[str, Any]:
    import sys

    from inq_hw.flow import run_flow

    config = config_from_args(args)
    report = args.report or Path("reports") / config.name

    def echo(line: str) -> None:
        if not args.json and not args.no_progress:
            print(line, file=sys.stderr, flush=True)

    results = run_flow(config, out=args.out, report=report, echo=echo)
    rows = []
    for entry in results["bits"]:
        rtl = entry.get("rtl") or {}
        energy = (entry.get("cost", {}).get("analytic") or {}).get("energy_pj", {})
        ratio = energy["mult8"] / energy["shift_add"] if energy.get("shift_add") else None
        placed = ((entry.get("implementation") or {}).get("designs") or {}).get("shift_add")
        rows.append(
            [
                entry["bits"],
                percent(entry["accuracy"]["inq"]),
                percent(entry["accuracy"]["integer"]),
                f"{rtl.get('mismatched_samples')}/{rtl.get('samples')}",
                rtl.get("cycles_per_image"),
                f"{ratio:.1f}x" if ratio is not None else "-",
                _placed(placed),
            ]
        )
    headers = ["bits", "INQ", "integer", "RTL mismatches", "cycles/image"]
    device = config.implement_device
    table = format_table(
        [*headers, "energy twin ÷ shift-add", f"shift-add on {device}: LUT, Fmax, images/s"],
        rows,
    )
    text = (
        f"FP32 {percent(results['fp32']['accuracy'])}, {results['flow_seconds']} s\n{table}\n"
        f"-> {report}/report.md"
    )
    return {"report": str(report), "flow_seconds": results["flow_seconds"], "_text": text}
