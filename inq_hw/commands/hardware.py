"""Subcommand ``generate``: hardware units from an integer model package."""

import argparse
from pathlib import Path
from typing import Any

from inq_hw.commands.common import format_table, output_dir, output_file, samples_arg
from inq_hw.commands.registry import command
from inq_hw.errors import ConfigError

__all__ = [
    "add_design_options",
    "add_line_buffer_option",
    "dataflow_folding",
    "dataflow_pipeline",
    "generate",
    "parse_stages",
    "simulate",
]


def dataflow_folding(items: list[str], package: Path) -> dict[str, int]:
    """The ``--fold`` items as a fold per weight layer of the package."""
    from inq_hw.intmodel.package import load_package
    from rtl_gen.dataflow import expand_folding, parse_folds

    names = [layer.name for layer in load_package(package).weight_layers()]
    return expand_folding(parse_folds(items), names)


def add_line_buffer_option(parser: argparse.ArgumentParser) -> None:
    """``--line-buffer``: where the dataflow top's convolutions keep their row delays."""
    from rtl_gen.engines import AUTO_MEMORY_DEPTH, DEFAULT_LINE_BUFFER, LINE_BUFFERS

    parser.add_argument(
        "--line-buffer",
        choices=LINE_BUFFERS,
        default=None,
        help="dataflow: the convolutions' row delays in a memory (block RAM), in "
        f"registers, or auto: a memory from {AUTO_MEMORY_DEPTH} words per row (default "
        f"{DEFAULT_LINE_BUFFER}; rtl_gen.engines.line_buffer_in_memory)",
    )


def parse_stages(text: str) -> int:
    """``--pipeline N``'s N."""
    if not text.isdigit():
        raise ConfigError(f"Pipeline stages must be a non-negative integer, not {text!r}")
    return int(text)


def dataflow_pipeline(args: argparse.Namespace, folding: dict[str, int]) -> dict[str, int]:
    """Stages per weight layer: ``--pipeline N`` for all, or ``auto`` for ``--clock-mhz``."""
    from inq_hw.intmodel.package import load_package

    model = load_package(args.package)
    if args.pipeline == "auto":
        from rtl_gen.pipelining import pipeline_for_clock

        if args.clock_mhz is None:
            raise ConfigError("--pipeline auto needs --clock-mhz")
        return pipeline_for_clock(
            model,
            clock_mhz=args.clock_mhz,
            family=args.family,
            folding=folding,
            baseline=args.baseline,
        )
    if args.clock_mhz is not None:
        raise ConfigError("--clock-mhz applies to --pipeline auto only")
    stages = parse_stages(args.pipeline)
    return {layer.name: stages for layer in model.weight_layers()}


def _generate_dataflow(args: argparse.Namespace) -> dict[str, Any]:
    from rtl_gen.dataflow import generate_dataflow
    from rtl_gen.engines import DEFAULT_LINE_BUFFER
    from rtl_gen.export import RTLError, verilator_lint

    folding = dataflow_folding(args.fold, args.package)
    pipeline = dataflow_pipeline(args, folding)
    default = "rtl-dataflow-mult8" if args.baseline else "rtl-dataflow"
    out = args.out or args.package / default
    manifest = generate_dataflow(
        args.package,
        out,
        baseline=args.baseline,
        folding=folding,
        pipeline=pipeline,
        adder_graph=args.adder_graph,
        max_depth=args.max_depth,
        line_buffer=args.line_buffer or DEFAULT_LINE_BUFFER,
    )
    (top,) = manifest["tops"]
    if args.lint:
        warnings = verilator_lint([out / top["file"]], top["name"])
        if warnings:
            raise RTLError(f"Verilator lint of {top['name']}: {warnings[0]}")
    params = top["params"]
    rows = [
        [e["layer"], e["kind"], e["fold"], e["pipeline"], e["adder_graph"] or "-"]
        for e in params["engines"]
    ]
    text = format_table(["engine", "kind", "fold", "pipeline", "adder graph"], rows)
    timing = (
        f"latency {params['latency_cycles']} cycles, "
        f"interval {params['interval_cycles']} cycles per image"
    )
    return {**manifest, "out": str(out), "_text": f"{text}\n{top['name']}: {timing}\n-> {out}"}


def add_design_options(
    parser: argparse.ArgumentParser, *, unit: str = "network", package_optional: bool = False
) -> None:
    """The package and the unit, fold, pipeline and baseline options of ``generate``,
    shared by every command that builds a design (``generate``, ``ip``)."""
    if package_optional:  # generate --matrix builds a unit without a package
        parser.add_argument(
            "package",
            type=Path,
            nargs="?",
            help="package directory written by 'inq-hw export' (or give --matrix)",
        )
    else:
        parser.add_argument(
            "package", type=Path, help="package directory written by 'inq-hw export'"
        )
    parser.add_argument(
        "--unit",
        default=unit,
        help="'layer:<name>' (one constant-weight unit), 'network' (one unit per weight "
        f"layer) or 'dataflow' (the whole network as one streaming top); default {unit}",
    )
    parser.add_argument(
        "--fold",
        action="append",
        default=[],
        metavar="LAYER=F",
        help="dataflow: compute LAYER's outputs in F groups, one per cycle (repeatable; "
        "'all=F' for every weight layer; default 1, fully unrolled)",
    )
    parser.add_argument(
        "--pipeline",
        default="0",
        metavar="N|auto",
        help="register stages inside each unit or dot stage (default 0, combinational); "
        "dataflow: 'auto' picks them per layer for --clock-mhz on --family",
    )
    parser.add_argument(
        "--clock-mhz", type=float, default=None, help="target clock of --pipeline auto"
    )
    parser.add_argument(
        "--family",
        choices=("ice40", "ecp5"),
        default="ecp5",
        help="device family of the --pipeline auto delay model (default ecp5)",
    )
    parser.add_argument(
        "--baseline",
        choices=("mult8",),
        default=None,
        help="generate the 8-bit uniform multiplier twin instead",
    )


def _configure_generate(parser: argparse.ArgumentParser) -> None:
    add_design_options(parser, package_optional=True)
    parser.add_argument(
        "--matrix",
        type=Path,
        default=None,
        metavar="W.npy",
        help="instead of a package: the shift-add unit of y_j = sum_i x_i W[i, j] for an "
        "integer inputs x outputs matrix of 0 / +-2**k entries",
    )
    parser.add_argument("--in-bits", type=int, default=8, help="--matrix: input width (default 8)")
    parser.add_argument(
        "--unsigned", action="store_true", help="--matrix: unsigned inputs (default signed)"
    )
    parser.add_argument(
        "--adder-graph",
        choices=("tree", "shared"),
        default=None,
        help="shift-add sums: one balanced tree per output, or one graph sharing sums "
        "across outputs (default: rtl_gen.units.DEFAULT_ADDER_GRAPH); dataflow: every "
        "unrolled weight layer, folded (--fold) layers keep their lanes",
    )
    parser.add_argument(
        "--max-depth",
        type=int,
        default=None,
        help="shared graphs: adder levels sharing may not push an output beyond",
    )
    add_line_buffer_option(parser)
    parser.add_argument("--out", type=output_dir, default=None, help="default: PACKAGE/rtl")
    parser.add_argument(
        "--lint", action="store_true", help="run verilator --lint-only -Wall on each top"
    )


@command(
    "generate", "Generate Verilog for constant-weight units of a package.", _configure_generate
)
def generate(args: argparse.Namespace) -> dict[str, Any]:
    from rtl_gen.export import RTLError, verilator_lint
    from rtl_gen.generate import generate as generate_rtl

    if args.matrix is not None:
        return _generate_matrix(args)
    if args.package is None:
        raise ConfigError("Give a package directory, or --matrix W.npy")
    if args.unit == "dataflow":
        return _generate_dataflow(args)
    if args.fold:
        raise ConfigError("--fold applies to --unit dataflow only")
    if args.line_buffer is not None:
        raise ConfigError("--line-buffer applies to --unit dataflow only")
    if args.pipeline == "auto" or args.clock_mhz is not None:
        raise ConfigError("--pipeline auto and --clock-mhz apply to --unit dataflow only")
    out = args.out or args.package / "rtl"
    stages = parse_stages(args.pipeline)
    manifest = generate_rtl(
        args.package,
        out,
        unit=args.unit,
        stages=stages,
        baseline=args.baseline,
        adder_graph=args.adder_graph,
        max_depth=args.max_depth,
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


def _generate_matrix(args: argparse.Namespace) -> dict[str, Any]:
    from rtl_gen.generate import generate_matrix

    if args.package is not None or args.unit != "network" or args.fold or args.baseline:
        raise ConfigError("--matrix takes no package, --unit, --fold or --baseline")
    out = args.out or args.matrix.with_suffix("").with_name(args.matrix.stem + "-rtl")
    manifest = generate_matrix(
        args.matrix,
        out,
        in_bits=args.in_bits,
        signed=not args.unsigned,
        stages=parse_stages(args.pipeline),
        adder_graph=args.adder_graph,
        max_depth=args.max_depth,
    )
    (top,) = manifest["tops"]
    p = top["params"]
    text = (
        f"{top['name']}: {p['inputs']} inputs x {p['outputs']} outputs, {p['adder_graph']} "
        f"adder graph, {p['adders']} adders, acc {p['acc_bits']} bits, latency {top['latency']}"
    )
    return {**manifest, "out": str(out), "_text": f"{text}\n-> {out}"}


def _configure_simulate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--rtl", type=Path, default=None, help="dataflow RTL (default PACKAGE/rtl-dataflow)"
    )
    parser.add_argument(
        "--engine",
        choices=("fast", "cocotb"),
        default=None,
        help="fast: compiled Verilator harness; cocotb: the cocotb testbench "
        "(default: fast when Verilator is installed)",
    )
    parser.add_argument(
        "--simulator",
        choices=("icarus", "verilator"),
        default=None,
        help="cocotb engine: default the first installed of icarus, verilator",
    )
    parser.add_argument(
        "--samples",
        type=samples_arg,
        default=64,
        help="test images to simulate, or 'all' (default 64)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the gaps and stalls")
    parser.add_argument(
        "--stall", type=float, default=0.2, help="probability of a stalled output cycle"
    )
    parser.add_argument(
        "--idle", type=float, default=0.2, help="probability of an idle input cycle"
    )
    parser.add_argument("--waves", action="store_true", help="write a waveform file")
    parser.add_argument(
        "--activity",
        type=output_file,
        default=None,
        metavar="PATH",
        help="fast engine: write switching activity (toggles per signal bit) as JSON",
    )
    parser.add_argument(
        "--fold", action="append", default=[], metavar="LAYER=F", help="as for generate"
    )
    parser.add_argument(
        "--pipeline",
        default=None,
        metavar="N",
        help="as for generate (a number of stages; default 0, or what the RTL found has)",
    )
    parser.add_argument(
        "--out", type=output_file, default=None, help="summary JSON (default RTL/simulation.json)"
    )


@command(
    "simulate",
    "Simulate the dataflow top on test images, bit-exact against the golden model.",
    _configure_simulate,
)
def simulate(args: argparse.Namespace) -> dict[str, Any]:
    import json

    from inq_hw.checkpoint import atomic_write
    from inq_hw.intmodel.package import load_package
    from sim.simulate import simulate_package

    # Only what the user asked for: checked against RTL that exists, used to generate it
    # when there is none (nothing asked: the unrolled, unpipelined top).
    folding = dataflow_folding(args.fold, args.package) if args.fold else None
    pipeline = None
    if args.pipeline is not None:
        stages = parse_stages(args.pipeline)
        pipeline = {layer.name: stages for layer in load_package(args.package).weight_layers()}
    rtl = args.rtl or args.package / "rtl-dataflow"
    summary = simulate_package(
        args.package,
        rtl_dir=rtl,
        engine=args.engine,
        simulator=args.simulator,
        samples=None if args.samples == "all" else args.samples,
        seed=args.seed,
        idle=args.idle,
        stall=args.stall,
        waves=args.waves,
        activity=args.activity,
        folding=folding,
        pipeline=pipeline,
    )
    out = args.out or rtl / "simulation.json"

    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")

    atomic_write(out, write)
    rows = [
        ["engine", summary["engine"]],
        ["simulator", summary["simulator_version"]],
        ["samples", summary["samples"]],
        ["mismatches", summary["mismatched_samples"]],
        [
            "cycles per image",
            f"{summary['interval_cycles']} (manifest {summary['claimed_interval_cycles']})",
        ],
        [
            "latency (cycles)",
            f"{summary['latency_cycles']} (manifest {summary['claimed_latency_cycles']})",
        ],
        ["build seconds", summary["build_seconds"]],
        ["run seconds", summary["run_seconds"]],
        ["images per second of simulation (build excluded)", summary["images_per_second"]],
    ]
    if summary["waves"]:
        rows.append(["waves", summary["waves"]])
    if summary["activity"]:
        rows.append(["switching activity", summary["activity"]])
    return {**summary, "out": str(out), "_text": f"{format_table(['', ''], rows)}\n-> {out}"}
