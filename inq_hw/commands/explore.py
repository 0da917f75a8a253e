"""Subcommand ``explore``: PE-array shapes and weight widths, by the cycle model.

For each array shape the package is compiled for the programmable PE array
(:mod:`rtl_gen.pe_program`, memories sized to fit) and :mod:`sim.cycle_model` predicts
its exact cycles, utilisation and memory traffic, priced in energy and area by the
technology table. No RTL is generated, so a network too large to unroll explores in
seconds.

``--bits``: a package has one weight width. Its own width is *compiled*; every other
width in ``--bits`` is a *what-if* of the same schedule: cycles and traffic do not depend
on the code width, while the weight memory, the barrel shifter and the accumulator do
(``acc_bits`` grows or shrinks by the change in ``2**(b-2)``, the exponent range of the
codes). Each row says which it is. The multiplier twin (the package's uniform twin
weights, lanes as wide as the twin: 8 bits, or k after ``export --twin``) has no code
width and gets one row per shape; it needs the package's uniform baselines.
"""

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from inq_hw.commands.common import format_table, output_dir, percent
from inq_hw.commands.registry import command, parse_csv
from inq_hw.errors import ConfigError

__all__ = ["explore", "pareto_front"]

DEFAULT_SHAPES = "2x2,4x4,8x8,16x16"
DEFAULT_CLOCK_MHZ = 200.0
_OBJECTIVES = ("latency_us", "energy_nj", "area_mm2")
_FILES = {"json": "json", "table": "txt", "plot": "png"}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="package directory written by 'inq-hw export'")
    parser.add_argument(
        "--pe", default=DEFAULT_SHAPES, help=f"array shapes RxC (default {DEFAULT_SHAPES})"
    )
    parser.add_argument(
        "--bits", default=None, help="weight code widths, 2 to 7 (default: the package's)"
    )
    parser.add_argument(
        "--clock-mhz",
        type=float,
        default=DEFAULT_CLOCK_MHZ,
        help=f"clock for latency, an assumption (default {DEFAULT_CLOCK_MHZ:g})",
    )
    parser.add_argument("--out", type=output_dir, default=None, help="default: PACKAGE/explore")


def _shape(text: str) -> tuple[int, int]:
    rows, sep, cols = text.strip().lower().partition("x")
    if not sep or not rows.isdigit() or not cols.isdigit():
        raise ValueError(text)
    return int(rows), int(cols)


def _parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = parse_csv(text, _shape, "--pe")
    except ConfigError:
        raise ConfigError(f"--pe must be shapes like 4x4,8x8, not {text!r}") from None
    if not shapes or any(not (1 <= r <= 64 and 1 <= c <= 64) for r, c in shapes):
        raise ConfigError(f"--pe shapes must have 1 to 64 rows and columns, not {text!r}")
    return shapes


def _parse_bits(text: str | None, own: int) -> list[int]:
    if text is None:
        return [own]
    from inq_hw.intmodel.codes import check_model_bits

    bits = parse_csv(text, int, "--bits")
    if not bits:
        raise ConfigError(f"--bits must name at least one width, not {text!r}")
    return sorted({check_model_bits(b) for b in bits})


def _what_if(config: Any, bits: int) -> Any:
    """``config`` with ``bits``-bit codes: the accumulator follows the exponent range."""
    from rtl_gen.pe import shift_mac_min_acc_bits

    grown = config.acc_bits + (1 << (bits - 2)) - (1 << (config.weight_bits - 2))
    least = shift_mac_min_acc_bits(act_bits=config.act_bits, weight_bits=bits)
    return dataclasses.replace(config, weight_bits=bits, acc_bits=min(max(grown, least), 62))


def _row(report: Any, config: Any, clock_mhz: float, compiled: bool) -> dict[str, Any]:
    from inq_hw.cost.pe_array import estimate_area, estimate_energy

    report = dataclasses.replace(report, config=config)
    return {
        "pe": config.pe,
        "array": f"{config.rows}x{config.cols}",
        "weight_bits": config.weight_bits,
        "compiled": compiled,
        "cycles": report.cycles,
        "latency_us": report.cycles / clock_mhz,
        "utilisation": report.utilisation,
        "energy_nj": estimate_energy(report)["total"] / 1000,
        "area_mm2": estimate_area(config)["total"] / 1e6,
        "acc_bits": config.acc_bits,
        "memory_words": {
            "act": config.act_depth,
            "weight": config.weight_depth,
            "bias": config.bias_depth,
        },
    }


def pareto_front(rows: list[dict[str, Any]], keys: tuple[str, ...] = _OBJECTIVES) -> list[bool]:
    """Per row: no other row is at least as good in every key and better in one."""

    def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return all(a[k] <= b[k] for k in keys) and any(a[k] < b[k] for k in keys)

    return [not any(dominates(other, row) for other in rows) for row in rows]


def explore_model(
    model: Any, shapes: list[tuple[int, int]], bits: list[int] | None, clock_mhz: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of the exploration (with ``pareto`` marks) and notes for what was skipped."""
    from rtl_gen.pe_program import ProgramError, compile_program, fit_config
    from sim.cycle_model import predict

    own = model.weight_layers()[0].bits
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for r, c in shapes:
        config = fit_config(model, rows=r, cols=c, pe="shift")
        report = predict(compile_program(model, config))
        for b in bits or [own]:
            compiled = b == own
            rows.append(
                _row(report, config if compiled else _what_if(config, b), clock_mhz, compiled)
            )
        try:
            twin = fit_config(model, rows=r, cols=c, pe="mult")
        except ProgramError as exc:
            if not notes:
                notes.append(f"multiplier twin skipped: {exc}")
            continue
        rows.append(_row(predict(compile_program(model, twin)), twin, clock_mhz, True))
    for row, best in zip(rows, pareto_front(rows), strict=True):
        row["pareto"] = best
    return rows, notes


def _table(rows: list[dict[str, Any]], clock_mhz: float) -> str:
    headers = [
        "pe",
        "array",
        "bits",
        "cycles",
        f"latency µs @{clock_mhz:g} MHz",
        "PE util",
        "energy nJ",
        "area mm²",
        "pareto",
    ]
    body = [
        [
            row["pe"],
            row["array"],
            f"{row['weight_bits']}{'' if row['compiled'] else ' (what-if)'}",
            row["cycles"],
            f"{row['latency_us']:.2f}",
            percent(row["utilisation"]),
            f"{row['energy_nj']:.2f}",
            f"{row['area_mm2']:.4f}",
            "*" if row["pareto"] else "",
        ]
        for row in rows
    ]
    return format_table(headers, body)


def _plot(rows: list[dict[str, Any]], clock_mhz: float, path: Path) -> None:
    """Latency against energy and against area; the Pareto front (all three) ringed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from inq_hw.checkpoint import atomic_write
    from inq_hw.report.plots import log_scale

    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, key, label in zip(
        axes, ("energy_nj", "area_mm2"), ("energy per inference (nJ)", "area (mm²)"), strict=True
    ):
        for pe, marker in (("shift", "o"), ("mult", "s")):
            chosen = [row for row in rows if row["pe"] == pe]
            if not chosen:
                continue
            points = ax.scatter(
                [row["latency_us"] for row in chosen],
                [row[key] for row in chosen],
                c=[row["weight_bits"] for row in chosen],
                cmap="viridis",
                vmin=2,
                vmax=8,
                marker=marker,
                label=f"{pe}-PE array",
            )
        front = [row for row in rows if row["pareto"]]
        ax.scatter(
            [row["latency_us"] for row in front],
            [row[key] for row in front],
            s=160,
            facecolors="none",
            edgecolors="red",
            label="Pareto front (latency, energy, area)",
        )
        # only the front is named (every point would overprint); neighbours alternate sides
        ranked = sorted(front, key=lambda row: (row["latency_us"], row[key]))
        for i, row in enumerate(ranked):
            ax.annotate(
                f"{row['array']} {row['weight_bits']}b",
                (row["latency_us"], row[key]),
                xytext=(7, 3) if i % 2 else (7, -9),
                textcoords="offset points",
                fontsize=7,
            )
        log_scale(ax, "x")
        log_scale(ax, "y")
        ax.set_xlabel(f"latency (µs at {clock_mhz:g} MHz)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.colorbar(points, ax=axes, label="weight bits")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def _write_text(path: Path, text: str) -> None:
    from inq_hw.checkpoint import atomic_write

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    atomic_write(path, write)


@command("explore", "Explore PE-array shapes and weight widths with the cycle model.", _configure)
def explore(args: argparse.Namespace) -> dict[str, Any]:
    from inq_hw.intmodel.package import load_package

    if not args.clock_mhz > 0:
        raise ConfigError(f"--clock-mhz must be positive, not {args.clock_mhz!r}")
    shapes = _parse_shapes(args.pe)
    model = load_package(args.package)
    if not model.weight_layers():
        raise ConfigError(f"The package {args.package} has no weight layers to explore")
    bits = _parse_bits(args.bits, model.weight_layers()[0].bits)
    rows, notes = explore_model(model, shapes, bits, args.clock_mhz)
    out = args.out or args.package / "explore"
    text = _table(rows, args.clock_mhz)
    summary = {"package": str(args.package), "clock_mhz": args.clock_mhz, "rows": rows}
    summary["notes"] = notes
    files = {
        "json": out / "explore.json",
        "table": out / "explore.txt",
        "plot": out / "explore.png",
    }
    _write_text(files["json"], json.dumps(summary, indent=2, sort_keys=True) + "\n")
    _write_text(files["table"], text + "\n")
    _plot(rows, args.clock_mhz, files["plot"])
    summary["files"] = {k: str(v) for k, v in files.items()}
    lines = [text, *notes, f"-> {out}"]
    return {**summary, "_text": "\n".join(lines)}
